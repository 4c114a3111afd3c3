"""A session's look at what changed in its mailbox reads only the changes. messages_modseq finds the messages
changed since a mod-sequence by a seek: through messages_state every look after any change read an index
entry for each message of the mailbox (issue 20). And the record of expunges (0016) says where it begins: a
row of UID 0 at each mailbox's mod-sequence now, so that a session that knew of mail expunged before the record
began finds that out from the record itself, where it counted every message left to find out."""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    op.create_index("messages_modseq", "messages", ["mailbox_id", "modseq"])
    op.execute(sa.text("INSERT INTO expunged (mailbox_id, modseq, uid) SELECT id, highestmodseq, 0 FROM mailboxes"))


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM expunged WHERE uid = 0"))
    op.drop_index("messages_modseq", "messages")
