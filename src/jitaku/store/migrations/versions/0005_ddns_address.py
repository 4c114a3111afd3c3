"""ddns_state.address: our public address as last found, so a stale record can be told from a failed lookup"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("ddns_state") as table:
        table.add_column(sa.Column("address", sa.Text, nullable=True))
        table.add_column(sa.Column("address_at", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("ddns_state") as table:
        table.drop_column("address_at")
        table.drop_column("address")
