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


def _unsigned(sender: str, member: str) -> str | None:
    """The sender the revision before this one gave MEMBER's copy, if SENDER is a bounces address."""
    local, _at, domain = sender.rpartition("@")
    index = local.lower().find("-bounces+")
    member_local, at, member_domain = member.rpartition("@")
    if index <= 0 or not at:
        return None
    return f"{local[:index]}-bounces+{member_local}={member_domain}@{domain}"


def _queued_copies(connection: sa.Connection) -> tuple[dict[str, str], list[sa.Row[tuple[int, str, str]]]]:
    """(every list's secret by address, the queued recipients with a bounces address for a sender)."""
    secrets = {row.address: row.secret for row in connection.execute(sa.text("SELECT address, secret FROM lists"))}
    queued = connection.execute(
        sa.text("SELECT id, recipient, sender FROM queue_recipients WHERE sender LIKE '%-bounces+%'")
    ).fetchall()
    return secrets, list(queued)


def _readdress(connection: sa.Connection, row_id: int, sender: str) -> None:
    connection.execute(
        sa.text("UPDATE queue_recipients SET sender = :sender WHERE id = :id"), {"sender": sender, "id": row_id}
    )


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
    secrets, queued = _queued_copies(connection)
    for row in queued:
        signed = _signed(row.sender, secrets)
        if signed is not None:
            _readdress(connection, row.id, signed)


def downgrade() -> None:
    # What upgrade() and lists/verp.py signed goes back to the unsigned form: the revision before credits a
    # bounce to a signed address to no member, and upgrading again would sign the signed address over its tag.
    connection = op.get_bind()
    secrets, queued = _queued_copies(connection)
    for row in queued:
        unsigned = _unsigned(row.sender, row.recipient)
        if unsigned is not None and _signed(unsigned, secrets) == row.sender:
            _readdress(connection, row.id, unsigned)
    op.drop_table("list_refusals")
    op.drop_column("list_members", "bounce_at")
