"""The outbound queue's rows: a message, its pending recipients, and when to try next.

Prepared statements on the DB-API (store/statements.py), as the queue reads them on every wake-up and every
attempt; an entry is written by store/intake.py (mail/delivery.commit) and its attempts recorded by
store/attempts.py. Columns are named as store/schema.py defines them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

_ENTRIES = "SELECT id, sender, created_at, next_attempt, attempts, last_error FROM queue"
_ORDER = " ORDER BY next_attempt, created_at"
_LIST = _ENTRIES + _ORDER
_DUE = _ENTRIES + " WHERE next_attempt <= ?" + _ORDER + " LIMIT ?"
_ALL_RECIPIENTS = "SELECT queue_id, recipient FROM queue_recipients ORDER BY id"
_RECIPIENTS_OF = "SELECT recipient, sender, prefix FROM queue_recipients WHERE queue_id = ? ORDER BY id"
_BODY = (
    "SELECT queue.body, list_posts.body FROM queue LEFT OUTER JOIN list_posts ON list_posts.id = queue.post_id"
    " WHERE queue.id = ?"
)
_SIZE = "SELECT count(*) FROM queue"
_OLDEST = "SELECT created_at, last_error FROM queue ORDER BY created_at LIMIT 1"
_FLUSH = "UPDATE queue SET next_attempt = ? RETURNING id"
_REMOVE = "DELETE FROM queue WHERE id = ? RETURNING id"
_RETRY = "UPDATE queue SET next_attempt = ? WHERE id = ? RETURNING id"


class Personal(NamedTuple):
    """A recipient's own copy: its envelope sender (a list's VERP address) and the header lines
    prepended for it alone (its one-click unsubscribe link and the DKIM signature covering it)."""

    sender: str
    prefix: bytes


@dataclass(frozen=True)
class QueuedMessage:
    id: str
    sender: str
    recipients: tuple[str, ...]
    created_at: float
    next_attempt: float
    attempts: int
    last_error: str | None
    body: bytes = field(default=b"", repr=False)
    personal: dict[str, Personal] = field(default_factory=dict, repr=False)

    def as_json(self) -> dict[str, Any]:
        """The form `jitaku queue list --json` and the status page show."""
        return {
            "id": self.id,
            "sender": self.sender,
            "recipients": list(self.recipients),
            "attempts": self.attempts,
            "next_attempt": datetime.fromtimestamp(self.next_attempt, UTC).isoformat(timespec="seconds"),
            "last_error": self.last_error,
        }


def due(source: Connection | Statements, now: float, skip: Iterable[str], limit: int) -> list[QueuedMessage]:
    """Messages whose next attempt has come, not counting those in SKIP; without their bodies, which
    are read one by one as each attempt starts (`body_of`), so a batch of large ones never sits in memory.

    SKIP (the attempts under way) is left out here rather than in the SQL, whose statement would change with
    its size: of the first LIMIT + len(SKIP) due messages, at most len(SKIP) are skipped."""
    statements = statements_of(source)
    skip = set(skip)
    rows = [row for row in statements.run(_DUE, (now, limit + len(skip))) if row[0] not in skip][:limit]
    messages = []
    for queue_id, sender, created_at, next_attempt, attempts, last_error in rows:
        recipients, personal = [], {}
        for recipient, own_sender, prefix in statements.run(_RECIPIENTS_OF, (queue_id,)):
            recipients.append(recipient)
            if own_sender is not None:
                personal[recipient] = Personal(own_sender, bytes(prefix or b""))
        messages.append(
            QueuedMessage(
                queue_id, sender, tuple(recipients), created_at, next_attempt, attempts, last_error, personal=personal
            )
        )
    return messages


def body_of(source: Connection | Statements, queue_id: str) -> bytes | None:
    """A queued message's body (its list post's when it has one); None once it has left the queue."""
    rows = statements_of(source).run(_BODY, (queue_id,))
    if not rows:
        return None
    body, post_body = rows[0]
    return bytes(post_body if post_body is not None else body)


def list_queue(source: Connection | Statements) -> list[QueuedMessage]:
    """Every queued message, soonest due first, with its recipients (without personal copies or bodies)."""
    statements = statements_of(source)
    entries = statements.run(_LIST)
    recipients: dict[str, list[str]] = {row[0]: [] for row in entries}
    for queue_id, recipient in statements.run(_ALL_RECIPIENTS):
        if queue_id in recipients:  # one queued after the entries were read, outside a snapshot (a Core caller)
            recipients[queue_id].append(recipient)
    return [
        QueuedMessage(queue_id, sender, tuple(recipients[queue_id]), created_at, next_attempt, attempts, last_error)
        for queue_id, sender, created_at, next_attempt, attempts, last_error in entries
    ]


class Backlog(NamedTuple):
    size: int
    oldest_at: float | None
    oldest_error: str | None  # why the oldest message is still here


def backlog(source: Connection | Statements) -> Backlog:
    """How much waits and for how long, without reading any body (the health check's question)."""
    statements = statements_of(source)
    ((size,),) = statements.run(_SIZE)
    oldest = statements.run(_OLDEST)
    return Backlog(int(size), oldest[0][0] if oldest else None, oldest[0][1] if oldest else None)


def flush(target: Connection | Tx, now: float) -> int:
    """Make every queued message due at NOW (`jitaku queue flush`); how many there are."""
    return len(tx_of(target).run(_FLUSH, (now,)))


def retry(target: Connection | Tx, queue_id: str, now: float) -> bool:
    """Make one queued message due at NOW (the admin's "retry now"); whether it is still queued."""
    return bool(tx_of(target).run(_RETRY, (now, queue_id)))


def remove(target: Connection | Tx, queue_id: str) -> bool:
    """Drop a queued message, recipients and all, without a bounce; whether it was there."""
    return bool(tx_of(target).run(_REMOVE, (queue_id,)))
