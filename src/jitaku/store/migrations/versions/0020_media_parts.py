"""Media kept in parts of 256 KiB (media_parts), their size in media.size: SQLite reads a whole value before
substr() cuts it, so a 500 MB video read as one value cost 500 MB for each 256 KiB sent. A part is read by its
number, and only the parts a Range covers are. No foreign key to media: SQLite's batch mode remakes the media
table, and its DROP would take the parts with it; store/blog.py put_media replaces a file's parts itself."""

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"

PART = 256 * 1024  # store/blog.py's MEDIA_PART: the parts already stored are cut at it


def upgrade() -> None:
    op.create_table(
        "media_parts",
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("path", "n"),
    )
    with op.batch_alter_table("media") as media:
        media.add_column(sa.Column("size", sa.BigInteger, nullable=False, server_default="0"))
    connection = op.get_bind()
    connection.execute(sa.text("UPDATE media SET size = length(data)"))
    paths = [row[0] for row in connection.execute(sa.text("SELECT path FROM media"))]
    for path in paths:  # one file in memory at a time
        data = bytes(connection.execute(sa.text("SELECT data FROM media WHERE path = :p"), {"p": path}).scalar_one())
        parts = [{"p": path, "n": n, "d": data[at : at + PART]} for n, at in enumerate(range(0, len(data), PART))]
        if parts:
            connection.execute(sa.text("INSERT INTO media_parts (path, n, data) VALUES (:p, :n, :d)"), parts)
    with op.batch_alter_table("media") as media:
        media.drop_column("data")


def downgrade() -> None:
    with op.batch_alter_table("media") as media:
        media.add_column(sa.Column("data", sa.LargeBinary, nullable=True))
    connection = op.get_bind()
    paths = [row[0] for row in connection.execute(sa.text("SELECT path FROM media"))]
    for path in paths:
        parts = connection.execute(sa.text("SELECT data FROM media_parts WHERE path = :p ORDER BY n"), {"p": path})
        data = b"".join(bytes(row[0]) for row in parts)
        connection.execute(sa.text("UPDATE media SET data = :d WHERE path = :p"), {"d": data, "p": path})
    with op.batch_alter_table("media") as media:
        media.alter_column("data", existing_type=sa.LargeBinary, nullable=False)
        media.drop_column("size")
    op.drop_table("media_parts")
