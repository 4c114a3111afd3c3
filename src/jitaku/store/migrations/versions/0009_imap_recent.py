"""imap_recent: which messages are still \\Recent (mailboxes.recent_uid, RFC 3501 §2.3.2), and one clock for
UIDVALIDITY that never repeats a value, even for a mailbox deleted and made again in the same second"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    # a new mailbox's mail is recent to the first session that selects it; the mail already here is not new to
    # the clients that read these mailboxes before the upgrade
    op.add_column("mailboxes", sa.Column("recent_uid", sa.Integer, nullable=False, server_default="1"))
    op.execute("UPDATE mailboxes SET recent_uid = uidnext")
    op.create_table(
        "uidvalidity_clock",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("last", sa.Integer, nullable=False),
    )
    op.execute("INSERT INTO uidvalidity_clock (id, last) SELECT 1, COALESCE(MAX(uidvalidity), 0) FROM mailboxes")


def downgrade() -> None:
    op.drop_table("uidvalidity_clock")
    op.drop_column("mailboxes", "recent_uid")
