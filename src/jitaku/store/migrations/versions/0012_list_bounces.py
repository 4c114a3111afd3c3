"""list_bounces: when a member's bounce last counted (scores decay, at most one a day), domains that refused
a list's mail as a whole, and signed VERP senders for list copies still in the queue"""

import base64
import hashlib
import hmac

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"

LOCAL_PART_MAX = 64


def _signed(sender: str, secrets: dict[str, str]) -> str | None:
    """SENDER (LOCAL-bounces+member=example.com@DOMAIN, unsigned) as lists/verp.py signs it from this
    revision on, or None when it is not a copy of a known list's. Kept here as it was, so that a later
    change to verp.py cannot change what this migration did."""
    local, _at, domain = sender.rpartition("@")
    index = local.lower().find("-bounces+")
    if index <= 0:
        return None
    list_local, verp = local[:index], local[index + len("-bounces+") :]
    secret = secrets.get(f"{list_local}@{domain}".lower())
    member_local, equals, member_domain = verp.rpartition("=")
    if secret is None or not (member_local and equals and member_domain):
        return None
    member = f"{member_local}@{member_domain}".lower()
    mac = hmac.new(bytes.fromhex(secret), b"verp\0" + member.encode(), hashlib.sha256).digest()
    digest = base64.b32encode(mac).decode().lower()
    readable = f"{list_local}-bounces+{digest[:8]}={member_local}={member_domain}"
    if len(readable.encode()) <= LOCAL_PART_MAX:
        return f"{readable}@{domain}"
    return f"{list_local}-bounces+{digest[:16]}@{domain}"


def upgrade() -> None:
    op.add_column("list_members", sa.Column("bounce_at", sa.Float, nullable=True))
    op.create_table(
        "list_refusals",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("list_id", sa.Integer, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("refused_at", sa.Float, nullable=True),
        sa.UniqueConstraint("list_id", "domain"),
    )
    # A bounce to an unsigned VERP address no longer counts: copies still waiting in the queue (a member's
    # server deferring them for days, the bounces that matter most) go out signed instead.
    connection = op.get_bind()
    secrets = {row.address: row.secret for row in connection.execute(sa.text("SELECT address, secret FROM lists"))}
    queued = connection.execute(
        sa.text("SELECT id, sender FROM queue_recipients WHERE sender LIKE '%-bounces+%'")
    ).fetchall()
    for row in queued:
        signed = _signed(row.sender, secrets)
        if signed is not None:
            connection.execute(
                sa.text("UPDATE queue_recipients SET sender = :sender WHERE id = :id"), {"sender": signed, "id": row.id}
            )


def downgrade() -> None:
    op.drop_table("list_refusals")
    op.drop_column("list_members", "bounce_at")
