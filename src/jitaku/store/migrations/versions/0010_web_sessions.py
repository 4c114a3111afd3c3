"""web_sessions: a session generation per user (users.session_generation), so that logging out, a new
password or a revoked admin right ends every web session of that user, cookies copied before included"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    # a plain ALTER TABLE ADD COLUMN, as in 0006; sessions opened before it are refused (they hold no generation)
    op.add_column("users", sa.Column("session_generation", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    # in place (SQLite 3.35+): a batch rebuild of users would cascade-delete every mailbox
    op.drop_column("users", "session_generation")
