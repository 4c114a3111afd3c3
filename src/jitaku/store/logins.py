"""Login attempts: a row from the moment a password check starts, pending until its outcome; a failure stays,
a success deletes its user's failures from its address.

Counting the rows since a moment gives both limits (one user from one address, and one address across
users) without a lock table; the limits themselves are ratelimit.py's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# A check takes well under a second; a row pending longer belongs to a process that died during its check
# (kill -9, a power cut) and counts as the failure it may have been.
STALE = 60.0


@dataclass(frozen=True)
class Counts:
    """Attempts since a moment, of one user from one address and from that address in all: those that
    failed (or whose check died), and those being checked now."""

    login: int
    client: int
    pending_login: int = 0
    pending_client: int = 0


class Wait(Exception):
    """No try now, and no refusal either: only tries still being checked fill the limit, and their outcome
    decides (a mail client's parallel connections, each with the right password)."""


_CHECKING = "(pending AND at >= ?)"  # with NOW - STALE
_COUNTS = (
    "SELECT"
    f" coalesce(sum(CASE WHEN login = ? AND NOT {_CHECKING} THEN 1 ELSE 0 END), 0),"
    f" coalesce(sum(CASE WHEN NOT {_CHECKING} THEN 1 ELSE 0 END), 0),"
    f" coalesce(sum(CASE WHEN login = ? AND {_CHECKING} THEN 1 ELSE 0 END), 0),"
    f" coalesce(sum(CASE WHEN {_CHECKING} THEN 1 ELSE 0 END), 0)"
    " FROM login_attempts WHERE client = ? AND at >= ?"
)


def counts(source: Connection | Statements, client: str, login: str, since: float, now: float) -> Counts:
    """The attempts since SINCE, those still being checked at NOW apart."""
    stale = now - STALE
    found = statements_of(source).run(_COUNTS, (login, stale, stale, login, stale, stale, client, since))
    return Counts(*(int(value) for value in found[0]))


def start(
    target: Connection | Tx, client: str, login: str, now: float, since: float, per_login: int, per_client: int
) -> int | None:
    """Count one more attempt of LOGIN from CLIENT at NOW, pending until failed() or succeeded(): its row's
    id. None when the failures since SINCE reach PER_LOGIN (this user from this address)
    or PER_CLIENT (this address); Wait when only the pending ones would.

    Attempts from before SINCE count no more and are deleted here, so the table holds at most the window's
    attempts, and those are bounded by the limits (per address) and by how fast passwords can be checked.
    """
    tx = tx_of(target)
    tx.run("DELETE FROM login_attempts WHERE at < ?", (since,))
    before = counts(tx, client, login, since, now)
    if before.login >= per_login or before.client >= per_client:
        return None
    if before.login + before.pending_login >= per_login or before.client + before.pending_client >= per_client:
        raise Wait
    inserted = "INSERT INTO login_attempts (client, login, at, pending) VALUES (?, ?, ?, ?) RETURNING id"
    return int(tx.run(inserted, (client, login, now, True))[0][0])


def failed(target: Connection | Tx, attempt: int, client: str, login: str, since: float, now: float) -> Counts:
    """The password was wrong: the attempt counts as a failure for the rest of the window. The counts then."""
    tx = tx_of(target)
    tx.run("UPDATE login_attempts SET pending = ? WHERE id = ?", (False, attempt))
    return counts(tx, client, login, since, now)


def succeeded(target: Connection | Tx, attempt: int, client: str, login: str, now: float) -> None:
    """The right password: this user's failures from this address are forgiven (and only theirs); the tries
    of theirs still being checked go on counting until their own outcome."""
    tx_of(target).run(
        f"DELETE FROM login_attempts WHERE client = ? AND login = ? AND (id = ? OR NOT {_CHECKING})",
        (client, login, attempt, now - STALE),
    )
