"""ddns_state.address: our public address as last found, so a stale record can be told from a failed lookup"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.add_column("ddns_state", sa.Column("address", sa.Text, nullable=True))
    op.add_column("ddns_state", sa.Column("address_at", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("ddns_state", "address_at")
    op.drop_column("ddns_state", "address")
