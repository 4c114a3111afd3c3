"""ddns_state: per record and address family, what we sent, what the authoritative servers answer, and when"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "ddns_state",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("family", sa.Integer, primary_key=True),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("config_key", sa.String(64), nullable=False),
        sa.Column("sent_address", sa.Text, nullable=True),
        sa.Column("sent_at", sa.Float, nullable=True),
        sa.Column("result", sa.Text, nullable=True),
        sa.Column("published", sa.Text, nullable=True),
        sa.Column("published_at", sa.Float, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("fatal", sa.Boolean, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("retry_at", sa.Float, nullable=False),
        sa.Column("next_keepalive", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ddns_state")
