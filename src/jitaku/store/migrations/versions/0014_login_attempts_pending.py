"""login_attempts.pending: a try whose password is still being checked. Parallel logins with the right
password (a mail client opens several connections at once) waited for none: the sixth was refused as if five
had failed."""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    with op.batch_alter_table("login_attempts") as table:
        table.add_column(sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("login_attempts") as table:
        table.drop_column("pending")
