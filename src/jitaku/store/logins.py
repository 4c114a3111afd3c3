"""Login attempts: a row from the moment a password check starts, kept as a failure unless it succeeds.

Counting the rows since a moment gives both limits (one user from one address, and one address across
users) without a lock table; the limits themselves are ratelimit.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, delete, func, insert, select
from sqlalchemy.engine import Connection

from jitaku.store.schema import login_attempts


@dataclass(frozen=True)
class Counts:
    """Attempts since a moment: of one user from one address, and from that address in all."""

    login: int
    client: int


def counts(connection: Connection, client: str, login: str, since: float) -> Counts:
    mine = func.coalesce(func.sum(case((login_attempts.c.login == login, 1), else_=0)), 0)
    found = connection.execute(
        select(mine, func.count()).where(login_attempts.c.client == client, login_attempts.c.at >= since)
    ).one()
    return Counts(login=int(found[0]), client=int(found[1]))


def start(
    connection: Connection, client: str, login: str, now: float, since: float, per_login: int, per_client: int
) -> Counts | None:
    """Count one more attempt of LOGIN from CLIENT at NOW, unless the attempts since SINCE already reach
    PER_LOGIN (this user from this address) or PER_CLIENT (this address); the counts with it, or None then.

    Attempts from before SINCE count no more and are deleted here, so the table holds at most the window's
    attempts, and those are bounded by the limits (per address) and by how fast passwords can be checked.
    """
    connection.execute(delete(login_attempts).where(login_attempts.c.at < since))
    before = counts(connection, client, login, since)
    if before.login >= per_login or before.client >= per_client:
        return None
    connection.execute(insert(login_attempts).values(client=client, login=login, at=now))
    return Counts(login=before.login + 1, client=before.client + 1)


def succeeded(connection: Connection, client: str, login: str) -> None:
    """The right password: this user's failures from this address are forgiven (and only theirs)."""
    connection.execute(delete(login_attempts).where(login_attempts.c.client == client, login_attempts.c.login == login))
