"""secret_files: the files of the data directory a standby needs to serve as the primary did (DKIM keys, the TLS
certificate and key, the web's cookie key), sealed with a key derived from the replication secret
(jitaku.ha.secret_files): the database is what streams to the standby, and what streams must not be readable
without that secret. NAME is the file's path in the data directory; DIGEST an HMAC of the file, so that each box
compares its file with the row without opening it."""

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"


def upgrade() -> None:
    op.create_table(
        "secret_files",
        sa.Column("name", sa.Text, primary_key=True),
        sa.Column("sealed", sa.LargeBinary, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("secret_files")
