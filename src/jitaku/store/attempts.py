"""The rows each outbound delivery attempt writes, as prepared statements on the DB-API (mail/queue.py).

A list post is tens of queue entries at once, each recorded as its session ends: recipients forgotten or
kept with their error, the entry gone or its next attempt set, and each delivered member's bounce score
halved. Through SQLAlchemy Core that was a fifth of the daemon's time in a fan-out (bench/list_fanout); here
each is a statement prepared once, one row at a time (`executemany`), in the writer's group commit.
"""

from __future__ import annotations

from collections.abc import Iterable

from jitaku.store.transaction import Tx

_FORGET = "DELETE FROM queue_recipients WHERE queue_id = ? AND recipient = ?"
_DEFER = "UPDATE queue_recipients SET last_error = ? WHERE queue_id = ? AND recipient = ?"
_ANY_LEFT = "SELECT 1 FROM queue_recipients WHERE queue_id = ? LIMIT 1"
_LEAVE = "DELETE FROM queue WHERE id = ?"
_AGAIN = "UPDATE queue SET attempts = attempts + 1, next_attempt = ?, last_error = ? WHERE id = ?"
_HALVE_MEMBER = (
    "UPDATE list_members SET bounce_score = CASE WHEN bounce_score / 2 < ? THEN 0.0 ELSE bounce_score / 2 END"
    " WHERE list_id = (SELECT id FROM lists WHERE address = ?) AND address = ? AND bounce_score > 0"
)
_HALVE_DOMAIN = (
    "UPDATE list_refusals SET score = CASE WHEN score / 2 < ? THEN 0.0 ELSE score / 2 END"
    " WHERE list_id = (SELECT id FROM lists WHERE address = ?) AND domain = ? AND score > 0"
)


def record(tx: Tx, queue_id: str, done: Iterable[str], deferred: dict[str, str], next_attempt: float) -> bool:
    """Forget recipients that are DONE (delivered or bounced); keep DEFERRED ones with their error.

    Returns True when nothing remains and the message has left the queue.
    """
    tx.run_many(_FORGET, [(queue_id, recipient) for recipient in done])
    tx.run_many(_DEFER, [(error, queue_id, recipient) for recipient, error in deferred.items()])
    if not tx.run(_ANY_LEFT, (queue_id,)):
        tx.run(_LEAVE, (queue_id,))
        return True
    tx.run(_AGAIN, (next_attempt, next(iter(deferred.values()), None), queue_id))
    return False


def halve_bounces(tx: Tx, list_address: str, addresses: list[str], forgotten: float) -> None:
    """Deliveries to ADDRESSES went through: their scores halve, and so do their domains' refusals; a score
    that falls below FORGOTTEN is 0."""
    list_address = list_address.lower()
    members = sorted({address.lower() for address in addresses})
    tx.run_many(_HALVE_MEMBER, [(forgotten, list_address, address) for address in members])
    domains = sorted({address.rpartition("@")[2] for address in members})
    tx.run_many(_HALVE_DOMAIN, [(forgotten, list_address, domain) for domain in domains])
