"""expunged: the UIDs expunged from each mailbox, by the mod-sequence of their expunge. After another session's
EXPUNGE, every session selected on the mailbox read all the UIDs left to find which went: ten busy IMAP clients
on 500-message mailboxes spent more of the daemon's time there than anywhere else in Python (issue 20). Now
each reads the few rows expunged since it last looked. Mail expunged before the upgrade has no rows: a session
that knew of it still finds it gone by reading the UIDs left, as before."""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


def upgrade() -> None:
    op.create_table(
        "expunged",
        sa.Column("mailbox_id", sa.Integer, sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("modseq", sa.Integer, nullable=False),
        sa.Column("uid", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("mailbox_id", "modseq", "uid"),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("expunged")
