"""Two list runners on one database (several daemons on one PostgreSQL, or both boxes of a pair during a
switchover) and held-post ids that never come back (issue 24).

LIST_LEASES: a runner takes an inbox item by writing a token of its own, its node (the box and data directory it
runs from) and until when, by the database's clock; no other runner takes the item before then, and only the
token's holder may remove the item or put it off, so a runner whose lease ran out while it worked rolls its work
back rather than do it twice. A table of its own, not columns of the inbox's: a lease taken or renewed rewrites
a small row, never the 25 MB post beside it. COUNTERS holds the last held-post id given (`list_held`): SQLite
gives a new row the highest id plus one, the id of a post just approved, and a moderator's
`jitaku list approve LIST 5` must never approve a different post than the one held as 5. It starts well above
the highest id held: ids above it (and below it, when none is held) were given to posts approved or expired
before the upgrade."""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
HELD_IDS_GIVEN = 1000  # a bound on the held posts decided on since the newest still held


def upgrade() -> None:
    op.create_table(
        "list_leases",
        sa.Column("item_id", sa.Integer, sa.ForeignKey("list_inbox.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("node", sa.String(32), nullable=False),
        sa.Column("token", sa.String(32), nullable=False),
        sa.Column("until", sa.Float, nullable=False),
    )
    op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("last", sa.Integer, nullable=False),
    )
    # a store without a list (a new one) has given no id yet
    op.execute(
        "INSERT INTO counters (name, last) SELECT 'list_held', CASE WHEN EXISTS (SELECT 1 FROM lists)"
        f" THEN COALESCE(MAX(id), 0) + {HELD_IDS_GIVEN} ELSE 0 END FROM list_held"
    )


def downgrade() -> None:
    op.drop_table("counters")
    op.drop_table("list_leases")
