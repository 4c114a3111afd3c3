"""mail core: users, aliases, mailboxes, messages, queue"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(320), nullable=False, unique=True),
        sa.Column("password_hash", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "aliases",
        sa.Column("alias", sa.String(320), primary_key=True),
        sa.Column("target", sa.String(320), nullable=False),
    )
    op.create_table(
        "mailboxes",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("uidvalidity", sa.Integer, nullable=False),
        sa.Column("uidnext", sa.Integer, nullable=False),
        sa.UniqueConstraint("user_id", "name"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("mailbox_id", sa.Integer, sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("uid", sa.Integer, nullable=False),
        sa.Column("flags", sa.Text, nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("mailbox_id", "uid"),
    )
    op.create_table(
        "queue",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_attempt", sa.Float, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_index("queue_next_attempt", "queue", ["next_attempt"])
    op.create_table(
        "queue_recipients",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("queue_id", sa.String(32), sa.ForeignKey("queue.id", ondelete="CASCADE"), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
    )
    op.create_index("ix_queue_recipients_queue_id", "queue_recipients", ["queue_id"])


def downgrade() -> None:
    for table in ("queue_recipients", "queue", "messages", "mailboxes", "aliases", "users"):
        op.drop_table(table)
