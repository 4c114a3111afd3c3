"""Static pages beside the posts, and readers' comments (issue 21).

A page (About) is a post of kind "page": its own URL, never on the home page, in an archive or a feed. A
comment keeps what the reader wrote and its sanitized HTML, its moderation status, the address it came from
(the per-address rate limit) and its form token's nonce, unique, so that a replayed form stores nothing."""

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"


def upgrade() -> None:
    with op.batch_alter_table("posts") as posts:
        posts.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="post"))
    op.create_table(
        "comments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("post_id", sa.Integer, sa.ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("comments.id", ondelete="CASCADE"), nullable=True),
        sa.Column("author", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("url", sa.String(2048), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("nonce", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_index("comments_post", "comments", ["post_id", "status", "created_at"])
    op.create_index("comments_status", "comments", ["status", "created_at"])
    op.create_index("comments_address", "comments", ["address", "created_at"])


def downgrade() -> None:
    op.drop_table("comments")
    with op.batch_alter_table("posts") as posts:
        posts.drop_column("kind")
