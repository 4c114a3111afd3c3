"""Users' mailboxes and the messages in them: folders, UIDs, flags and mod-sequences (shared by IMAP, POP3,
CLI, web).

What IMAP (RFC 3501, with UIDPLUS, MOVE, SPECIAL-USE and CONDSTORE) needs of its storage lives here, so the
server holds sessions and parses commands but writes no SQL. Every function runs in the caller's
transaction: a MOVE or a RENAME of INBOX is one commit or none.

What IMAP reads with every command (the mailbox's state, its changes, its messages, LIST and STATUS) is SQL
run on the DB-API (store/statements.py), as the reads of store/reader.py or in a Core caller's transaction:
through SQLAlchemy those reads took most of the event loop's time under ten clients (issue 20). So are the
writes every STORE, APPEND, EXPUNGE, COPY and MOVE makes, and a delivery's (mail/delivery.commit), run in the
writer's transaction (a Tx) or a Core caller's: through SQLAlchemy they took a third of the writer thread's
time, holding the GIL the event loop waits on. So is the rest (mailboxes made, renamed, deleted;
subscriptions; POP3's and the CLI's reads), so that the daemon never imports SQLAlchemy for its mail: a Core
caller's connection (the CLI's, a test's) is taken as well, its statements run in its transaction.
"""

from __future__ import annotations

import bisect
import functools
import re
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, TypeAlias, assert_never, get_args

from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

INBOX = "INBOX"
DELIMITER = "/"  # the hierarchy delimiter IMAP's LIST announces

SpecialUse = Literal["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"]
# RFC 6154: the folders every user has from the start (the migration 0008 keeps its own copy of this list)
SPECIAL_FOLDERS: tuple[tuple[str, SpecialUse], ...] = (
    ("Sent", "\\Sent"),
    ("Drafts", "\\Drafts"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

StoreMode = Literal["add", "remove", "replace"]  # STORE's +FLAGS, -FLAGS and FLAGS

# RFC 3501 §2.3.2; \Recent is the server's to set, never stored
SPECIAL_USES: dict[str, SpecialUse] = {use: use for _name, use in SPECIAL_FOLDERS}
SYSTEM_FLAGS = {flag.lower(): flag for flag in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")}
# RFC 3501's atom: a keyword holds no space, which keeps messages.flags a space-separated list
_KEYWORD = re.compile(r"[!#$&'+-\[^-z|}~]+")
_NAME_LENGTH = 255  # the width of mailboxes.name
# A query names at most this many UIDs: SQLite refuses statements with more than 32766 parameters
_CHUNK = 500


class MailboxError(Exception):
    """A mailbox request that cannot be done; the message is fit for an IMAP NO."""


class MailboxExists(MailboxError):
    """The name is taken (IMAP's [ALREADYEXISTS], RFC 5530)."""


class NoSuchMailbox(MailboxError, LookupError):
    """The mailbox named does not exist: IMAP answers NO [TRYCREATE] to APPEND, COPY and MOVE, and
    NO [NONEXISTENT] to the rest."""


class TooManyMailboxes(MailboxError):
    """The user has as many mailboxes, or subscriptions, as they may (IMAP's [LIMIT], RFC 5530)."""


class FlagState(NamedTuple):
    """A message as IMAP's FETCH (FLAGS MODSEQ) sees it."""

    uid: int
    flags: frozenset[str]
    modseq: int


class Listed(NamedTuple):
    """A message as a selected mailbox lists it: with its size, which says how much reading its body costs."""

    uid: int
    flags: frozenset[str]
    modseq: int
    size: int


class Folder(NamedTuple):
    """One mailbox as LIST names it, without its numbers."""

    name: str
    special_use: str | None


@dataclass(frozen=True)
class MailboxInfo:
    """One mailbox for LIST (special use) and STATUS (the numbers)."""

    name: str
    special_use: str | None
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    messages: int
    unseen: int
    recent: int
    deleted: int  # messages flagged \\Deleted (IMAP4rev2's STATUS DELETED)
    size: int  # octets of all its messages (STATUS=SIZE, RFC 8438)


@dataclass(frozen=True)
class Selected:
    """What SELECT reports, and the UID order that numbers a session's messages; each message's flags,
    mod-sequence and size by UID, as a session's view keeps them."""

    mailbox_id: int  # with UIDVALIDITY: the mailbox is the one selected before (`select`'s BEFORE)
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    recent_from: int  # messages from this UID on are \Recent: no session has claimed them (claim_recent)
    uids: list[int]
    flags: dict[int, frozenset[str]]
    modseqs: dict[int, int]
    sizes: dict[int, int]
    keywords: set[str]  # those some message has


@dataclass(frozen=True)
class StoreResult:
    """STORE's outcome. MESSAGES: those among the UIDs that exist and passed UNCHANGEDSINCE, with their
    flags now; CHANGED: the UIDs whose flags changed (their FETCH carries the new MODSEQ even under .SILENT);
    FAILED: the UIDs UNCHANGEDSINCE kept unchanged (RFC 7162's MODIFIED response code); BEFORE: the flags
    each changed message had (what a keyword teaches the spam engines depends on them, store/training.py)."""

    messages: list[FlagState]
    changed: list[int]
    failed: list[int]
    before: dict[int, frozenset[str]]


@dataclass(frozen=True)
class StoredMessage:
    uid: int
    received_at: float
    size: int
    body: bytes


def canonical(name: str) -> str:
    """RFC 3501 §5.1: INBOX is case-insensitive; every other name, and INBOX's children, are not."""
    return INBOX if name.lower() == "inbox" else name


def _check_name(name: str) -> None:
    if any(not level for level in name.split(DELIMITER)):
        raise MailboxError(f"{name!r} is not a mailbox name: it is empty, or starts or ends with / or holds //")
    if any(ord(character) < 0x20 or character == "\x7f" for character in name):
        raise MailboxError(f"{name!r} is not a mailbox name: it holds a control character")
    if len(name) > _NAME_LENGTH:
        raise MailboxError(f"mailbox name {name[:40]!r}... is too long")


def _user_id(statements: Statements, address: str) -> int:
    found = statements.run("SELECT id FROM users WHERE address = ?", (address.lower(),))
    if not found:
        raise NoSuchMailbox(f"no user {address.lower()}")
    return int(found[0][0])


class _Mailbox(NamedTuple):
    id: int
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    recent_uid: int


class _Message(NamedTuple):
    id: int
    uid: int
    flags: frozenset[str]
    modseq: int
    size: int


# A Core caller's connection (the CLI's, a test's), or a read's (or the writer's) statements; a Core caller's
# transaction, or the writer's. Strings: SQLAlchemy's Connection is named for the type checker alone
Source: TypeAlias = "Connection | Statements"
Target: TypeAlias = "Connection | Tx"


# IMAP looks a mailbox up for every command
_FIND = (
    "SELECT mailboxes.id, mailboxes.uidvalidity, mailboxes.uidnext, mailboxes.highestmodseq, mailboxes.recent_uid"
    " FROM mailboxes JOIN users ON users.id = mailboxes.user_id WHERE users.address = ? AND mailboxes.name = ?"
)


def _find(source: Source, address: str, name: str) -> _Mailbox:
    """The user's mailbox NAME, or NoSuchMailbox."""
    rows = statements_of(source).run(_FIND, (address.lower(), canonical(name)))
    if not rows:
        raise NoSuchMailbox(f"no mailbox {canonical(name)!r}")
    return _Mailbox._make(rows[0])  # integers as the driver gives them: this runs for every command


def _find_locked(tx: Tx, address: str, name: str) -> _Mailbox:
    """The user's mailbox NAME, its row locked until the commit, before its messages are read to be changed
    (flags, EXPUNGE, MOVE): on PostgreSQL another IMAP worker's session changing them at once waits, and then
    reads what this one left, rather than undo this one's flag change or move the same message again."""
    rows = tx.run(_FIND + tx.dialect.lock("mailboxes"), (address.lower(), canonical(name)))
    if not rows:
        raise NoSuchMailbox(f"no mailbox {canonical(name)!r}")
    return _Mailbox._make(rows[0])


_MAILBOX_ID = (
    "SELECT mailboxes.id FROM mailboxes JOIN users ON users.id = mailboxes.user_id"
    " WHERE users.address = ? AND mailboxes.name = ?"
)


def _mailbox_id(statements: Statements, address: str, name: str) -> int | None:
    """The id of the user's mailbox named exactly NAME (POP3 and the CLI name INBOX as stored), or None."""
    rows = statements.run(_MAILBOX_ID, (address.lower(), name))
    return int(rows[0][0]) if rows else None


_NEXT_MODSEQ = "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ? RETURNING highestmodseq"


def _next_modseq(tx: Tx, mailbox_id: int) -> int:
    """RFC 7162: every change in a mailbox (flags, expunges) takes a mod-sequence above any before it."""
    return int(tx.run(_NEXT_MODSEQ, (mailbox_id,))[0][0])


def flag_set(flags: Iterable[str]) -> frozenset[str]:
    """System flags in their RFC 3501 spelling (flags are case-insensitive there); keywords as given."""
    found = set()
    for flag in flags:
        if flag.startswith("\\"):
            if flag.lower() not in SYSTEM_FLAGS:
                raise MailboxError(f"{flag!r} cannot be stored")
            found.add(SYSTEM_FLAGS[flag.lower()])
        elif _KEYWORD.fullmatch(flag):
            found.add(flag)
        else:
            raise MailboxError(f"{flag!r} is not a keyword")
    return frozenset(found)


def _flags_text(flags: frozenset[str]) -> str:
    return " ".join(sorted(flags))


@functools.cache
def _rows_statement(deleted: bool, uids: Literal["all", "range"] | int) -> str:
    """_rows's statement: every message, a run of UIDs (low to high) or a list of so many, of those only the
    ones flagged \\Deleted when DELETED. It reads the messages_state index alone."""
    if uids == "all":
        wanted = ""
    elif uids == "range":
        wanted = " AND uid BETWEEN ? AND ?"
    else:
        wanted = f" AND uid IN ({', '.join('?' * uids)})"
    flagged = f" AND {_HAS_DELETED}" if deleted else ""
    return f"SELECT id, uid, flags, modseq, size FROM messages WHERE mailbox_id = ?{wanted}{flagged} ORDER BY uid"


def _rows(tx: Statements, mailbox_id: int, uids: Iterable[int] | None, deleted: bool = False) -> list[_Message]:
    """The mailbox's messages in UID order: all, or those among UIDS, or of those the ones flagged \\Deleted
    (SQLite looks, not Python: a mailbox can be large). UIDs that name no message are passed over, as RFC
    3501's UID commands do."""
    flag_sets = _FlagSets()
    rows: list[Any] = []
    if uids is None:
        rows = tx.run(_rows_statement(deleted, "all"), (mailbox_id,))
    else:
        wanted = sorted(set(uids))
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            if chunk[-1] - chunk[0] < 2 * len(chunk):  # a run with few gaps: one range scan, as fetch_messages
                keep = set(chunk)
                ranged = tx.run(_rows_statement(deleted, "range"), (mailbox_id, chunk[0], chunk[-1]))
                rows += [row for row in ranged if row[1] in keep]
            else:
                rows += tx.run(_rows_statement(deleted, len(chunk)), (mailbox_id, *chunk))
    return [_Message(row_id, uid, flag_sets[flags], modseq, size) for row_id, uid, flags, modseq, size in rows]


class _FlagSets(dict[str, frozenset[str]]):
    """Stored flags text to its set, each text parsed once: most messages of a mailbox share a few sets, and
    SELECT reads every message."""

    def __missing__(self, text: str) -> frozenset[str]:
        found = self[text] = frozenset(text.split())
        return found


# How many mod-sequences back the record of expunged UIDs reaches. A selected session looks at its mailbox
# after each of its commands, and an idle one at least every few minutes (IDLE, NOOP): it lags a few changes
# behind, rarely thousands. One further behind than this (a client asleep for days on a busy mailbox) reads
# every UID left instead, once, as all did before the record. The bound keeps the record to the messages
# expunged within the window, and the pruning, run with each expunge, to an index seek.
EXPUNGED_WINDOW = 10_000
_RECORD_EXPUNGED = "INSERT INTO expunged (mailbox_id, modseq, uid) VALUES (?, ?, ?)"
_PRUNE_EXPUNGED = "DELETE FROM expunged WHERE mailbox_id = ? AND modseq <= ?"


def _expunge(tx: Tx, mailbox_id: int, gone: Sequence[_Message]) -> None:
    """GONE leave the mailbox under one new mod-sequence, which their UIDs are recorded with: a session
    selected on it learns what went since it last looked from these rows (`changes`), not by reading every
    UID left. Every delete of messages from a mailbox that stays goes through here."""
    tx.run_many("DELETE FROM messages WHERE id = ?", [(message.id,) for message in gone])
    modseq = _next_modseq(tx, mailbox_id)
    tx.run_many(_RECORD_EXPUNGED, [(mailbox_id, modseq, message.uid) for message in gone])
    tx.run(_PRUNE_EXPUNGED, (mailbox_id, modseq - EXPUNGED_WINDOW))


_NEW_UIDVALIDITY = "UPDATE uidvalidity_clock SET last = CASE WHEN last < ? THEN ? ELSE last + 1 END RETURNING last"


def new_uidvalidity(target: Target) -> int:
    """The creation time, as RFC 3501 §2.3.1.1 suggests, but above every UIDVALIDITY given before: a mailbox
    deleted and made again within a second, or a clock set back (a board without a battery-backed clock,
    before NTP), must not repeat one."""
    now = int(time.time())
    (last,) = tx_of(target).run(_NEW_UIDVALIDITY, (now, now))  # the table's one row
    return int(last[0])


# A system flag's name is found in messages.flags only as that flag: flag_set stores no other backslash, no
# keyword holds one (_KEYWORD), and none of the five names begins another. So no spaces are put around the
# text to match whole words: that made a new string per message, and counting unseen messages took twice as
# long. `/` escapes LIKE's wildcards, which no flag holds.
_HAS_SEEN = "messages.flags LIKE '%\\Seen%' ESCAPE '/'"
_HAS_DELETED = "messages.flags LIKE '%\\Deleted%' ESCAPE '/'"
_MAILBOXES = (
    "SELECT mailboxes.name, mailboxes.special_use, mailboxes.uidvalidity, mailboxes.uidnext,"
    " mailboxes.highestmodseq, count(messages.id),"
    f" count(messages.id) FILTER (WHERE NOT {_HAS_SEEN}),"
    " count(messages.id) FILTER (WHERE messages.uid >= mailboxes.recent_uid),"
    f" count(messages.id) FILTER (WHERE {_HAS_DELETED}),"
    " coalesce(sum(messages.size), 0)"
    " FROM mailboxes JOIN users ON users.id = mailboxes.user_id"
    " LEFT OUTER JOIN messages ON messages.mailbox_id = mailboxes.id"
    " WHERE users.address = ? GROUP BY mailboxes.id"
    " ORDER BY CASE WHEN mailboxes.name = 'INBOX' THEN 0 ELSE 1 END, mailboxes.name"
)


_FOLDERS = (
    "SELECT mailboxes.name, mailboxes.special_use FROM mailboxes JOIN users ON users.id = mailboxes.user_id"
    " WHERE users.address = ? ORDER BY CASE WHEN mailboxes.name = 'INBOX' THEN 0 ELSE 1 END, mailboxes.name"
)


def junk_folder(source: Source, address: str) -> str:
    """The name of the user's mailbox whose special use is \\Junk (RFC 6154), whatever they renamed it to; INBOX
    if they have none (deleted): a copy the filters put aside is never lost for want of a folder."""
    rows = statements_of(source).run(
        "SELECT mailboxes.name FROM mailboxes JOIN users ON users.id = mailboxes.user_id"
        " WHERE users.address = ? AND mailboxes.special_use = ? ORDER BY mailboxes.id LIMIT 1",
        (address.lower(), "\\Junk"),
    )
    return str(rows[0][0]) if rows else INBOX


def folders(source: Source, address: str) -> list[Folder]:
    """The user's mailboxes as `mailboxes` orders them, without reading their messages: what a LIST that
    asks for no STATUS needs."""
    return [Folder(name, use) for name, use in statements_of(source).run(_FOLDERS, (address.lower(),))]


def mailboxes(source: Source, address: str) -> list[MailboxInfo]:
    """The user's mailboxes, INBOX first and the rest by name, with what LIST-STATUS reports (STATUS of one
    mailbox reads only what it asks: `status`)."""
    rows = statements_of(source).run(_MAILBOXES, (address.lower(),))
    return [
        MailboxInfo(
            name=name,
            special_use=special_use,
            uidvalidity=int(uidvalidity),
            uidnext=int(uidnext),
            highestmodseq=int(highestmodseq),
            messages=int(count),
            unseen=int(unseen),
            recent=int(recent),
            deleted=int(deleted),
            size=int(size),
        )
        for name, special_use, uidvalidity, uidnext, highestmodseq, count, unseen, recent, deleted, size in rows
    ]


_IN_MAILBOX = "SELECT {what} FROM messages WHERE messages.mailbox_id = mailboxes.id"
# what each STATUS item reads: a column of the mailbox, or a look at its messages in the covering index
_STATUS_ITEMS = {
    "MESSAGES": f"({_IN_MAILBOX.format(what='count(*)')})",
    "UNSEEN": f"({_IN_MAILBOX.format(what='count(*)')} AND NOT {_HAS_SEEN})",
    "RECENT": f"({_IN_MAILBOX.format(what='count(*)')} AND messages.uid >= mailboxes.recent_uid)",
    "DELETED": f"({_IN_MAILBOX.format(what='count(*)')} AND {_HAS_DELETED})",
    "SIZE": f"({_IN_MAILBOX.format(what='coalesce(sum(messages.size), 0)')})",
    "UIDNEXT": "mailboxes.uidnext",
    "UIDVALIDITY": "mailboxes.uidvalidity",
    "HIGHESTMODSEQ": "mailboxes.highestmodseq",
}


@functools.cache
def _status_statement(items: tuple[str, ...]) -> str:
    columns = ", ".join(_STATUS_ITEMS[item] for item in items)
    return (
        f"SELECT mailboxes.name, {columns} FROM mailboxes JOIN users ON users.id = mailboxes.user_id"
        " WHERE users.address = ? AND mailboxes.name = ?"
    )


def status(source: Source, address: str, name: str, items: tuple[str, ...]) -> tuple[str, list[int]] | None:
    """The mailbox NAME's name as stored and the values of the STATUS ITEMS, in their order; None when the
    user has no such mailbox. One statement that reads only what is asked: clients STATUS each mailbox in
    turn, and counting what nobody asked for (\\Deleted, sizes) made it twice the work."""
    rows = statements_of(source).run(_status_statement(items), (address.lower(), canonical(name)))
    if not rows:
        return None
    stored, *values = rows[0]
    return stored, [int(value) for value in values]


_ADD_MAILBOX = (
    "INSERT INTO mailboxes (user_id, name, special_use, uidvalidity, uidnext, highestmodseq, recent_uid)"
    " VALUES (?, ?, ?, ?, 1, 1, 1)"
)


def create_mailbox(
    target: Target,
    address: str,
    name: str,
    special_use: SpecialUse | None = None,
    limit: int | None = None,
) -> None:
    """A new, empty mailbox. Its parents need not exist: clients create "a/b/c" at once, and LIST shows
    the missing "a" and "a/b" as names without a mailbox. With LIMIT, the user may have that many mailboxes
    at most (issue 15: 10,000 of them made every LIST a long wait)."""
    tx = tx_of(target)
    name = canonical(name)
    _check_name(name)
    if special_use is not None and special_use not in get_args(SpecialUse):
        raise MailboxError(f"{special_use!r} is not a special use this server knows")
    user_id = _user_id(tx, address)
    if tx.run("SELECT id FROM mailboxes WHERE user_id = ? AND name = ?", (user_id, name)):
        raise MailboxExists(f"mailbox {name!r} exists already")
    if limit is not None:
        count = int(tx.run("SELECT count(*) FROM mailboxes WHERE user_id = ?", (user_id,))[0][0])
        if count >= limit:
            raise TooManyMailboxes(f"you have {count} mailboxes, as many as you may; delete one first")
    tx.run(_ADD_MAILBOX, (user_id, name, special_use, new_uidvalidity(tx)))


_NAMES = "SELECT name, id FROM mailboxes WHERE user_id = ?"


def rename_mailbox(target: Target, address: str, old: str, new: str, limit: int | None = None) -> None:
    """RFC 3501 §6.3.5: OLD becomes NEW and its children "OLD/x" become "NEW/x", keeping their UIDs and
    UIDVALIDITY, and their subscriptions: a folder renamed in one client stays in the others' folder lists
    (Dovecot 2.3 leaves them under the old names, which then list as \\NonExistent). OLD may be a name that
    only has children (one LIST shows without a mailbox). Renaming INBOX instead moves its messages to a new
    mailbox NEW, which counts against LIMIT as CREATE's does, and leaves INBOX, and its children, in place."""
    tx = tx_of(target)
    old, new = canonical(old), canonical(new)
    _check_name(new)
    if old == INBOX:
        create_mailbox(tx, address, new, limit=limit)
        inbox = select(tx, address, INBOX)
        move(tx, address, INBOX, inbox.uids, new)
        return
    user_id = _user_id(tx, address)
    # A user has a few dozen mailboxes; matching the names here spares SQL's LIKE, case-insensitive in SQLite
    names = {name: int(mailbox_id) for name, mailbox_id in tx.run(_NAMES, (user_id,))}
    targets = {
        mailbox_id: new + name[len(old) :]
        for name, mailbox_id in names.items()
        if name == old or name.startswith(old + DELIMITER)
    }
    if not targets:
        raise NoSuchMailbox(f"no mailbox {old!r}")
    for renamed in targets.values():
        _check_name(renamed)
        if renamed in names:
            raise MailboxExists(f"mailbox {renamed!r} exists already")
    # No new name is taken, so no step of the renaming collides with a name not yet renamed
    tx.run_many(
        "UPDATE mailboxes SET name = ? WHERE id = ?", [(renamed, mailbox_id) for mailbox_id, renamed in targets.items()]
    )
    _rename_subscriptions(tx, user_id, old, new)


def _rename_subscriptions(tx: Tx, user_id: int, old: str, new: str) -> None:
    """The subscriptions to OLD and the names below it, those without a mailbox too, move to NEW. One may be
    taken already (a mailbox deleted while subscribed): the two are one subscription."""
    subscribed = {name for (name,) in tx.run("SELECT name FROM subscriptions WHERE user_id = ?", (user_id,))}
    moving = [name for name in subscribed if name == old or name.startswith(old + DELIMITER)]
    if not moving:
        return
    targets = {new + name[len(old) :] for name in moving}
    for renamed in targets:
        _check_name(renamed)
    tx.run_many("DELETE FROM subscriptions WHERE user_id = ? AND name = ?", [(user_id, name) for name in moving])
    new_names = targets - subscribed.difference(moving)
    if new_names:
        tx.run_many(_SUBSCRIBE, [(user_id, name) for name in new_names])


def delete_mailbox(target: Target, address: str, name: str) -> None:
    """The mailbox and its messages go; its children stay (RFC 3501 §6.3.4), and INBOX cannot go."""
    tx = tx_of(target)
    name = canonical(name)
    if name == INBOX:
        raise MailboxError("INBOX cannot be deleted")
    # locked before its messages go, in the order STORE, EXPUNGE and MOVE lock in: the other way round deadlocks
    mailbox_id = _find_locked(tx, address, name).id
    tx.run("DELETE FROM messages WHERE mailbox_id = ?", (mailbox_id,))
    tx.run("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))


_SUBSCRIPTIONS = (
    "SELECT subscriptions.name FROM subscriptions JOIN users ON users.id = subscriptions.user_id"
    " WHERE users.address = ? ORDER BY subscriptions.name"
)
_SUBSCRIBE = "INSERT INTO subscriptions (user_id, name) VALUES (?, ?)"


def subscriptions(source: Source, address: str) -> list[str]:
    """The names the user subscribed to, by name, whether a mailbox has them or not (LSUB, LIST (SUBSCRIBED))."""
    return [name for (name,) in statements_of(source).run(_SUBSCRIPTIONS, (address.lower(),))]


def subscribe(target: Target, address: str, name: str, limit: int | None = None) -> None:
    """SUBSCRIBE: only a mailbox that exists, as Dovecot does (RFC 3501 §6.3.6 allows the check); once
    subscribed, it stays so when deleted (§6.3.6 forbids taking it away). With LIMIT, the user may subscribe
    to that many names at most: deleted mailboxes' subscriptions would otherwise pile up without end, and
    each LSUB reads them all."""
    tx = tx_of(target)
    name = canonical(name)
    _find(tx, address, name)
    user_id = _user_id(tx, address)
    if tx.run("SELECT id FROM subscriptions WHERE user_id = ? AND name = ?", (user_id, name)):
        return
    if limit is not None:
        count = int(tx.run("SELECT count(*) FROM subscriptions WHERE user_id = ?", (user_id,))[0][0])
        if count >= limit:
            raise TooManyMailboxes(f"you subscribe to {count} names, as many as you may; unsubscribe from one first")
    tx.run(_SUBSCRIBE, (user_id, name))


def unsubscribe(target: Target, address: str, name: str) -> None:
    """UNSUBSCRIBE: the name is no longer subscribed, whether a mailbox has it or not. A name neither
    subscribed nor a mailbox is NoSuchMailbox; a mailbox that was not subscribed is left so."""
    tx = tx_of(target)
    name = canonical(name)
    user_id = _user_id(tx, address)
    gone = tx.run("DELETE FROM subscriptions WHERE user_id = ? AND name = ? RETURNING id", (user_id, name))
    if not gone:
        _find(tx, address, name)


def select(source: Source, address: str, name: str, before: Selected | None = None) -> Selected:
    """Everything SELECT and EXAMINE report, and each message's UID, flags and mod-sequence. BEFORE, an earlier
    select of the same mailbox name (left as it was), spares reading what did not change since: only the
    changes are read (`changes`), in the same snapshot as the mailbox, unless it is another mailbox now."""
    statements = statements_of(source)
    found = _find(statements, address, name)
    if before is not None and (before.mailbox_id, before.uidvalidity) == (found.id, found.uidvalidity):
        return _reselect(statements, found, before)
    rows = statements.run(_LISTED, (found.id,))
    # column by column, each at C speed: a SELECT of a few thousand messages spent most of its time making an
    # object per message and taking it apart again
    uids, texts, modseqs, sizes = zip(*rows, strict=True) if rows else ((), (), (), ())
    flag_sets = _FlagSets()
    flags = dict(zip(uids, map(flag_sets.__getitem__, texts), strict=True))
    return _selected(
        found,
        list(uids),
        flags,
        dict(zip(uids, modseqs, strict=True)),
        dict(zip(uids, sizes, strict=True)),
        _keywords(flag_sets.values()),  # each distinct set once
    )


def _selected(
    found: _Mailbox,
    uids: list[int],
    flags: dict[int, frozenset[str]],
    modseqs: dict[int, int],
    sizes: dict[int, int],
    keywords: set[str],
) -> Selected:
    """FOUND's state as SELECT reports it, with its messages."""
    return Selected(
        mailbox_id=found.id,
        uidvalidity=found.uidvalidity,
        uidnext=found.uidnext,
        highestmodseq=found.highestmodseq,
        recent_from=found.recent_uid,
        uids=uids,
        flags=flags,
        modseqs=modseqs,
        sizes=sizes,
        keywords=keywords,
    )


def _keywords(flag_sets: Iterable[frozenset[str]]) -> set[str]:
    return {flag for flags in flag_sets for flag in flags if not flag.startswith("\\")}


def _reselect(statements: Statements, found: _Mailbox, before: Selected) -> Selected:
    """BEFORE brought up to FOUND's state: copies, changed by what `changes` reads."""
    since = (before.uidnext, before.highestmodseq)
    if (found.uidnext, found.highestmodseq) == since:
        return replace(before, recent_from=found.recent_uid)
    changed = _changes(statements, found, since, before.uids)
    flags, modseqs, sizes = dict(before.flags), dict(before.modseqs), dict(before.sizes)
    uids = before.uids
    if changed.expunged:
        gone = flags.keys() & changed.expunged
        uids = [uid for uid in uids if uid not in gone]
        for uid in gone:
            del flags[uid], modseqs[uid], sizes[uid]
    # the changes come in UID order: the new messages, from the UIDNEXT seen before on, come last
    uids = uids + [message.uid for message in changed.messages if message.uid >= since[0]]
    for message in changed.messages:
        uid = message.uid
        flags[uid], modseqs[uid], sizes[uid] = message.flags, message.modseq, message.size
    return _selected(found, uids, flags, modseqs, sizes, _keywords(set(flags.values())))


# These read the messages_state index alone (store/schema.py), never the table
_LISTED = "SELECT uid, flags, modseq, size FROM messages WHERE mailbox_id = ? ORDER BY uid"


def _listed(statements: Statements, query: str, keys: tuple[int, ...]) -> list[Listed]:
    """QUERY's (uid, flags, modseq, size) rows, each flags text parsed once."""
    flag_sets = _FlagSets()
    return [Listed(uid, flag_sets[flags], modseq, size) for uid, flags, modseq, size in statements.run(query, keys)]


@dataclass(frozen=True)
class Changes:
    """What changed in a mailbox since a session last looked at it, all read in one transaction: the mailbox's
    state now, the messages whose flags changed or that are new, and those the session knew of that are gone."""

    uidnext: int
    highestmodseq: int
    recent_from: int  # as in Selected
    messages: list[Listed]  # a mod-sequence above the one looked at before, or a UID from its UIDNEXT on
    expunged: list[int]  # of the UIDs the session knew of below the UIDNEXT it looked at, those gone; ascending


# Two seeks: the messages changed since a mod-sequence (messages_modseq; `+uid` keeps the planner off the UID
# index, which would read every message) and the new ones. With ORDER BY, SQLite read both from messages_state,
# an entry for every message of the mailbox: the few rows are sorted in Python instead
_CHANGED = (
    "SELECT uid, flags, modseq, size FROM messages WHERE mailbox_id = ? AND modseq > ? AND +uid < ?"
    " UNION ALL SELECT uid, flags, modseq, size FROM messages WHERE mailbox_id = ? AND uid >= ?"
)
# The UIDs left as one text, "1,2,5" (a row per UID cost twice the time), for when the record of expunges does
# not tell all that went (_changes)
_OLD = {
    "sqlite": "SELECT group_concat(uid) FROM messages WHERE mailbox_id = ? AND uid < ?",
    "postgresql": "SELECT string_agg(CAST(uid AS TEXT), ',') FROM messages WHERE mailbox_id = ? AND uid < ?",
}
_EXPUNGED_SINCE = "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? AND uid < ?"


def state(source: Source, address: str, name: str) -> tuple[int, int]:
    """The mailbox's (uidnext, highestmodseq): any change to it (a message added, expunged or its flags
    changed, by whatever process) moves one of them on. One statement, for a look after every command."""
    found = _find(source, address, name)
    return found.uidnext, found.highestmodseq


def changes(source: Source, address: str, name: str, since: tuple[int, int], known: Sequence[int]) -> Changes | None:
    """What changed in the mailbox since its (uidnext, highestmodseq) was SINCE, for a session that knows of
    the messages KNOWN (their UIDs, ascending) and saw it so; None when nothing did. A session checks after
    every command: what it reads grows with the changes, not with the mailbox (re-reading every message's
    flags for each command of ten busy clients took most of the daemon's time)."""
    statements = statements_of(source)
    found = _find(statements, address, name)
    if (found.uidnext, found.highestmodseq) == since:
        return None
    return _changes(statements, found, since, known)


def _changes(statements: Statements, found: _Mailbox, since: tuple[int, int], known: Sequence[int]) -> Changes:
    """The expunged among KNOWN come from the record of expunges since SINCE's mod-sequence (`_expunge`): a
    few rows, where reading every UID left, 500 of them for each of ten sessions after each EXPUNGE, was the
    daemon's largest cost in Python (issue 20). Those recorded that the session no longer knows of are its
    own expunges, told already. The record tells all unless rows after SINCE may have been pruned (SINCE more
    than EXPUNGED_WINDOW behind) or it began after SINCE (a row of UID 0 marks where: migration 0017); then
    every UID left is read. Counting the messages left to check it cost as much as the rest of the look."""
    uidnext, modseq = since
    changed = _listed(statements, _CHANGED, (found.id, modseq, uidnext, found.id, uidnext))
    changed.sort()  # by UID: the changed come by mod-sequence, then the new
    recorded = [uid for (uid,) in statements.run(_EXPUNGED_SINCE, (found.id, modseq, uidnext))]
    if modseq >= found.highestmodseq - EXPUNGED_WINDOW and 0 not in recorded:
        expunged = sorted(uid for uid in recorded if _holds(known, uid))
    else:
        text = statements.run(_OLD[statements.dialect.name], (found.id, uidnext))[0][0]
        remaining = set(map(int, text.split(","))) if text else set()
        expunged = [uid for uid in known[: bisect.bisect_left(known, uidnext)] if uid not in remaining]
    return Changes(found.uidnext, found.highestmodseq, found.recent_uid, changed, expunged)


def _holds(uids: Sequence[int], uid: int) -> bool:
    """Whether the ascending UIDS hold UID."""
    at = bisect.bisect_left(uids, uid)
    return at < len(uids) and uids[at] == uid


def claim_recent(target: Target, address: str, name: str, before: int) -> int:
    """RFC 3501 §2.3.2: the messages below UID BEFORE that are still \\Recent become the calling session's,
    and no later session sees them so. Returns the first of them: the session's are those from it to
    BEFORE. A SELECT claims (EXAMINE does not, §6.3.2), and so does a selected session that sees new mail;
    BEFORE 0 claims none, and says where the unclaimed start. Only this one row is written: the messages are
    read outside the write transaction.

    The row is moved on only from the value read: on PostgreSQL another worker's session may claim between
    the read and the write (SQLite has one writer), and then the write finds no row, and the claim starts
    over from what that session left."""
    tx = tx_of(target)
    while True:
        found = _find(tx, address, name)
        if found.recent_uid >= before or tx.run(_CLAIM_RECENT, (before, found.id, found.recent_uid)):
            return found.recent_uid


_CLAIM_RECENT = "UPDATE mailboxes SET recent_uid = ? WHERE id = ? AND recent_uid = ? RETURNING id"


def _apply(mode: StoreMode, current: frozenset[str], given: frozenset[str]) -> frozenset[str]:
    if mode == "add":
        return current | given
    if mode == "remove":
        return current - given
    if mode == "replace":
        return given
    assert_never(mode)


def store_flags(
    target: Target,
    address: str,
    name: str,
    uids: Collection[int],
    flags: Iterable[str],
    mode: StoreMode,
    unchanged_since: int | None = None,
) -> StoreResult:
    """STORE: add, remove or replace FLAGS on the messages UIDS. Those whose flags change share one new
    mod-sequence; with UNCHANGEDSINCE (RFC 7162 §3.1.3), a message changed after it is left alone."""
    tx = tx_of(target)
    given = flag_set(flags)
    found = _find(tx, address, name)
    after, failed = _planned(tx, found.id, uids, given, mode, unchanged_since)
    if tx.dialect.row_locks and any(wanted != message.flags for message, wanted in after):
        # Locked only for a change, and read again: a STORE that changes nothing (a client marking read what is
        # read) holds no lock until its batch commits, which another worker's batch could deadlock with
        found = _find_locked(tx, address, name)
        after, failed = _planned(tx, found.id, uids, given, mode, unchanged_since)
    changed = [(message, wanted) for message, wanted in after if wanted != message.flags]
    modseq = _next_modseq(tx, found.id) if changed else found.highestmodseq
    if changed:
        tx.run_many(
            "UPDATE messages SET flags = ?, modseq = ? WHERE id = ?",
            [(_flags_text(wanted), modseq, message.id) for message, wanted in changed],
        )
    return StoreResult(
        messages=[
            FlagState(message.uid, wanted, modseq if wanted != message.flags else message.modseq)
            for message, wanted in after
        ],
        changed=[message.uid for message, _wanted in changed],
        failed=failed,
        before={message.uid: message.flags for message, _wanted in changed},
    )


def _planned(
    tx: Tx, mailbox_id: int, uids: Collection[int], given: frozenset[str], mode: StoreMode, unchanged_since: int | None
) -> tuple[list[tuple[_Message, frozenset[str]]], list[int]]:
    """STORE's messages with the flags each is to have, and the UIDs UNCHANGEDSINCE leaves alone."""
    failed: list[int] = []
    after: list[tuple[_Message, frozenset[str]]] = []
    for message in _rows(tx, mailbox_id, uids):
        if unchanged_since is not None and message.modseq > unchanged_since:
            failed.append(message.uid)
        else:
            after.append((message, _apply(mode, message.flags, given)))
    return after, failed


class Taken(NamedTuple):
    """UIDs taken in a mailbox (take_uids): the first of them, and the mod-sequence that came with them."""

    mailbox_id: int
    uid: int
    modseq: int


# One statement takes the UIDs and the mod-sequence and moves both on (this runs for every delivery)
_TAKE_UIDS = (
    "UPDATE mailboxes SET uidnext = uidnext + ?, highestmodseq = highestmodseq + 1"
    " WHERE user_id = (SELECT id FROM users WHERE address = ?) AND name = ?"
    " RETURNING id, uidnext, highestmodseq"
)


def take_uids(tx: Tx, address: str, name: str, count: int = 1) -> Taken:
    """COUNT new UIDs in the user's mailbox NAME, for messages added in the caller's transaction (a delivery,
    APPEND, COPY): SQLite has one writer, and PostgreSQL's UPDATE locks the row, so no two share a UID."""
    found = tx.run(_TAKE_UIDS, (count, address.lower(), canonical(name)))
    if not found:
        raise NoSuchMailbox(f"no mailbox {canonical(name)} for {address}")
    mailbox_id, uidnext, modseq = found[0]
    return Taken(int(mailbox_id), int(uidnext) - count, int(modseq))


_ADD_MESSAGE = (
    "INSERT INTO messages (mailbox_id, uid, flags, modseq, received_at, size, body) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def append(
    target: Target,
    address: str,
    body: bytes,
    name: str = INBOX,
    flags: Iterable[str] = frozenset(),
    internal_date: float | None = None,
) -> int:
    """Store BODY as the next message of the user's mailbox, with FLAGS and IMAP's internal date (now, for a
    delivery); return its UID."""
    tx = tx_of(target)
    flags_text = _flags_text(flag_set(flags))
    taken = take_uids(tx, address, name)
    received_at = time.time() if internal_date is None else internal_date
    tx.run(_ADD_MESSAGE, (taken.mailbox_id, taken.uid, flags_text, taken.modseq, received_at, len(body), body))
    return taken.uid


def copy(target: Target, address: str, source: str, uids: Collection[int], into: str) -> list[tuple[int, int]]:
    """COPY: the messages UIDS of SOURCE, with their flags and internal dates (RFC 3501 §6.4.7), become new
    messages of INTO, numbered in the order of their UIDs. Returns (source UID, new UID) pairs in
    ascending source UID order, for UIDPLUS's COPYUID (RFC 4315)."""
    tx = tx_of(target)
    return _copy(tx, address, _rows(tx, _find(tx, address, source).id, uids), into)


def move(target: Target, address: str, source: str, uids: Collection[int], into: str) -> list[tuple[int, int]]:
    """MOVE (RFC 6851): COPY, then the originals are expunged from SOURCE, in the caller's one transaction."""
    tx = tx_of(target)
    origin = _find_locked(tx, address, source).id
    found = _rows(tx, origin, uids)
    moved = _copy(tx, address, found, into)
    if found:
        _expunge(tx, origin, found)
    return moved


# The bodies go from row to row inside the database, never through Python
_COPY_MESSAGE = (
    "INSERT INTO messages (mailbox_id, uid, flags, modseq, received_at, size, body)"
    " SELECT ?, ?, flags, ?, received_at, size, body FROM messages WHERE id = ?"
)


def _copy(tx: Tx, address: str, found: list[_Message], into: str) -> list[tuple[int, int]]:
    if not found:
        _find(tx, address, into)  # a target that does not exist is refused all the same
        return []
    taken = take_uids(tx, address, into, len(found))
    tx.run_many(
        _COPY_MESSAGE,
        [(taken.mailbox_id, taken.uid + position, taken.modseq, row.id) for position, row in enumerate(found)],
    )
    return [(row.uid, taken.uid + position) for position, row in enumerate(found)]


def expunge(target: Target, address: str, name: str, uids: Collection[int] | None = None) -> list[int]:
    """EXPUNGE: the messages flagged \\Deleted go, or only those among UIDS (UIDPLUS's UID EXPUNGE).
    Returns their UIDs, ascending."""
    tx = tx_of(target)
    found = _find_locked(tx, address, name)
    gone = _rows(tx, found.id, uids, deleted=True)
    if gone:
        _expunge(tx, found.id, gone)
    return [message.uid for message in gone]


@dataclass(frozen=True)
class Maildrop:
    """A mailbox as POP3 sees it at login: what identifies it for good, and each message's UID and size."""

    uidvalidity: int
    messages: list[tuple[int, int]]


def maildrop(source: Source, address: str, name: str = INBOX) -> Maildrop:
    statements = statements_of(source)
    rows = statements.run(_MAILDROP, (address.lower(), name))
    if not rows:
        raise LookupError(f"no mailbox {name} for {address}")
    mailbox_id, stamp = rows[0]
    sizes = statements.run("SELECT uid, size FROM messages WHERE mailbox_id = ? ORDER BY uid", (mailbox_id,))
    return Maildrop(int(stamp), [(int(uid), int(size)) for uid, size in sizes])


_MAILDROP = (
    "SELECT mailboxes.id, mailboxes.uidvalidity FROM mailboxes JOIN users ON users.id = mailboxes.user_id"
    " WHERE users.address = ? AND mailboxes.name = ?"
)
_STORED = "SELECT uid, received_at, size, body FROM messages WHERE mailbox_id = ?"


def list_messages(source: Source, address: str, name: str = INBOX) -> list[StoredMessage]:
    statements = statements_of(source)
    found = _mailbox_id(statements, address, name)
    if found is None:
        raise LookupError(f"no user {address.lower()}")
    rows = statements.run(f"{_STORED} ORDER BY uid", (found,))
    return [StoredMessage(uid, received_at, size, body) for uid, received_at, size, body in rows]


def uidvalidity(source: Source, address: str, name: str) -> int:
    return _find(source, address, name).uidvalidity


@functools.cache
def _fetch_statement(bodies: bool, prefix: bool, count: int | None) -> str:
    """fetch_messages's statement, written once for each kind: with the bodies or not, or their first bytes
    (a `?` before the rest), for a run of UIDs (COUNT None: low to high) or a list of COUNT of them."""
    body = (", substr(messages.body, 1, ?)" if prefix else ", messages.body") if bodies else ""
    uids = "BETWEEN ? AND ?" if count is None else f"IN ({', '.join('?' * count)})"
    return (
        f"SELECT messages.uid, messages.received_at, messages.size{body} FROM messages"
        " JOIN mailboxes ON mailboxes.id = messages.mailbox_id JOIN users ON users.id = mailboxes.user_id"
        f" WHERE users.address = ? AND mailboxes.name = ? AND messages.uid {uids} ORDER BY messages.uid"
    )


def fetch_messages(
    source: Source,
    address: str,
    name: str,
    uids: Collection[int],
    bodies: bool,
    prefix: int | None = None,
) -> list[StoredMessage]:
    """The messages UIDS of a mailbox in UID order (none when the mailbox is gone); without BODIES (FLAGS,
    sizes, dates) the bodies stay on disk and come back empty, and with PREFIX only their first PREFIX bytes
    come (what SEARCH reads). One statement each: mbsync reads a mailbox with one FETCH per message."""
    statements = statements_of(source)
    keys: tuple[Any, ...] = (address.lower(), canonical(name))
    if bodies and prefix is not None:
        keys = (prefix, *keys)
    wanted = sorted(set(uids))
    out: list[StoredMessage] = []
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        # A run of UIDs with few gaps (1:*, a client's next page) is one range scan: several times faster
        # than an IN list of hundreds of UIDs
        values: tuple[int, ...]
        if chunk[-1] - chunk[0] < 2 * len(chunk):
            query, values = _fetch_statement(bodies, prefix is not None, None), (chunk[0], chunk[-1])
        else:
            query, values = _fetch_statement(bodies, prefix is not None, len(chunk)), tuple(chunk)
        keep = set(chunk)
        rows = statements.run(query, (*keys, *values))
        if bodies:
            out += [StoredMessage(uid, at, size, body) for uid, at, size, body in rows if uid in keep]
        else:
            out += [StoredMessage(uid, at, size, b"") for uid, at, size in rows if uid in keep]
    return out


def remove(target: Target, address: str, uids: list[int], name: str = INBOX) -> int:
    """Delete the messages UIDS from the user's mailbox (POP3's QUIT); how many went. An IMAP session
    watching the mailbox learns of it as of an EXPUNGE."""
    tx = tx_of(target)
    try:
        found = _find_locked(tx, address, name)
    except NoSuchMailbox:
        return 0
    gone = _rows(tx, found.id, uids)
    if gone:
        _expunge(tx, found.id, gone)
    return len(gone)


def get_message(source: Source, address: str, uid: int, name: str = INBOX) -> StoredMessage | None:
    statements = statements_of(source)
    found = _mailbox_id(statements, address, name)
    if found is None:
        raise LookupError(f"no user {address.lower()}")
    rows = statements.run(f"{_STORED} AND uid = ?", (found, uid))
    return StoredMessage(*rows[0]) if rows else None


_MESSAGE_COUNTS = (
    "SELECT users.address, count(messages.id) FROM users JOIN mailboxes ON mailboxes.user_id = users.id"
    " LEFT OUTER JOIN messages ON messages.mailbox_id = mailboxes.id"
    " WHERE mailboxes.name = ? GROUP BY users.id, users.address ORDER BY users.id"
)
_MESSAGES_HELD = (
    "SELECT count(messages.id) FROM messages JOIN mailboxes ON mailboxes.id = messages.mailbox_id"
    " JOIN users ON users.id = mailboxes.user_id WHERE users.address = ?"
)


def message_counts(source: Source) -> list[tuple[str, int]]:
    """Each user's address and how many messages their INBOX holds, in the order users were added."""
    return [(address, int(count)) for address, count in statements_of(source).run(_MESSAGE_COUNTS, (INBOX,))]


def messages_held(source: Source, address: str) -> int:
    """How many messages the user's folders hold, all of them: what removing the user would delete (0 for an
    address that is no user)."""
    return int(statements_of(source).run(_MESSAGES_HELD, (address.lower(),))[0][0])
