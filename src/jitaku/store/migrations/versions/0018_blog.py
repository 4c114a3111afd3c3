"""The blog's tables (issue 21): posts keyed by their file's path in the directory imported, their tags, the
redirects that keep every URL ever published working, media kept in the database (so a backup and the standby
carry them), and a counter the running site watches to drop its cached pages."""

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"


def upgrade() -> None:
    op.create_table(
        "posts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("path", sa.String(1024), nullable=False, unique=True),
        sa.Column("url", sa.String(1024), nullable=False, unique=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("slug", sa.String(255), nullable=False),
        sa.Column("published_at", sa.Float, nullable=False),
        sa.Column("draft", sa.Boolean, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("html", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("posts_published", "posts", ["draft", "published_at"])
    op.create_table(
        "post_tags",
        sa.Column("post_id", sa.Integer, sa.ForeignKey("posts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("post_id", "tag"),
    )
    op.create_index("post_tags_tag", "post_tags", ["tag", "post_id"])
    op.create_table(
        "redirects",
        sa.Column("old_path", sa.String(1024), primary_key=True),
        sa.Column("new_path", sa.String(1024), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "media",
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("content_type", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    version = op.create_table(
        "blog_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.bulk_insert(version, [{"id": 1, "version": 0}])


def downgrade() -> None:
    for table in ("blog_version", "media", "redirects", "post_tags", "posts"):
        op.drop_table(table)
