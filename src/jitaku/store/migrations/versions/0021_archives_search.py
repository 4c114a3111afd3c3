"""The owner's admin, the list archives and search (issue 22).

A list's `archive` says who may read its posts on the web: "public", "members" (who log in with a one-time link
mailed to them; archive_logins keeps a hash of each link's token) or "none". Lists that existed before choose
"members", so that nothing already posted becomes public without the owner saying so; new lists are "public",
as Mailman's are. Each archived post keeps its Message-ID, the hash its stable URL is made of, and where it sits
in its thread (the post it answers, the thread's first post), found once when it is archived.

A held comment says why it was held. Search: SQLite's FTS5 with the trigram tokenizer, one table for the blog's
posts (rowid = posts.id) and one for the lists' (rowid = list_posts.id), so a row is replaced by its rowid; on
PostgreSQL plain tables of the same shape, with pg_trgm's GIN index of trigrams on each column, which answers
the ILIKE of store/search.py (where the server has no pg_trgm, or this role may not create it, search scans
the table instead). The posts already imported are indexed here."""

import sqlalchemy as sa
from alembic import op

from jitaku.store import search

revision = "0021"
down_revision = "0020"

SEARCH_TABLES = ("search_posts", "search_list_posts")


def upgrade() -> None:
    # columns added in place, never by a batch's copy of the table: SQLite's DROP of the old lists table would
    # take every member and post with it (ON DELETE CASCADE)
    op.add_column("lists", sa.Column("archive", sa.String(16), nullable=False, server_default="public"))
    op.execute("UPDATE lists SET archive = 'members'")
    op.add_column("list_posts", sa.Column("message_id", sa.Text, nullable=True))
    op.add_column("list_posts", sa.Column("message_hash", sa.String(64), nullable=True))
    op.add_column("list_posts", sa.Column("parent_number", sa.Integer, nullable=True))
    op.add_column("list_posts", sa.Column("thread_number", sa.Integer, nullable=True))
    op.create_index("list_posts_message_hash", "list_posts", ["list_id", "message_hash"])
    op.create_index("list_posts_message_id", "list_posts", ["list_id", "message_id"])
    op.create_index("list_posts_posted", "list_posts", ["list_id", "posted_at"])
    op.create_table(
        "archive_logins",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("used_at", sa.Float, nullable=True),
    )
    op.add_column("comments", sa.Column("reason", sa.Text, nullable=False, server_default=""))
    connection = op.get_bind()
    trigrams = connection.dialect.name == "postgresql" and _trigrams(connection)
    for table in SEARCH_TABLES:
        if connection.dialect.name == "sqlite":
            op.execute(f"CREATE VIRTUAL TABLE {table} USING fts5(title, body, tokenize = 'trigram')")
            continue
        op.create_table(
            table,
            sa.Column("rowid", sa.BigInteger, primary_key=True, autoincrement=False),
            sa.Column("title", sa.Text, nullable=False),
            sa.Column("body", sa.Text, nullable=False),
        )
        for column in ("title", "body") if trigrams else ():
            op.execute(f"CREATE INDEX {table}_{column}_trigrams ON {table} USING gin ({column} gin_trgm_ops)")
    for post_id, title, markup in connection.execute(sa.text("SELECT id, title, html FROM posts")).all():
        connection.execute(
            sa.text("INSERT INTO search_posts (rowid, title, body) VALUES (:id, :title, :body)"),
            {"id": post_id, "title": search.normalized(title), "body": search.normalized(search.text_of_html(markup))},
        )


def _trigrams(connection: sa.Connection) -> bool:
    """Whether pg_trgm is, or can be, installed in this database: it ships with PostgreSQL (Debian's
    postgresql-15 has it) and is trusted, so the database's owner may create it."""
    usable = connection.execute(
        sa.text(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') OR (EXISTS (SELECT 1 FROM"
            " pg_available_extensions WHERE name = 'pg_trgm') AND has_database_privilege(current_database(), 'CREATE'))"
        )
    ).scalar()
    if usable:
        connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    return bool(usable)


def downgrade() -> None:
    for table in SEARCH_TABLES:
        op.execute(f"DROP TABLE {table}")
    op.drop_column("comments", "reason")  # SQLite 3.35+ drops a column in place
    op.drop_table("archive_logins")
    op.drop_index("list_posts_posted", "list_posts")
    op.drop_index("list_posts_message_id", "list_posts")
    op.drop_index("list_posts_message_hash", "list_posts")
    for column in ("thread_number", "parent_number", "message_hash", "message_id"):
        op.drop_column("list_posts", column)
    op.drop_column("lists", "archive")
