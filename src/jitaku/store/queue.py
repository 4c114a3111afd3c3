"""The outbound queue's rows: a message, its pending recipients, and when to try next."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from jitaku.store.schema import list_posts, queue, queue_recipients


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


def enqueue(
    connection: Connection,
    queue_id: str,
    sender: str,
    recipients: Iterable[str],
    body: bytes,
    now: float,
    personal: dict[str, Personal] | None = None,
    post_id: int | None = None,
) -> None:
    """Queue BODY for RECIPIENTS; with POST_ID the body is that archived list post's, stored once."""
    personal = personal or {}
    # values with the execution: a statement's own values stay in SQLAlchemy's cache (see mailstore.append)
    connection.execute(
        insert(queue),
        {
            "id": queue_id,
            "sender": sender,
            "created_at": now,
            "next_attempt": now,
            "attempts": 0,
            "body": b"" if post_id is not None else body,
            "post_id": post_id,
        },
    )
    rows = []
    for recipient in recipients:
        own = personal.get(recipient)
        rows.append(
            {
                "queue_id": queue_id,
                "recipient": recipient,
                "sender": own.sender if own else None,
                "prefix": own.prefix if own else None,
            }
        )
    connection.execute(insert(queue_recipients), rows)


def _recipients(
    connection: Connection, ids: list[str], with_personal: bool
) -> dict[str, tuple[list[str], dict[str, Personal]]]:
    found: dict[str, tuple[list[str], dict[str, Personal]]] = {queue_id: ([], {}) for queue_id in ids}
    columns = [queue_recipients.c.queue_id, queue_recipients.c.recipient]
    if with_personal:
        columns += [queue_recipients.c.sender, queue_recipients.c.prefix]
    rows = connection.execute(
        select(*columns).where(queue_recipients.c.queue_id.in_(ids)).order_by(queue_recipients.c.id)
    )
    for row in rows:
        recipients, personal = found[row.queue_id]
        recipients.append(row.recipient)
        if with_personal and row.sender is not None:
            personal[row.recipient] = Personal(row.sender, row.prefix or b"")
    return found


def _read(
    connection: Connection, where: object, with_personal: bool = False, limit: int | None = None
) -> list[QueuedMessage]:
    columns = [
        queue.c.id,
        queue.c.sender,
        queue.c.created_at,
        queue.c.next_attempt,
        queue.c.attempts,
        queue.c.last_error,
    ]
    statement = select(*columns).order_by(queue.c.next_attempt, queue.c.created_at)
    if where is not None:
        statement = statement.where(where)  # type: ignore[arg-type]
    if limit is not None:
        statement = statement.limit(limit)
    rows = connection.execute(statement).all()
    recipients = _recipients(connection, [row.id for row in rows], with_personal)
    return [
        QueuedMessage(
            row.id,
            row.sender,
            tuple(recipients[row.id][0]),
            row.created_at,
            row.next_attempt,
            row.attempts,
            row.last_error,
            personal=recipients[row.id][1],
        )
        for row in rows
    ]


def due(connection: Connection, now: float, skip: Iterable[str], limit: int) -> list[QueuedMessage]:
    """Messages whose next attempt has come, not counting those in SKIP; without their bodies, which
    are read one by one as each attempt starts (`body_of`), so a batch of large ones never sits in memory."""
    condition = queue.c.next_attempt <= now
    skip = list(skip)
    if skip:
        condition = condition & queue.c.id.not_in(skip)
    return _read(connection, condition, with_personal=True, limit=limit)


def body_of(connection: Connection, queue_id: str) -> bytes | None:
    """A queued message's body (its list post's when it has one); None once it has left the queue."""
    row = connection.execute(
        select(queue.c.body, list_posts.c.body.label("post_body"))
        .select_from(queue.outerjoin(list_posts, list_posts.c.id == queue.c.post_id))
        .where(queue.c.id == queue_id)
    ).first()
    if row is None:
        return None
    return bytes(row.post_body if row.post_body is not None else row.body)


def list_queue(connection: Connection) -> list[QueuedMessage]:
    return _read(connection, None)


class Backlog(NamedTuple):
    size: int
    oldest_at: float | None
    oldest_error: str | None  # why the oldest message is still here


def backlog(connection: Connection) -> Backlog:
    """How much waits and for how long, without reading any body (the health check's question)."""
    size = connection.execute(select(func.count()).select_from(queue)).scalar_one()
    oldest = connection.execute(
        select(queue.c.created_at, queue.c.last_error).order_by(queue.c.created_at).limit(1)
    ).first()
    return Backlog(int(size), oldest.created_at if oldest else None, oldest.last_error if oldest else None)


def flush(connection: Connection, now: float) -> int:
    return connection.execute(update(queue).values(next_attempt=now)).rowcount


def remove(connection: Connection, queue_id: str) -> bool:
    return connection.execute(delete(queue).where(queue.c.id == queue_id)).rowcount > 0
