"""Mailing lists' rows: settings, members, the inbox the list runner works through, held posts, the archive."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from jitaku.addresses import ROLES, ListRole, Role
from jitaku.store.accounts import AccountError, changed, find_alias, find_user
from jitaku.store.schema import (
    list_confirmations,
    list_held,
    list_inbox,
    list_members,
    list_posts,
    list_refusals,
    lists,
)

ReplyTo = Literal["list", "sender", "none"]  # where a post's Reply-To points (lists/compose.py)
REPLY_TO: tuple[ReplyTo, ...] = ("list", "sender", "none")  # the order `list set` names them in
Rewrite = Literal["none", "munge", "wrap"]  # what a post's From becomes for DMARC (lists/compose.py)
DmarcAction = Literal["auto", Rewrite]  # a list's dmarc setting: a Rewrite, or "auto" to ask the From domain's DMARC
DMARC: tuple[DmarcAction, ...] = ("auto", "munge", "wrap", "none")  # the order `list set` names them in
# What the list runner takes an inbox item as: mail that came for the list, or a held post a moderator decided on
InboxRole = Literal[ListRole, "approved", "rejected"]
_TAG_NUMBER = re.compile(r"%0?\d*d")


@dataclass(frozen=True)
class MailingList:
    id: int
    address: str
    name: str
    subject_tag: str
    reply_to: ReplyTo
    dmarc: DmarcAction
    owners: tuple[str, ...]
    last_number: int
    bounce_threshold: float
    digest_last_number: int
    digest_sent_at: float
    secret: str  # keys the one-click unsubscribe tokens and the VERP tags

    @property
    def key(self) -> bytes:
        return bytes.fromhex(self.secret)

    @property
    def local_part(self) -> str:
        return self.address.partition("@")[0]

    @property
    def domain(self) -> str:
        return self.address.partition("@")[2]

    def role_address(self, role: Role) -> str:
        return f"{self.local_part}-{role}@{self.domain}"

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "name": self.name,
            "subject_tag": self.subject_tag,
            "reply_to": self.reply_to,
            "dmarc": self.dmarc,
            "owners": list(self.owners),
            "last_number": self.last_number,
            "bounce_threshold": self.bounce_threshold,
        }


@dataclass(frozen=True)
class Member:
    address: str
    self_copy: bool
    enabled: bool
    digest: bool
    bounce_score: float  # as of bounce_at, halved by each delivery since
    disabled_reason: str | None
    bounce_at: float | None = None  # the last bounce that counted

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "self_copy": self.self_copy,
            "enabled": self.enabled,
            "digest": self.digest,
            "bounce_score": self.bounce_score,
            "bounce_at": self.bounce_at,
            "disabled_reason": self.disabled_reason,
        }


@dataclass(frozen=True)
class Refusal:
    """A domain whose servers refused a list's mail as a whole."""

    domain: str
    score: float
    refused_at: float | None


@dataclass(frozen=True)
class InboxItem:
    id: int
    list_id: int
    role: InboxRole
    recipient: str
    sender: str
    received_at: float
    note: str | None
    attempts: int
    body: bytes


@dataclass(frozen=True)
class Held:
    id: int
    received_at: float
    sender: str
    author: str
    subject: str
    reason: str


@dataclass(frozen=True)
class Post:
    number: int
    posted_at: float
    sender: str
    author: str
    subject: str


def _row_to_list(row: Any) -> MailingList:
    return MailingList(
        id=row.id,
        address=row.address,
        name=row.name,
        subject_tag=row.subject_tag,
        reply_to=row.reply_to,
        dmarc=row.dmarc,
        owners=tuple(o for o in row.owners.split(",") if o),
        last_number=row.last_number,
        bounce_threshold=row.bounce_threshold,
        digest_last_number=row.digest_last_number,
        digest_sent_at=row.digest_sent_at,
        secret=row.secret,
    )


def check_setting(key: str, value: str) -> Any:
    """The stored value of setting KEY, or AccountError naming what is wrong."""
    if key == "name":
        if not value.strip():
            raise AccountError("name: must not be empty")
        return value.strip()
    if key == "subject_tag":
        if len(_TAG_NUMBER.findall(value)) != 1 or "%" in _TAG_NUMBER.sub("", value):
            raise AccountError(f"subject_tag: {value!r} needs exactly one %d or %05d-style number")
        return value
    if key == "reply_to":
        if value not in REPLY_TO:
            raise AccountError(f"reply_to: {value!r} is not one of {', '.join(REPLY_TO)}")
        return value
    if key == "dmarc":
        if value not in DMARC:
            raise AccountError(f"dmarc: {value!r} is not one of {', '.join(DMARC)}")
        return value
    if key == "owners":
        owners = [o.strip().lower() for o in value.split(",") if o.strip()]
        if any("@" not in o for o in owners):
            raise AccountError(f"owners: {value!r} must be addresses separated by commas")
        return ",".join(owners)
    if key == "bounce_threshold":
        try:
            threshold = float(value)
        except ValueError:
            threshold = 0.0
        if threshold <= 0:
            raise AccountError(f"bounce_threshold: {value!r} must be a positive number")
        return threshold
    raise AccountError(
        f"unknown setting {key!r}; settings: name, subject_tag, reply_to, dmarc, owners, bounce_threshold"
    )


def create_list(
    connection: Connection, address: str, name: str, subject_tag: str, reply_to: str, dmarc: str, owners: str
) -> MailingList:
    address = address.lower()
    if find_list(connection, address) is not None:
        raise AccountError(f"list {address} exists already")
    local, _, domain = address.partition("@")
    for taken in [address] + [f"{local}-{role}@{domain}" for role in ROLES]:
        if find_user(connection, taken) is not None or find_alias(connection, taken) is not None:
            raise AccountError(f"{taken} is a user or an alias already; the list needs it")
    connection.execute(
        insert(lists).values(
            address=address,
            name=check_setting("name", name),
            subject_tag=check_setting("subject_tag", subject_tag),
            reply_to=check_setting("reply_to", reply_to),
            dmarc=check_setting("dmarc", dmarc),
            owners=check_setting("owners", owners),
            last_number=0,
            bounce_threshold=5.0,
            digest_last_number=0,
            digest_sent_at=time.time(),
            secret=secrets.token_hex(32),
            created_at=time.time(),
        )
    )
    changed(connection)
    return get_list(connection, address)


def delete_list(connection: Connection, address: str) -> None:
    if connection.execute(delete(lists).where(lists.c.address == address.lower())).rowcount == 0:
        raise AccountError(f"no list {address.lower()}")
    changed(connection)


def set_setting(connection: Connection, address: str, key: str, value: str) -> None:
    mailing_list = get_list(connection, address)
    connection.execute(update(lists).where(lists.c.id == mailing_list.id).values({key: check_setting(key, value)}))


def find_list(connection: Connection, address: str) -> MailingList | None:
    row = connection.execute(select(lists).where(lists.c.address == address.lower())).first()
    return _row_to_list(row) if row else None


def get_list(connection: Connection, address: str) -> MailingList:
    found = find_list(connection, address)
    if found is None:
        raise AccountError(f"no list {address.lower()}")
    return found


def list_by_id(connection: Connection, list_id: int) -> MailingList:
    return _row_to_list(connection.execute(select(lists).where(lists.c.id == list_id)).one())


def all_lists(connection: Connection) -> list[MailingList]:
    return [_row_to_list(row) for row in connection.execute(select(lists).order_by(lists.c.address))]


# members


def _member(row: Any) -> Member:
    return Member(
        row.address, row.self_copy, row.enabled, row.digest, row.bounce_score, row.disabled_reason, row.bounce_at
    )


def add_members(connection: Connection, list_id: int, addresses: Iterable[str]) -> tuple[list[str], list[str]]:
    """Add each address once; return (added, already members)."""
    present = {m.address for m in members(connection, list_id)}
    added: list[str] = []
    already: list[str] = []
    now = time.time()
    for address in addresses:
        address = address.lower()
        (already if address in present else added).append(address)
        present.add(address)
    if added:
        connection.execute(
            insert(list_members),
            [
                {
                    "list_id": list_id,
                    "address": a,
                    "self_copy": True,
                    "enabled": True,
                    "digest": False,
                    "bounce_score": 0.0,
                    "created_at": now,
                }
                for a in added
            ],
        )
    return added, already


def remove_members(connection: Connection, list_id: int, addresses: Iterable[str]) -> tuple[list[str], list[str]]:
    """Remove each address; return (removed, not members)."""
    removed: list[str] = []
    missing: list[str] = []
    for address in addresses:
        address = address.lower()
        result = connection.execute(
            delete(list_members).where(list_members.c.list_id == list_id, list_members.c.address == address)
        )
        (removed if result.rowcount else missing).append(address)
    return removed, missing


def members(connection: Connection, list_id: int) -> list[Member]:
    rows = connection.execute(
        select(list_members).where(list_members.c.list_id == list_id).order_by(list_members.c.address)
    )
    return [_member(r) for r in rows]


def set_member(connection: Connection, list_id: int, address: str, **values: Any) -> bool:
    result = connection.execute(
        update(list_members)
        .where(list_members.c.list_id == list_id, list_members.c.address == address.lower())
        .values(**values)
    )
    return bool(result.rowcount)


def refusal(connection: Connection, list_id: int, domain: str) -> Refusal | None:
    row = connection.execute(
        select(list_refusals).where(list_refusals.c.list_id == list_id, list_refusals.c.domain == domain.lower())
    ).first()
    return Refusal(row.domain, row.score, row.refused_at) if row else None


def refusals(connection: Connection, list_id: int) -> list[Refusal]:
    rows = connection.execute(
        select(list_refusals)
        .where(list_refusals.c.list_id == list_id, list_refusals.c.score > 0)
        .order_by(list_refusals.c.domain)
    )
    return [Refusal(row.domain, row.score, row.refused_at) for row in rows]


def set_refusal(connection: Connection, list_id: int, domain: str, score: float, refused_at: float) -> None:
    values = {"score": score, "refused_at": refused_at}
    found = connection.execute(
        update(list_refusals)
        .where(list_refusals.c.list_id == list_id, list_refusals.c.domain == domain.lower())
        .values(**values)
    )
    if not found.rowcount:
        connection.execute(insert(list_refusals).values(list_id=list_id, domain=domain.lower(), **values))


# the inbox: mail to a list, its -request, -owner and -bounces addresses, waiting for the list runner


def add_inbox(
    connection: Connection,
    list_address: str,
    role: InboxRole,
    recipient: str,
    sender: str,
    body: bytes,
    now: float,
    note: str | None = None,
) -> None:
    list_id = connection.execute(select(lists.c.id).where(lists.c.address == list_address)).scalar()
    if list_id is None:  # deleted since RCPT: the client must hear it was not taken
        raise AccountError(f"list {list_address} no longer exists")
    # values with the execution: a statement's own values stay in SQLAlchemy's cache (see mailstore.append)
    connection.execute(
        insert(list_inbox),
        {
            "list_id": list_id,
            "role": role,
            "recipient": recipient,
            "sender": sender,
            "received_at": now,
            "note": note,
            "attempts": 0,
            "next_try": 0.0,
            "body": body,
        },
    )


def next_inbox(connection: Connection, now: float) -> InboxItem | None:
    """The oldest item whose turn it is (one at a time: a post may be 25 MB)."""
    row = connection.execute(
        select(list_inbox).where(list_inbox.c.next_try <= now).order_by(list_inbox.c.id).limit(1)
    ).first()
    if row is None:
        return None
    return InboxItem(
        row.id, row.list_id, row.role, row.recipient, row.sender, row.received_at, row.note, row.attempts, row.body
    )


def inbox_failed(connection: Connection, item_id: int, next_try: float) -> None:
    connection.execute(
        update(list_inbox)
        .where(list_inbox.c.id == item_id)
        .values(attempts=list_inbox.c.attempts + 1, next_try=next_try)
    )


def remove_inbox(connection: Connection, item_id: int) -> None:
    """Take the item out of the inbox; raising when it is gone rolls back whatever would have done it twice."""
    if connection.execute(delete(list_inbox).where(list_inbox.c.id == item_id)).rowcount != 1:
        raise AccountError(f"list inbox item {item_id} was handled already")


def take_number(connection: Connection, list_id: int, number: int) -> bool:
    """Claim post NUMBER: true only when it is the next one (compare-and-set, so never a gap or a repeat)."""
    result = connection.execute(
        update(lists).where(lists.c.id == list_id, lists.c.last_number == number - 1).values(last_number=number)
    )
    return bool(result.rowcount)


# held posts


def next_held_id(connection: Connection) -> int:
    """The id the next held post gets (only the list runner holds posts, one at a time)."""
    return int(connection.execute(select(func.coalesce(func.max(list_held.c.id), 0))).scalar_one()) + 1


def hold(
    connection: Connection,
    held_id: int,
    list_id: int,
    sender: str,
    author: str,
    subject: str,
    reason: str,
    body: bytes,
) -> None:
    connection.execute(
        insert(list_held).values(
            id=held_id,
            list_id=list_id,
            received_at=time.time(),
            sender=sender,
            author=author,
            subject=subject,
            reason=reason,
            body=body,
        )
    )


def held(connection: Connection, list_id: int) -> list[Held]:
    rows = connection.execute(select(list_held).where(list_held.c.list_id == list_id).order_by(list_held.c.id))
    return [Held(r.id, r.received_at, r.sender, r.author, r.subject, r.reason) for r in rows]


def take_held(connection: Connection, list_id: int, held_id: int) -> tuple[str, bytes]:
    """Remove a held post; return its sender and body."""
    row = connection.execute(
        select(list_held.c.sender, list_held.c.body).where(list_held.c.list_id == list_id, list_held.c.id == held_id)
    ).first()
    if row is None:
        raise AccountError(f"no held post {held_id}")
    connection.execute(delete(list_held).where(list_held.c.id == held_id))
    return row.sender, row.body


# the archive


def archive(
    connection: Connection, list_id: int, number: int, sender: str, author: str, subject: str, body: bytes
) -> int:
    """Store post NUMBER as it went out; its row id, which the queued copies point to for their body."""
    return int(
        connection.execute(
            insert(list_posts)
            .values(
                list_id=list_id,
                number=number,
                posted_at=time.time(),
                sender=sender,
                author=author,
                subject=subject,
                body=body,
            )
            .returning(list_posts.c.id)
        ).scalar_one()
    )


def posts(connection: Connection, list_id: int) -> list[Post]:
    rows = connection.execute(
        select(
            list_posts.c.number, list_posts.c.posted_at, list_posts.c.sender, list_posts.c.author, list_posts.c.subject
        )
        .where(list_posts.c.list_id == list_id)
        .order_by(list_posts.c.number)
    )
    return [Post(r.number, r.posted_at, r.sender, r.author, r.subject) for r in rows]


def post_body(connection: Connection, list_id: int, number: int) -> bytes | None:
    return connection.execute(
        select(list_posts.c.body).where(list_posts.c.list_id == list_id, list_posts.c.number == number)
    ).scalar()


def post_count(connection: Connection, list_id: int) -> int:
    return int(connection.execute(select(func.count()).where(list_posts.c.list_id == list_id)).scalar_one())


# confirmations of subscribe and unsubscribe requests


def add_confirmation(connection: Connection, token: str, list_id: int, address: str, action: str) -> None:
    connection.execute(
        insert(list_confirmations).values(
            token=token, list_id=list_id, address=address.lower(), action=action, created_at=time.time()
        )
    )


def pending_confirmation(
    connection: Connection, list_id: int, address: str, action: str, within: float = 3600.0
) -> bool:
    """Whether ADDRESS was sent a confirmation for ACTION in the last WITHIN seconds."""
    row = connection.execute(
        select(list_confirmations.c.token).where(
            list_confirmations.c.list_id == list_id,
            list_confirmations.c.address == address.lower(),
            list_confirmations.c.action == action,
            list_confirmations.c.created_at > time.time() - within,
        )
    ).first()
    return row is not None


def take_confirmation(connection: Connection, token: str, max_age: float) -> tuple[int, str, str] | None:
    """Use up TOKEN; (list id, address, action), or None when unknown or older than MAX_AGE seconds."""
    row = connection.execute(select(list_confirmations).where(list_confirmations.c.token == token)).first()
    if row is None:
        return None
    connection.execute(delete(list_confirmations).where(list_confirmations.c.token == token))
    if time.time() - row.created_at > max_age:
        return None
    return row.list_id, row.address, row.action


def expire(connection: Connection, confirmations_before: float, held_before: float) -> tuple[int, int]:
    """Forget unused confirmations and undecided held posts past their time; how many of each."""
    confirmations = connection.execute(
        delete(list_confirmations).where(list_confirmations.c.created_at < confirmations_before)
    ).rowcount
    held_posts = connection.execute(delete(list_held).where(list_held.c.received_at < held_before)).rowcount
    return confirmations, held_posts


def find_confirmation(connection: Connection, token: str) -> tuple[int, str, str] | None:
    row = connection.execute(select(list_confirmations).where(list_confirmations.c.token == token)).first()
    return (row.list_id, row.address, row.action) if row else None


# digests


def digests_due(connection: Connection, sent_before: float) -> list[MailingList]:
    """Lists whose last digest went out before SENT_BEFORE and that have posts since."""
    rows = connection.execute(
        select(lists).where(lists.c.digest_sent_at <= sent_before, lists.c.last_number > lists.c.digest_last_number)
    )
    return [_row_to_list(row) for row in rows]


def posts_after(connection: Connection, list_id: int, number: int) -> list[tuple[Post, bytes]]:
    rows = connection.execute(
        select(list_posts)
        .where(list_posts.c.list_id == list_id, list_posts.c.number > number)
        .order_by(list_posts.c.number)
    )
    return [(Post(r.number, r.posted_at, r.sender, r.author, r.subject), r.body) for r in rows]


def digest_sent(connection: Connection, list_id: int, previous: int, last: int, now: float) -> bool:
    """Record a digest of posts PREVIOUS+1..LAST (compare-and-set: never the same posts twice)."""
    result = connection.execute(
        update(lists)
        .where(lists.c.id == list_id, lists.c.digest_last_number == previous)
        .values(digest_last_number=last, digest_sent_at=now)
    )
    return bool(result.rowcount)


def digest_now(connection: Connection, list_id: int) -> None:
    connection.execute(update(lists).where(lists.c.id == list_id).values(digest_sent_at=0.0))


def summaries(connection: Connection) -> list[dict[str, Any]]:
    """One line per list for the status page: members, posts and posts waiting for a moderator."""

    def count(table: Any, list_id: int) -> int:
        return int(connection.execute(select(func.count()).where(table.c.list_id == list_id)).scalar_one())

    return [
        {
            "address": found.address,
            "name": found.name,
            "members": count(list_members, found.id),
            "posts": found.last_number,
            "held": count(list_held, found.id),
        }
        for found in all_lists(connection)
    ]
