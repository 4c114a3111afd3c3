"""Login attempts: a row from the moment a password check starts, pending until its outcome; a failure stays,
a success deletes its user's failures from its address.

Counting the rows since a moment gives both limits (one user from one address, and one address across
users) without a lock table; the limits themselves are ratelimit.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, case, delete, func, insert, not_, or_, select, update
from sqlalchemy.engine import Connection

from jitaku.store.schema import login_attempts

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


def _checking(now: float) -> ColumnElement[bool]:
    return and_(login_attempts.c.pending, login_attempts.c.at >= now - STALE)


def counts(connection: Connection, client: str, login: str, since: float, now: float) -> Counts:
    """The attempts since SINCE, those still being checked at NOW apart."""
    checking = _checking(now)
    mine = login_attempts.c.login == login

    def total(condition: ColumnElement[bool]) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    found = connection.execute(
        select(
            total(and_(mine, not_(checking))), total(not_(checking)), total(and_(mine, checking)), total(checking)
        ).where(login_attempts.c.client == client, login_attempts.c.at >= since)
    ).one()
    return Counts(*(int(value) for value in found))


def start(
    connection: Connection, client: str, login: str, now: float, since: float, per_login: int, per_client: int
) -> int | None:
    """Count one more attempt of LOGIN from CLIENT at NOW, pending until failed() or succeeded(): its row's
    id. None when the failures since SINCE reach PER_LOGIN (this user from this address)
    or PER_CLIENT (this address); Wait when only the pending ones would.

    Attempts from before SINCE count no more and are deleted here, so the table holds at most the window's
    attempts, and those are bounded by the limits (per address) and by how fast passwords can be checked.
    """
    connection.execute(delete(login_attempts).where(login_attempts.c.at < since))
    before = counts(connection, client, login, since, now)
    if before.login >= per_login or before.client >= per_client:
        return None
    if before.login + before.pending_login >= per_login or before.client + before.pending_client >= per_client:
        raise Wait
    inserted = insert(login_attempts).values(client=client, login=login, at=now, pending=True)
    return int(connection.execute(inserted.returning(login_attempts.c.id)).scalar_one())


def failed(connection: Connection, attempt: int, client: str, login: str, since: float, now: float) -> Counts:
    """The password was wrong: the attempt counts as a failure for the rest of the window. The counts then."""
    connection.execute(update(login_attempts).where(login_attempts.c.id == attempt).values(pending=False))
    return counts(connection, client, login, since, now)


def succeeded(connection: Connection, attempt: int, client: str, login: str, now: float) -> None:
    """The right password: this user's failures from this address are forgiven (and only theirs); the tries
    of theirs still being checked go on counting until their own outcome."""
    connection.execute(
        delete(login_attempts).where(
            login_attempts.c.client == client,
            login_attempts.c.login == login,
            or_(login_attempts.c.id == attempt, not_(_checking(now))),
        )
    )
