"""What users taught the spam engines over IMAP and is not learned yet (issue 23): a message moved into or out of
Junk, or flagged $Junk or $NotJunk, is recorded here in the IMAP command's own transaction, and the main
process's learner teaches the engines later, so that an engine down never slows nor fails IMAP.

MESSAGE_ID is the message's row as it is now (the copy in Junk after a MOVE); a message expunged before it is
learned takes its item with it (ON DELETE CASCADE): SQLite gives a later message the same id, which must never
be taught for it. ENGINES names the engines that learned it already (comma-separated), so that a retry
asks only the others; TRIES and DUE_AT space the retries."""

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"


def upgrade() -> None:
    op.create_table(
        "filter_training",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
        sa.Column("spam", sa.Boolean, nullable=False),
        sa.Column("engines", sa.String(64), nullable=False, server_default=""),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("due_at", sa.Float, nullable=False),
    )
    op.create_index("filter_training_due", "filter_training", ["due_at"])
    op.create_index("filter_training_message", "filter_training", ["message_id"])  # each expunge looks here


def downgrade() -> None:
    op.drop_table("filter_training")
