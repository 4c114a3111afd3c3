"""subscriptions: the names each user subscribed to, apart from the mailboxes (RFC 3501 §6.3.6), so that CREATE
no longer subscribes, and a deleted mailbox stays subscribed until the user unsubscribes"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.UniqueConstraint("user_id", "name"),
    )
    op.execute("INSERT INTO subscriptions (user_id, name) SELECT user_id, name FROM mailboxes WHERE subscribed")
    # SQLite 3.35+ drops a column in place: a batch rebuild of mailboxes would cascade-delete every message
    op.drop_column("mailboxes", "subscribed")


def downgrade() -> None:
    # a subscription to a name no mailbox has cannot be kept: the revision before had nowhere to put it
    op.add_column("mailboxes", sa.Column("subscribed", sa.Boolean, nullable=False, server_default=sa.true()))
    op.execute(
        "UPDATE mailboxes SET subscribed = EXISTS (SELECT 1 FROM subscriptions"
        " WHERE subscriptions.user_id = mailboxes.user_id AND subscriptions.name = mailboxes.name)"
    )
    op.drop_table("subscriptions")
