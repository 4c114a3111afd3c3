"""Counts per minute (SMTP sessions, mail in and out): added across flushes and processes, summed by hour,
and kept in memory when a flush fails rather than lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jitaku.store import Database, Tx, tallies
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

HOUR = 1_800_000_000 // 3600 * 3600


def test_counts_add_up_by_minute_and_by_hour_and_old_ones_are_pruned(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        tallies.add(Tx.over(connection), {(HOUR, tallies.MAIL_IN): 2, (HOUR + 60, tallies.MAIL_IN): 1})
        tallies.add(
            Tx.over(connection), {(HOUR, tallies.MAIL_IN): 3, (HOUR + 3600, tallies.MAIL_IN): 4}
        )  # another flush
        tallies.add(Tx.over(connection), {(HOUR, tallies.MAIL_OUT): 0})  # nothing to add: no row
    assert database.read_now(lambda c: tallies.total(c, tallies.MAIL_IN, HOUR)) == 10
    assert database.read_now(lambda c: tallies.total(c, tallies.MAIL_IN, HOUR + 60)) == 5
    assert database.read_now(lambda c: tallies.per_hour(c, tallies.MAIL_IN, HOUR)) == {HOUR: 6, HOUR + 3600: 4}
    assert database.read_now(lambda c: tallies.per_hour(c, tallies.MAIL_OUT, HOUR)) == {}
    with database.transaction() as connection:
        tallies.prune(connection, before=HOUR + 3600)
    assert database.read_now(lambda c: tallies.per_hour(c, tallies.MAIL_IN, HOUR)) == {HOUR + 3600: 4}
    assert database.read_now(lambda c: tallies.total(c, tallies.MAIL_IN, HOUR)) == 4


def test_totals_since_the_start_only_grow_though_old_minutes_are_pruned(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        tallies.add(Tx.over(connection), {(HOUR, tallies.MAIL_IN): 2, (HOUR + 60, tallies.BOUNCED): 1})
        tallies.add(Tx.over(connection), {(HOUR + 3600, tallies.MAIL_IN): 4, (HOUR + 7200, tallies.DEFERRED): 3})
    assert database.read_now(tallies.totals) == {tallies.MAIL_IN: 6, tallies.BOUNCED: 1, tallies.DEFERRED: 3}
    for before in (HOUR + 3600, HOUR + 7200, HOUR + 7200):  # a prune, then another, then one with nothing to do
        with database.transaction() as connection:
            tallies.prune(connection, before=before)
        assert database.read_now(tallies.totals) == {tallies.MAIL_IN: 6, tallies.BOUNCED: 1, tallies.DEFERRED: 3}
    assert database.read_now(lambda c: tallies.per_hour(c, tallies.DEFERRED, HOUR)) == {HOUR + 7200: 3}
    assert database.read_now(lambda c: tallies.total(c, tallies.MAIL_IN, HOUR)) == 0


def test_a_failed_flush_keeps_its_counts_for_the_next(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    tally = tallies.Tally(database, every=60)

    async def flushes() -> None:
        tally.count(tallies.SMTP_SESSIONS)
        tally.count(tallies.SMTP_SESSIONS, 2)
        with database.transaction() as connection:  # break the table for one flush
            connection.exec_driver_sql("ALTER TABLE tallies RENAME TO tallies_away")
        await tally.flush()
        with database.transaction() as connection:
            connection.exec_driver_sql("ALTER TABLE tallies_away RENAME TO tallies")
        await tally.flush()

    asyncio.run(flushes())
    assert database.read_now(lambda c: tallies.total(c, tallies.SMTP_SESSIONS, 0)) == 3
    database.close()
