"""Mailing lists' rows: settings, members, the inbox the list runner works through, held posts, the archive.

Prepared SQL on the DB-API (store/statements.py), as the rest of the daemon's store: the list runner reads the
inbox and the members and commits each post without SQLAlchemy, which the daemon then need not import
(issue 20). The CLI passes its Core connections, which statements_of and tx_of wrap.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from jitaku.addresses import ROLES, ListRole, Role
from jitaku.store.accounts import AccountError, changed, find_alias, find_user
from jitaku.store.dialect import Dialect
from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

ReplyTo = Literal["list", "sender", "none"]  # where a post's Reply-To points (lists/compose.py)
REPLY_TO: tuple[ReplyTo, ...] = ("list", "sender", "none")  # the order `list set` names them in
Rewrite = Literal["none", "munge", "wrap"]  # what a post's From becomes for DMARC (lists/compose.py)
DmarcAction = Literal["auto", Rewrite]  # a list's dmarc setting: a Rewrite, or "auto" to ask the From domain's DMARC
DMARC: tuple[DmarcAction, ...] = ("auto", "munge", "wrap", "none")  # the order `list set` names them in
ArchiveAccess = Literal["public", "members", "none"]  # who reads a list's posts on the web (web/archive/)
ARCHIVE: tuple[ArchiveAccess, ...] = ("public", "members", "none")  # the order `list set` names them in
# What the list runner takes an inbox item as: mail that came for the list, or a held post a moderator decided on
InboxRole = Literal[ListRole, "approved", "rejected"]
_TAG_NUMBER = re.compile(r"%0?\d*d")
MAX_ANSWERS = 50  # Message-IDs of In-Reply-To and References looked up for a post's parent


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
    archive: ArchiveAccess = "public"

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
            "archive": self.archive,
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
    lease: str | None = None  # the token of the runner that took it (take_inbox), which alone may end it


class LeaseLost(AccountError):
    """An inbox item was ended by another runner (removed, or taken once this one's lease ran out): whatever
    this runner did with it is rolled back, so that it is not done twice."""


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


_LIST = (
    "SELECT id, address, name, subject_tag, reply_to, dmarc, owners, last_number, bounce_threshold,"
    " digest_last_number, digest_sent_at, secret, archive FROM lists"
)
_MEMBER = (
    "SELECT address, self_copy, enabled, digest, bounce_score, disabled_reason, bounce_at FROM list_members"
    " WHERE list_id = ?"
)
# What set_member may change, and set_setting's keys (check_setting refuses any other)
_MEMBER_SETTINGS = frozenset({"self_copy", "enabled", "digest", "bounce_score", "bounce_at", "disabled_reason"})
_LIST_SETTINGS = frozenset({"name", "subject_tag", "reply_to", "dmarc", "owners", "bounce_threshold", "archive"})


def _row_to_list(row: Any) -> MailingList:
    """A row of _LIST: the columns in MailingList's order, the owners as stored (comma-separated)."""
    list_id, address, name, subject_tag, reply_to, dmarc, owners, *numbers, secret, archive_access = row
    last_number, bounce_threshold, digest_last_number, digest_sent_at = numbers
    return MailingList(
        list_id,
        address,
        name,
        subject_tag,
        reply_to,
        dmarc,
        tuple(o for o in owners.split(",") if o),
        last_number,
        bounce_threshold,
        digest_last_number,
        digest_sent_at,
        secret,
        archive_access,
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
    if key == "archive":
        if value not in ARCHIVE:
            raise AccountError(f"archive: {value!r} is not one of {', '.join(ARCHIVE)}")
        return value
    raise AccountError(
        f"unknown setting {key!r}; settings: name, subject_tag, reply_to, dmarc, owners, bounce_threshold, archive"
    )


def create_list(
    connection: Connection, address: str, name: str, subject_tag: str, reply_to: str, dmarc: str, owners: str
) -> MailingList:
    """The CLI's: the directory's users and aliases are read and bumped through the accounts module."""
    address = address.lower()
    if find_list(connection, address) is not None:
        raise AccountError(f"list {address} exists already")
    local, _, domain = address.partition("@")
    for taken in [address] + [f"{local}-{role}@{domain}" for role in ROLES]:
        if find_user(connection, taken) is not None or find_alias(connection, taken) is not None:
            raise AccountError(f"{taken} is a user or an alias already; the list needs it")
    tx_of(connection).run(
        "INSERT INTO lists (address, name, subject_tag, reply_to, dmarc, owners, last_number, bounce_threshold,"
        " digest_last_number, digest_sent_at, secret, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            address,
            check_setting("name", name),
            check_setting("subject_tag", subject_tag),
            check_setting("reply_to", reply_to),
            check_setting("dmarc", dmarc),
            check_setting("owners", owners),
            0,
            5.0,
            0,
            time.time(),
            secrets.token_hex(32),
            time.time(),
        ),
    )
    changed(connection)
    return get_list(connection, address)


def delete_list(connection: Connection, address: str) -> None:
    if not tx_of(connection).run("DELETE FROM lists WHERE address = ? RETURNING id", (address.lower(),)):
        raise AccountError(f"no list {address.lower()}")
    changed(connection)


def set_setting(target: Connection | Tx, address: str, key: str, value: str) -> None:
    tx = tx_of(target)
    mailing_list = get_list(tx, address)
    checked = check_setting(key, value)
    assert key in _LIST_SETTINGS, "check_setting refuses any other key"
    tx.run(f"UPDATE lists SET {key} = ? WHERE id = ?", (checked, mailing_list.id))


def find_list(source: Connection | Statements, address: str) -> MailingList | None:
    rows = statements_of(source).run(f"{_LIST} WHERE address = ?", (address.lower(),))
    return _row_to_list(rows[0]) if rows else None


def get_list(source: Connection | Statements, address: str) -> MailingList:
    found = find_list(source, address)
    if found is None:
        raise AccountError(f"no list {address.lower()}")
    return found


def list_by_id(source: Connection | Statements, list_id: int) -> MailingList:
    rows = statements_of(source).run(f"{_LIST} WHERE id = ?", (list_id,))
    if not rows:
        raise AccountError(f"no list with id {list_id}")
    return _row_to_list(rows[0])


def all_lists(source: Connection | Statements) -> list[MailingList]:
    return [_row_to_list(row) for row in statements_of(source).run(f"{_LIST} ORDER BY address")]


# members


def _member(row: Any) -> Member:
    address, self_copy, enabled, digest, bounce_score, disabled_reason, bounce_at = row
    # SQLite's booleans are 0 and 1
    return Member(address, bool(self_copy), bool(enabled), bool(digest), bounce_score, disabled_reason, bounce_at)


def add_members(target: Connection | Tx, list_id: int, addresses: Iterable[str]) -> tuple[list[str], list[str]]:
    """Add each address once; return (added, already members)."""
    tx = tx_of(target)
    present = {m.address for m in members(tx, list_id)}
    added: list[str] = []
    already: list[str] = []
    now = time.time()
    for address in addresses:
        address = address.lower()
        (already if address in present else added).append(address)
        present.add(address)
    if added:
        tx.run_many(
            "INSERT INTO list_members (list_id, address, self_copy, enabled, digest, bounce_score, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(list_id, a, True, True, False, 0.0, now) for a in added],
        )
    return added, already


def remove_members(target: Connection | Tx, list_id: int, addresses: Iterable[str]) -> tuple[list[str], list[str]]:
    """Remove each address; return (removed, not members)."""
    tx = tx_of(target)
    removed: list[str] = []
    missing: list[str] = []
    for address in addresses:
        address = address.lower()
        gone = tx.run("DELETE FROM list_members WHERE list_id = ? AND address = ? RETURNING id", (list_id, address))
        (removed if gone else missing).append(address)
    return removed, missing


def members(source: Connection | Statements, list_id: int) -> list[Member]:
    return [_member(row) for row in statements_of(source).run(f"{_MEMBER} ORDER BY address", (list_id,))]


def set_member(target: Connection | Tx, list_id: int, address: str, **values: Any) -> bool:
    """Change a member's VALUES (columns of _MEMBER_SETTINGS); whether ADDRESS is a member."""
    unknown = values.keys() - _MEMBER_SETTINGS
    if unknown:
        raise ValueError(f"not a member's setting: {', '.join(sorted(unknown))}")
    assignments = ", ".join(f"{key} = ?" for key in values)
    changed_rows = tx_of(target).run(
        f"UPDATE list_members SET {assignments} WHERE list_id = ? AND address = ? RETURNING id",
        (*values.values(), list_id, address.lower()),
    )
    return bool(changed_rows)


def refusal(source: Connection | Statements, list_id: int, domain: str) -> Refusal | None:
    rows = statements_of(source).run(
        "SELECT domain, score, refused_at FROM list_refusals WHERE list_id = ? AND domain = ?",
        (list_id, domain.lower()),
    )
    return Refusal(*rows[0]) if rows else None


def refusals(source: Connection | Statements, list_id: int) -> list[Refusal]:
    rows = statements_of(source).run(
        "SELECT domain, score, refused_at FROM list_refusals WHERE list_id = ? AND score > 0 ORDER BY domain",
        (list_id,),
    )
    return [Refusal(*row) for row in rows]


def set_refusal(target: Connection | Tx, list_id: int, domain: str, score: float, refused_at: float) -> None:
    tx_of(target).run(
        "INSERT INTO list_refusals (list_id, domain, score, refused_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (list_id, domain) DO UPDATE SET score = excluded.score, refused_at = excluded.refused_at",
        (list_id, domain.lower(), score, refused_at),
    )


# the inbox: mail to a list, its -request, -owner and -bounces addresses, waiting for the list runner


def add_inbox(
    target: Connection | Tx,
    list_address: str,
    role: InboxRole,
    recipient: str,
    sender: str,
    body: bytes,
    now: float,
    note: str | None = None,
) -> None:
    tx = tx_of(target)
    found = tx.run("SELECT id FROM lists WHERE address = ?", (list_address,))
    if not found:  # deleted since RCPT: the client must hear it was not taken
        raise AccountError(f"list {list_address} no longer exists")
    tx.run(
        "INSERT INTO list_inbox (list_id, role, recipient, sender, received_at, note, attempts, next_try, body)"
        " VALUES (?, ?, ?, ?, ?, ?, 0, 0.0, ?)",
        (found[0][0], role, recipient, sender, now, note, body),
    )


_INBOX_COLUMNS = "id, list_id, role, recipient, sender, received_at, note, attempts, body"


class Taken(NamedTuple):
    """An inbox item leased to the caller (take_inbox): its id, and the token that alone may end it."""

    id: int
    lease: str


def _ready(dialect: Dialect) -> str:
    """An inbox item whose turn it is (next_try, by the runner's clock) and that no runner's lease holds (by the
    database's: Dialect.clock)."""
    return (
        "next_try <= ? AND NOT EXISTS (SELECT 1 FROM list_leases WHERE list_leases.item_id = list_inbox.id"
        f" AND list_leases.until > {dialect.clock})"
    )


def next_inbox(source: Connection | Statements, now: float) -> int | None:
    """The id of the oldest item whose turn it is and that no runner holds, as a read: whether take_inbox has
    any to take. The id alone: a post may be 25 MB."""
    statements = statements_of(source)
    rows = statements.run(f"SELECT id FROM list_inbox WHERE {_ready(statements.dialect)} ORDER BY id LIMIT 1", (now,))
    return int(rows[0][0]) if rows else None


def inbox_item(source: Connection | Statements, item_id: int, lease: str | None = None) -> InboxItem | None:
    """The inbox item ITEM_ID, as taken with LEASE; None once it is gone."""
    rows = statements_of(source).run(f"SELECT {_INBOX_COLUMNS} FROM list_inbox WHERE id = ?", (item_id,))
    return replace(InboxItem(*rows[0]), lease=lease) if rows else None


def take_inbox(target: Connection | Tx, now: float, lease_seconds: float, node: str = "") -> Taken | None:
    """The oldest item whose turn it is, leased to the caller (of NODE) for LEASE_SECONDS: no other runner takes
    it meanwhile, and only the caller's token ends it (remove_inbox, inbox_failed). None when there is none.
    Its body is read apart (inbox_item): the take writes the lease's small row alone, and need not be durable.

    Several daemons may share a database (PostgreSQL), and two may run a list runner for a moment during a
    switchover. The lease is written only over none or one run out, as the row stands when written: on
    PostgreSQL (READ COMMITTED) the ON CONFLICT reads the latest committed lease, whatever the SELECT saw; the
    SELECT passes over the items another runner is taking (FOR UPDATE SKIP LOCKED) rather than wait for them."""
    tx = tx_of(target)
    clock, token = tx.dialect.clock, secrets.token_hex(16)
    while True:  # again only when another runner leased the item found since the SELECT's snapshot
        found = tx.run(
            f"SELECT id FROM list_inbox WHERE {_ready(tx.dialect)} ORDER BY id LIMIT 1{tx.dialect.skip_locked}", (now,)
        )
        if not found:
            return None
        item_id = int(found[0][0])
        leased = tx.run(
            f"INSERT INTO list_leases (item_id, node, token, until) VALUES (?, ?, ?, {clock} + ?)"
            " ON CONFLICT (item_id) DO UPDATE SET node = excluded.node, token = excluded.token, until = excluded.until"
            f" WHERE list_leases.until <= {clock} RETURNING item_id",
            (item_id, node, token, lease_seconds),
        )
        if leased:
            return Taken(item_id, token)


def renew_lease(target: Connection | Tx, item_id: int, lease: str, lease_seconds: float) -> bool:
    """Hold the item LEASE_SECONDS more, as the runner working on it goes on; whether LEASE still held it."""
    tx = tx_of(target)
    renewed = tx.run(
        f"UPDATE list_leases SET until = {tx.dialect.clock} + ? WHERE item_id = ? AND token = ? RETURNING item_id",
        (lease_seconds, item_id, lease),
    )
    return bool(renewed)


def release_leases(target: Connection | Tx, node: str) -> int:
    """Let go of NODE's leases, as its list runner starts: those of a runner killed mid-item (this daemon's before
    it restarted) would otherwise keep their items waiting out LEASE_SECONDS. Other nodes' runners sharing the
    database keep theirs. How many there were."""
    return len(tx_of(target).run("DELETE FROM list_leases WHERE node = ? RETURNING item_id", (node,)))


def _let_go(tx: Tx, item_id: int, lease: str | None) -> bool:
    """End LEASE on the item; whether it held the item. An item read rather than taken (the CLI's, a test's) has
    no lease, and holds when no runner's does."""
    if lease is None:
        return not tx.run("SELECT 1 FROM list_leases WHERE item_id = ?", (item_id,))
    return bool(tx.run("DELETE FROM list_leases WHERE item_id = ? AND token = ? RETURNING item_id", (item_id, lease)))


def inbox_failed(target: Connection | Tx, item_id: int, next_try: float, lease: str | None) -> None:
    """The item is to be tried again at NEXT_TRY, by any runner; nothing when LEASE no longer holds it."""
    tx = tx_of(target)
    if _let_go(tx, item_id, lease):
        tx.run("UPDATE list_inbox SET attempts = attempts + 1, next_try = ? WHERE id = ?", (next_try, item_id))


def inbox_lost(target: Connection | Tx, item_id: int) -> None:
    """Count an attempt at the item that ended with its lease lost to another runner (LeaseLost): an item that
    takes longer than any runner holds it comes to an end (runner.py's MAX_ATTEMPTS) rather than pass from one
    runner to another for ever."""
    tx_of(target).run("UPDATE list_inbox SET attempts = attempts + 1 WHERE id = ?", (item_id,))


def remove_inbox(target: Connection | Tx, item_id: int, lease: str | None) -> None:
    """Take the item out of the inbox. Raising LeaseLost when it is gone, or another runner's now, rolls back
    whatever would have done it twice: called first in the commit, so that nothing else is written before."""
    tx = tx_of(target)
    if not _let_go(tx, item_id, lease) or not tx.run("DELETE FROM list_inbox WHERE id = ? RETURNING id", (item_id,)):
        raise LeaseLost(f"list inbox item {item_id} was handled already")


def take_number(target: Connection | Tx, list_id: int, number: int) -> bool:
    """Claim post NUMBER: true only when it is the next one (compare-and-set, so never a gap or a repeat)."""
    taken = tx_of(target).run(
        "UPDATE lists SET last_number = ? WHERE id = ? AND last_number = ? RETURNING id", (number, list_id, number - 1)
    )
    return bool(taken)


# held posts


def new_held_id(target: Connection | Tx) -> int:
    """An id for a post about to be held, never given before: not the highest held id plus one, which is that of
    a post approved or expired since (whose moderator's link must not approve another), nor one another runner
    took at the same moment (the UPDATE locks the row on PostgreSQL; SQLite has one writer). An id whose hold
    is then rolled back is skipped."""
    return int(tx_of(target).run("UPDATE counters SET last = last + 1 WHERE name = 'list_held' RETURNING last")[0][0])


def hold(
    target: Connection | Tx,
    held_id: int,
    list_id: int,
    sender: str,
    author: str,
    subject: str,
    reason: str,
    body: bytes,
) -> None:
    tx_of(target).run(
        "INSERT INTO list_held (id, list_id, received_at, sender, author, subject, reason, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (held_id, list_id, time.time(), sender, author, subject, reason, body),
    )


def held(source: Connection | Statements, list_id: int) -> list[Held]:
    rows = statements_of(source).run(
        "SELECT id, received_at, sender, author, subject, reason FROM list_held WHERE list_id = ? ORDER BY id",
        (list_id,),
    )
    return [Held(*row) for row in rows]


def take_held(target: Connection | Tx, list_id: int, held_id: int) -> tuple[str, bytes]:
    """Remove a held post; return its sender and body. One statement: two moderators deciding at once on
    PostgreSQL both read the row, and only one of them may approve it."""
    rows = tx_of(target).run(
        "DELETE FROM list_held WHERE list_id = ? AND id = ? RETURNING sender, body", (list_id, held_id)
    )
    if not rows:
        raise AccountError(f"no held post {held_id}")
    sender, body = rows[0]
    return sender, body


# the archive


def archive(
    target: Connection | Tx,
    list_id: int,
    number: int,
    sender: str,
    author: str,
    subject: str,
    body: bytes,
    message_id: str | None = None,
    message_hash: str | None = None,
    answers: Sequence[str] = (),
) -> int:
    """Store post NUMBER as it went out; its row id, which the queued copies point to for their body.

    ANSWERS: the Message-IDs the post names as what it replies to, nearest first (In-Reply-To, then References
    from the last): the first of them archived here is its parent, whose thread it joins. Found once, here, so
    the archive's pages never search for a thread.
    """
    tx = tx_of(target)
    parent_number, thread_number = _place(tx, list_id, number, answers)
    rows = tx.run(
        "INSERT INTO list_posts (list_id, number, posted_at, sender, author, subject, body, message_id, message_hash,"
        " parent_number, thread_number) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            list_id,
            number,
            time.time(),
            sender,
            author,
            subject,
            body,
            message_id,
            message_hash,
            parent_number,
            thread_number,
        ),
    )
    return int(rows[0][0])


def _place(tx: Tx, list_id: int, number: int, answers: Sequence[str]) -> tuple[int | None, int]:
    """(parent, thread) of post NUMBER: the first of ANSWERS archived before it, and that post's thread."""
    wanted = list(dict.fromkeys(a for a in answers if a))[:MAX_ANSWERS]
    if not wanted:
        return None, number
    marks = ", ".join("?" for _ in wanted)
    rows = tx.run(
        f"SELECT message_id, number, thread_number FROM list_posts WHERE list_id = ? AND number < ?"
        f" AND message_id IN ({marks}) ORDER BY number",
        (list_id, number, *wanted),
    )
    found = {row[0]: (row[1], row[2]) for row in reversed(rows)}  # the first post of a Message-ID sent twice
    for answered in wanted:
        if answered in found:
            parent_number, parent_thread = found[answered]
            return parent_number, parent_thread if parent_thread is not None else parent_number
    return None, number


def unplaced(source: Connection | Statements, list_id: int, limit: int | None = None) -> list[tuple[int, int]]:
    """(id, number) of the first LIMIT (None: all) posts archived before their Message-ID was kept (migration
    0021), in order."""
    sql = "SELECT id, number FROM list_posts WHERE list_id = ? AND message_hash IS NULL ORDER BY number"
    rows = (
        statements_of(source).run(sql, (list_id,))
        if limit is None
        else statements_of(source).run(f"{sql} LIMIT ?", (list_id, limit))
    )
    return [(int(row[0]), int(row[1])) for row in rows]


def place(
    target: Connection | Tx,
    list_id: int,
    post_id: int,
    number: int,
    message_id: str,
    message_hash: str,
    answers: Sequence[str],
) -> bool:
    """Give an older post what archive() records of a new one: its Message-ID, hash, parent and thread; whether it
    was still without them."""
    tx = tx_of(target)
    parent_number, thread_number = _place(tx, list_id, number, answers)
    rows = tx.run(
        "UPDATE list_posts SET message_id = ?, message_hash = ?, parent_number = ?, thread_number = ?"
        " WHERE id = ? AND message_hash IS NULL RETURNING id",
        (message_id, message_hash, parent_number, thread_number, post_id),
    )
    return bool(rows)


def posts(source: Connection | Statements, list_id: int) -> list[Post]:
    rows = statements_of(source).run(
        "SELECT number, posted_at, sender, author, subject FROM list_posts WHERE list_id = ? ORDER BY number",
        (list_id,),
    )
    return [Post(*row) for row in rows]


def post_body(source: Connection | Statements, list_id: int, number: int) -> bytes | None:
    rows = statements_of(source).run("SELECT body FROM list_posts WHERE list_id = ? AND number = ?", (list_id, number))
    return rows[0][0] if rows else None


def post_count(source: Connection | Statements, list_id: int) -> int:
    return int(statements_of(source).run("SELECT count(*) FROM list_posts WHERE list_id = ?", (list_id,))[0][0])


# confirmations of subscribe and unsubscribe requests


def add_confirmation(target: Connection | Tx, token: str, list_id: int, address: str, action: str) -> None:
    tx_of(target).run(
        "INSERT INTO list_confirmations (token, list_id, address, action, created_at) VALUES (?, ?, ?, ?, ?)",
        (token, list_id, address.lower(), action, time.time()),
    )


def pending_confirmation(
    source: Connection | Statements, list_id: int, address: str, action: str, within: float = 3600.0
) -> bool:
    """Whether ADDRESS was sent a confirmation for ACTION in the last WITHIN seconds."""
    rows = statements_of(source).run(
        "SELECT token FROM list_confirmations WHERE list_id = ? AND address = ? AND action = ? AND created_at > ?"
        " LIMIT 1",
        (list_id, address.lower(), action, time.time() - within),
    )
    return bool(rows)


_CONFIRMATION = "SELECT list_id, address, action, created_at FROM list_confirmations WHERE token = ?"


def take_confirmation(target: Connection | Tx, token: str, max_age: float) -> tuple[int, str, str] | None:
    """Use up TOKEN; (list id, address, action), or None when unknown or older than MAX_AGE seconds. One
    statement, so that the token is used once even by two deliveries of the confirmation at once (PostgreSQL)."""
    rows = tx_of(target).run(
        "DELETE FROM list_confirmations WHERE token = ? RETURNING list_id, address, action, created_at", (token,)
    )
    if not rows:
        return None
    list_id, address, action, created_at = rows[0]
    if time.time() - created_at > max_age:
        return None
    return list_id, address, action


def expire(target: Connection | Tx, confirmations_before: float, held_before: float) -> tuple[int, int]:
    """Forget unused confirmations and undecided held posts past their time; how many of each."""
    tx = tx_of(target)
    confirmations = tx.run(
        "DELETE FROM list_confirmations WHERE created_at < ? RETURNING token", (confirmations_before,)
    )
    held_posts = tx.run("DELETE FROM list_held WHERE received_at < ? RETURNING id", (held_before,))
    return len(confirmations), len(held_posts)


def find_confirmation(source: Connection | Statements, token: str) -> tuple[int, str, str] | None:
    rows = statements_of(source).run(_CONFIRMATION, (token,))
    if not rows:
        return None
    list_id, address, action, _created_at = rows[0]
    return list_id, address, action


# digests


def digests_due(source: Connection | Statements, sent_before: float) -> list[MailingList]:
    """Lists whose last digest went out before SENT_BEFORE and that have posts since."""
    rows = statements_of(source).run(
        f"{_LIST} WHERE digest_sent_at <= ? AND last_number > digest_last_number", (sent_before,)
    )
    return [_row_to_list(row) for row in rows]


def posts_after(source: Connection | Statements, list_id: int, number: int) -> list[tuple[Post, bytes]]:
    rows = statements_of(source).run(
        "SELECT number, posted_at, sender, author, subject, body FROM list_posts WHERE list_id = ? AND number > ?"
        " ORDER BY number",
        (list_id, number),
    )
    return [(Post(*row[:5]), row[5]) for row in rows]


def digest_sent(target: Connection | Tx, list_id: int, previous: int, last: int, now: float) -> bool:
    """Record a digest of posts PREVIOUS+1..LAST (compare-and-set: never the same posts twice)."""
    recorded = tx_of(target).run(
        "UPDATE lists SET digest_last_number = ?, digest_sent_at = ? WHERE id = ? AND digest_last_number = ?"
        " RETURNING id",
        (last, now, list_id, previous),
    )
    return bool(recorded)


def digest_now(target: Connection | Tx, list_id: int) -> None:
    tx_of(target).run("UPDATE lists SET digest_sent_at = 0.0 WHERE id = ?", (list_id,))


def summaries(source: Connection | Statements) -> list[dict[str, Any]]:
    """One line per list for the status page: members, posts and posts waiting for a moderator."""
    rows = statements_of(source).run(
        "SELECT address, name,"
        " (SELECT count(*) FROM list_members WHERE list_members.list_id = lists.id),"
        " last_number,"
        " (SELECT count(*) FROM list_held WHERE list_held.list_id = lists.id)"
        " FROM lists ORDER BY address"
    )
    return [
        {"address": address, "name": name, "members": member_count, "posts": last_number, "held": held_count}
        for address, name, member_count, last_number, held_count in rows
    ]
