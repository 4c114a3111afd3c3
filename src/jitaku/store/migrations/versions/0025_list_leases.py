"""Two list runners on one database (several daemons on one PostgreSQL, or both boxes of a pair during a
switchover) and held-post ids that never come back (issue 24).

LEASE and LEASE_UNTIL: a runner takes an inbox item by writing a token of its own and when it lets go; no other
runner takes the item before then, and only the token's holder may remove the item or put it off, so a runner
whose lease ran out while it worked rolls its work back rather than do it twice. COUNTERS holds the last held-post
id given (`list_held`): SQLite gives a new row the highest id plus one, the id of a post just approved, and a
moderator's `jitaku list approve LIST 5` must never approve a different post than the one held as 5."""

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"


def upgrade() -> None:
    op.add_column("list_inbox", sa.Column("lease", sa.String(32), nullable=True))
    op.add_column("list_inbox", sa.Column("lease_until", sa.Float, nullable=False, server_default="0"))
    op.create_table(
        "counters",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("last", sa.Integer, nullable=False),
    )
    op.execute("INSERT INTO counters (name, last) SELECT 'list_held', COALESCE(MAX(id), 0) FROM list_held")


def downgrade() -> None:
    op.drop_table("counters")
    with op.batch_alter_table("list_inbox") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease")
