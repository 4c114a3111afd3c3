"""messages_state holds each message's size too: SELECT (which learns every size, to read bodies by bytes), a
session's look at what changed, LIST and STATUS then read the index alone. Reading the size from the table
took a page per message, most of them outside SQLite's cache: ten busy IMAP clients on 500-message mailboxes
spent most of their time there."""

from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    op.drop_index("messages_state", "messages")
    op.create_index("messages_state", "messages", ["mailbox_id", "uid", "modseq", "flags", "size"])


def downgrade() -> None:
    op.drop_index("messages_state", "messages")
    op.create_index("messages_state", "messages", ["mailbox_id", "uid", "modseq", "flags"])
