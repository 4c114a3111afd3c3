"""health: every check's results (for graphs), each check's alerting state, the alerts sent, and which
users may see the dashboard (users.admin; the first user is one)"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    # a plain ALTER TABLE ADD COLUMN: a batch rebuild of users would cascade-delete every mailbox
    op.add_column("users", sa.Column("admin", sa.Boolean, nullable=False, server_default=sa.false()))
    op.execute("UPDATE users SET admin = true WHERE id = (SELECT min(id) FROM users)")
    op.create_table(
        "health_results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("check_name", sa.String(32), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("sentence", sa.Text, nullable=False),
        sa.Column("metrics", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("health_results_check_at", "health_results", ["check_name", "at"])
    op.create_table(
        "health_status",
        sa.Column("check_name", sa.String(32), primary_key=True),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("sentence", sa.Text, nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("alerted_at", sa.Float, nullable=False),
    )
    op.create_table(
        "health_alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("check_name", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.Integer, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("delivered", sa.Boolean, nullable=False),
    )
    op.create_index("health_alerts_at", "health_alerts", ["at"])


def downgrade() -> None:
    op.drop_column("users", "admin")  # SQLite 3.35+ drops a column in place
    op.drop_table("health_alerts")
    op.drop_table("health_status")
    op.drop_table("health_results")
