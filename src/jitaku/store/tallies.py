"""Counts per minute of what happens too often for a row each: SMTP sessions, mail in, and each outbound
delivery attempt by its outcome.

Each process counts in memory and adds its counts to the table every few seconds, so a session costs
no write of its own; a kill -9 loses at most that many seconds of counts, which only a graph would show.
Pruned minutes are added to one row of their own, so the totals since the start only grow (what a
Prometheus counter must do).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING

from jitaku import log
from jitaku.store.database import Database
from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

SMTP_SESSIONS = "smtp_sessions"  # connections to the MX listener
MAIL_IN = "mail_in"  # messages accepted on the MX listener
MAIL_OUT = "mail_out"  # recipients a remote server (or the relay) took
KINDS = (SMTP_SESSIONS, MAIL_IN, MAIL_OUT)
BOUNCED = "bounced"  # recipients refused for good, or given up on: the sender gets a bounce
DEFERRED = "deferred"  # delivery attempts to a recipient that will be tried again
GREYLISTED = "greylisted"  # recipients of the MX answered 451 by greylisting ([filters.greylist])
# What the spam and virus filters made of messages (issue 23), one count a message
FILTER_REJECTED = "filter_rejected"  # refused as spam or from a blocked sender (550)
FILTER_JUNKED = "filter_junked"  # delivered, to Junk for at least one recipient
FILTER_VIRUSES = "filter_viruses"  # refused for a virus (554)
FILTER_UNCHECKED = "filter_unchecked"  # delivered while an engine gave no verdict (on_error = "accept")
CARRIED = 0  # the minute that holds the counts of every pruned minute
_ADD = (
    "INSERT INTO tallies (minute, kind, count) VALUES (?, ?, ?)"
    " ON CONFLICT (minute, kind) DO UPDATE SET count = tallies.count + excluded.count"
)


def minute_of(at: float) -> int:
    return int(at) // 60 * 60


def add(tx: Tx, counts: Mapping[tuple[int, str], int]) -> None:
    """Add COUNTS, {(minute, kind): count}, to what the table holds: one prepared statement (the queue adds
    its counts as it records each delivery attempt)."""
    tx.run_many(_ADD, [(minute, kind, count) for (minute, kind), count in counts.items() if count])


def total(source: Connection | Statements, kind: str, since: float) -> int:
    rows = statements_of(source).run("SELECT sum(count) FROM tallies WHERE kind = ? AND minute >= ?", (kind, since))
    return int(rows[0][0] or 0)


def per_hour(source: Connection | Statements, kind: str, since: float) -> dict[float, int]:
    """KIND's counts by hour since SINCE: {the hour's start: count}."""
    rows = statements_of(source).run("SELECT minute, count FROM tallies WHERE kind = ? AND minute >= ?", (kind, since))
    hours: Counter[float] = Counter()
    for minute, count in rows:
        hours[float(minute // 3600 * 3600)] += count
    return dict(hours)


def totals(source: Connection | Statements) -> dict[str, int]:
    """Each kind's count since the database began."""
    rows = statements_of(source).run("SELECT kind, sum(count) FROM tallies GROUP BY kind")
    return {kind: int(count) for kind, count in rows}


def prune(target: Connection | Tx, before: float) -> None:
    """Forget the minutes before BEFORE, keeping their counts in the totals."""
    tx = tx_of(target)
    old = "minute > ? AND minute < ?"
    pruned = tx.run(f"SELECT kind, sum(count) FROM tallies WHERE {old} GROUP BY kind", (CARRIED, before))
    add(tx, {(CARRIED, kind): int(count) for kind, count in pruned})
    tx.run(f"DELETE FROM tallies WHERE {old}", (CARRIED, before))


class Tally:
    """This process's counts since the last flush."""

    def __init__(self, database: Database, every: float) -> None:
        self._database = database
        self._every = every
        self._counts: Counter[tuple[int, str]] = Counter()

    def count(self, kind: str, number: int = 1) -> None:
        self._counts[(minute_of(time.time()), kind)] += number

    async def flush(self) -> None:
        counts, self._counts = self._counts, Counter()
        if not counts:
            return
        try:
            await self._database.transact(lambda tx: add(tx, counts))
        except Exception as error:  # kept for the next flush; counting must never cost a session
            self._counts.update(counts)
            log.event("tally_failed", error=repr(error))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.flush()
