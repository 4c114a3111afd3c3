"""A list's archive as the web reads it (the posts store/lists.py archives), and the one-time links that let a
member of a list whose archive is "members" in.

Only the hash of a login link's token is kept, so a copy of the database logs nobody in; a link is used once,
within LOGIN_LIFETIME.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

LOGIN_LIFETIME = 3600.0  # seconds a mailed login link works
KEEP_LOGINS = 86400.0  # seconds a login link's row is kept (used or not), for the rate limit


@dataclass(frozen=True)
class Archived:
    """One archived post, without its body: what a month's page and a message's neighbours show."""

    id: int
    number: int
    posted_at: float
    author: str
    subject: str
    message_id: str | None
    message_hash: str | None
    parent_number: int | None
    thread_number: int | None


_ARCHIVED = (
    "SELECT id, number, posted_at, author, subject, message_id, message_hash, parent_number, thread_number"
    " FROM list_posts WHERE list_id = ?"
)


def posted_times(source: Connection | Statements, list_id: int) -> list[float]:
    """When each post went out, for the count of each month (told in the site's time zone, so in Python)."""
    rows = statements_of(source).run("SELECT posted_at FROM list_posts WHERE list_id = ?", (list_id,))
    return [row[0] for row in rows]


def between(source: Connection | Statements, list_id: int, start: float, end: float) -> list[Archived]:
    """The posts that went out in [START, END), in order."""
    rows = statements_of(source).run(
        f"{_ARCHIVED} AND posted_at >= ? AND posted_at < ? ORDER BY number", (list_id, start, end)
    )
    return [Archived(*row) for row in rows]


def by_hash(source: Connection | Statements, list_id: int, message_hash: str) -> Archived | None:
    """The post whose archive page is at MESSAGE_HASH: the first one, should a Message-ID come twice."""
    rows = statements_of(source).run(
        f"{_ARCHIVED} AND message_hash = ? ORDER BY number LIMIT 1", (list_id, message_hash)
    )
    return Archived(*rows[0]) if rows else None


def by_ids(source: Connection | Statements, list_id: int, post_ids: list[int]) -> list[Archived]:
    """The posts of POST_IDS that belong to the list (search's hits), in their order."""
    if not post_ids:
        return []
    marks = ", ".join("?" for _ in post_ids)
    rows = statements_of(source).run(f"{_ARCHIVED} AND id IN ({marks})", (list_id, *post_ids))
    found = {row[0]: Archived(*row) for row in rows}
    return [found[i] for i in post_ids if i in found]


def thread(source: Connection | Statements, list_id: int, thread_number: int, limit: int = 500) -> list[Archived]:
    """The posts of a thread, in order (at most LIMIT: a message's page links its neighbours, not a book)."""
    rows = statements_of(source).run(
        f"{_ARCHIVED} AND (thread_number = ? OR number = ?) ORDER BY number LIMIT ?",
        (list_id, thread_number, thread_number, limit),
    )
    return [Archived(*row) for row in rows]


def body(source: Connection | Statements, post_id: int) -> bytes | None:
    rows = statements_of(source).run("SELECT body FROM list_posts WHERE id = ?", (post_id,))
    return bytes(rows[0][0]) if rows else None


def sender_and_body(source: Connection | Statements, post_id: int) -> tuple[str, bytes] | None:
    """The envelope sender and the body, for a post's mbox entry."""
    rows = statements_of(source).run("SELECT sender, body FROM list_posts WHERE id = ?", (post_id,))
    return (rows[0][0], bytes(rows[0][1])) if rows else None


# one-time login links


def add_login(
    target: Connection | Tx, token_hash: str, list_id: int, address: str, now: float, most: int, window: float
) -> bool:
    """Record a link to be mailed to ADDRESS, unless MOST were for the list within WINDOW seconds: counted and
    added in the one transaction, so that forms sent at once cannot all pass the count. Whether it was added.
    Links of every list older than KEEP_LOGINS are forgotten."""
    tx = tx_of(target)
    tx.run("DELETE FROM archive_logins WHERE created_at < ?", (now - KEEP_LOGINS,))
    rows = tx.run(
        "SELECT count(*) FROM archive_logins WHERE list_id = ? AND address = ? AND created_at >= ?",
        (list_id, address.lower(), now - window),
    )
    if int(rows[0][0]) >= most:
        return False
    tx.run(
        "INSERT INTO archive_logins (token_hash, list_id, address, created_at) VALUES (?, ?, ?, ?)",
        (token_hash, list_id, address.lower(), now),
    )
    return True


def find_login(source: Connection | Statements, token_hash: str, list_id: int, now: float) -> str | None:
    """The address of an unused link of the list still within its lifetime (a GET shows its button with it)."""
    rows = statements_of(source).run(
        "SELECT address FROM archive_logins WHERE token_hash = ? AND list_id = ? AND used_at IS NULL"
        " AND created_at >= ?",
        (token_hash, list_id, now - LOGIN_LIFETIME),
    )
    return str(rows[0][0]) if rows else None


def use_login(target: Connection | Tx, token_hash: str, list_id: int, now: float) -> str | None:
    """Use the link up (compare-and-set, so two clicks log in once); its address, or None when it is unknown,
    used, expired or another list's."""
    rows = tx_of(target).run(
        "UPDATE archive_logins SET used_at = ? WHERE token_hash = ? AND list_id = ? AND used_at IS NULL"
        " AND created_at >= ? RETURNING address",
        (now, token_hash, list_id, now - LOGIN_LIFETIME),
    )
    return str(rows[0][0]) if rows else None


def is_member(source: Connection | Statements, list_id: int, address: str) -> bool:
    """Whether ADDRESS is (still) a member: a login lasts only as long as the membership."""
    rows = statements_of(source).run(
        "SELECT 1 FROM list_members WHERE list_id = ? AND address = ?", (list_id, address.lower())
    )
    return bool(rows)
