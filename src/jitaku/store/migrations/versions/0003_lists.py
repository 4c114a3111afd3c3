"""mailing lists: lists, members, archive, held posts, inbox, confirmations; per-member copies in the queue"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def _list_id() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    op.add_column("queue_recipients", sa.Column("sender", sa.String(320), nullable=True))
    op.add_column("queue_recipients", sa.Column("prefix", sa.LargeBinary, nullable=True))
    op.create_table(
        "lists",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("address", sa.String(320), nullable=False, unique=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("subject_tag", sa.String(255), nullable=False),
        sa.Column("reply_to", sa.String(16), nullable=False),
        sa.Column("dmarc", sa.String(16), nullable=False),
        sa.Column("owners", sa.Text, nullable=False),
        sa.Column("last_number", sa.Integer, nullable=False),
        sa.Column("bounce_threshold", sa.Float, nullable=False),
        sa.Column("digest_last_number", sa.Integer, nullable=False),
        sa.Column("digest_sent_at", sa.Float, nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "list_members",
        sa.Column("id", sa.Integer, primary_key=True),
        _list_id(),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("self_copy", sa.Boolean, nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("digest", sa.Boolean, nullable=False),
        sa.Column("bounce_score", sa.Float, nullable=False),
        sa.Column("disabled_reason", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("list_id", "address"),
    )
    op.create_table(
        "list_posts",
        sa.Column("id", sa.Integer, primary_key=True),
        _list_id(),
        sa.Column("number", sa.Integer, nullable=False),
        sa.Column("posted_at", sa.Float, nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.UniqueConstraint("list_id", "number"),
    )
    if op.get_bind().dialect.name == "sqlite":
        # In place: a batch rebuild of queue would cascade-delete every queued recipient (queue_recipients)
        op.execute("ALTER TABLE queue ADD COLUMN post_id INTEGER REFERENCES list_posts (id) ON DELETE CASCADE")
    else:
        op.add_column("queue", sa.Column("post_id", sa.Integer, nullable=True))
        op.create_foreign_key("queue_post_id", "queue", "list_posts", ["post_id"], ["id"], ondelete="CASCADE")
    op.create_table(
        "list_held",
        sa.Column("id", sa.Integer, primary_key=True),
        _list_id(),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("author", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "list_inbox",
        sa.Column("id", sa.Integer, primary_key=True),
        _list_id(),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("received_at", sa.Float, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_try", sa.Float, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "list_confirmations",
        sa.Column("token", sa.String(64), primary_key=True),
        _list_id(),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table("queue") as batch:  # a rebuild: run it on a queue that is empty
            batch.drop_column("post_id")
    else:
        op.drop_constraint("queue_post_id", "queue", type_="foreignkey")
        op.drop_column("queue", "post_id")
    for table in ("list_confirmations", "list_inbox", "list_held", "list_posts", "list_members", "lists"):
        op.drop_table(table)
    op.drop_column("queue_recipients", "prefix")
    op.drop_column("queue_recipients", "sender")
