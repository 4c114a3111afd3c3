"""tallies: SMTP sessions and mail in and out per minute, for the traffic check and the graphs; and
health_status.unsent*: which alert targets still owe a delivery, so a restart does not forget them"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.add_column("health_status", sa.Column("unsent_kind", sa.String(16), nullable=False, server_default=""))
    op.add_column("health_status", sa.Column("unsent", sa.Text, nullable=False, server_default=""))
    op.create_table(
        "tallies",
        sa.Column("minute", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("count", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tallies")
    op.drop_column("health_status", "unsent")
    op.drop_column("health_status", "unsent_kind")
