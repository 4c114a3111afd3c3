"""login_attempts: the failed-login limit, kept in the store so that every process counts the same tries and a
restart forgets none (it was in each process's memory)"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("client", sa.String(64), nullable=False),
        sa.Column("login", sa.String(320), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("login_attempts_client", "login_attempts", ["client", "login", "at"])
    op.create_index("login_attempts_at", "login_attempts", ["at"])


def downgrade() -> None:
    op.drop_table("login_attempts")
