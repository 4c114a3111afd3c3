"""The rows every accepted message writes, as prepared statements on the DB-API (mail/delivery.commit).

A queue entry with its recipients and a list's inbox item are written here (tests/test_intake.py pins the
rows they leave); a local copy is `mailstore.append`'s. Columns are named as store/schema.py defines them,
whose migrations make the tables.
"""

from __future__ import annotations

from collections.abc import Iterable

from jitaku.addresses import ListRole
from jitaku.store.accounts import AccountError
from jitaku.store.queue import Personal
from jitaku.store.transaction import Tx

_ADD_QUEUED = (
    "INSERT INTO queue (id, sender, created_at, next_attempt, attempts, body, post_id) VALUES (?, ?, ?, ?, 0, ?, ?)"
)
_ADD_RECIPIENT = "INSERT INTO queue_recipients (queue_id, recipient, sender, prefix) VALUES (?, ?, ?, ?)"
_FIND_LIST = "SELECT id FROM lists WHERE address = ?"
_ADD_INBOX_ITEM = (
    "INSERT INTO list_inbox (list_id, role, recipient, sender, received_at, note, attempts, next_try, body)"
    " VALUES (?, ?, ?, ?, ?, ?, 0, 0.0, ?)"
)


def enqueue(
    tx: Tx,
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
    tx.run(_ADD_QUEUED, (queue_id, sender, now, now, b"" if post_id is not None else body, post_id))
    rows = []
    for recipient in recipients:
        own = personal.get(recipient)
        rows.append((queue_id, recipient, own.sender if own else None, own.prefix if own else None))
    tx.run_many(_ADD_RECIPIENT, rows)


def add_inbox(
    tx: Tx, list_address: str, role: ListRole, recipient: str, sender: str, body: bytes, now: float, note: str | None
) -> None:
    """Mail for a list, for its runner to take after the commit; NOTE, why the filters want a post held."""
    found = tx.run(_FIND_LIST, (list_address,))
    if not found:  # deleted since RCPT: the client must hear it was not taken
        raise AccountError(f"list {list_address} no longer exists")
    tx.run(_ADD_INBOX_ITEM, (found[0][0], role, recipient, sender, now, note, body))
