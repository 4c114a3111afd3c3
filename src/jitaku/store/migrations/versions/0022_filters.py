"""Spam and virus filters (issue 23): the owner's and users' allow and block lists, greylisting's triplets, and
what each engine was taught, so that a message moved in and out of Junk is learned at most once each way.

A rule's SCOPE is "global", "domain" (OWNER: a domain of ours, for its recipients) or "user" (OWNER: an address);
ACTION "allow" or "block"; PATTERN a sender's address or a domain (its subdomains too). A triplet is the client's
network, the envelope sender and the recipient, with when it was first and last seen and whether it passed."""

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"


def upgrade() -> None:
    op.create_table(
        "filter_rules",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(320), nullable=False),  # "" for global
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("pattern", sa.String(320), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.UniqueConstraint("scope", "owner", "pattern"),
    )
    op.create_table(
        "greylist",
        sa.Column("client", sa.String(64), nullable=False),  # an IPv4 /24 or IPv6 /64
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.PrimaryKeyConstraint("client", "sender", "recipient"),
    )
    op.create_index("greylist_last_seen", "greylist", ["last_seen"])
    op.create_table(
        "filter_learned",
        sa.Column("digest", sa.String(64), nullable=False),  # SHA-256 of the message as stored
        sa.Column("spam", sa.Boolean, nullable=False),
        sa.Column("learned_at", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("digest", "spam"),
    )


def downgrade() -> None:
    op.drop_table("filter_learned")
    op.drop_table("greylist")
    op.drop_table("filter_rules")
