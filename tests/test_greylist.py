"""Greylisting (issue 23): a first try waits `delay`, a retry after it passes and keeps passing, networks as
postgrey counts them, big senders whose SPF passed and the configured exemptions never wait, old triplets go."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from jitaku.config import GreylistSettings
from jitaku.mail.filters import greylist
from jitaku.store import Database
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

SETTINGS = GreylistSettings(enabled=True, delay=300, expiry=86400, exempt=("partner.example", "192.0.2.0/24"))


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database(database_url(tmp_path))


def tried(database: Database, client: str, at: float, sender: str = "a@remote.example") -> bool:
    with database.transaction() as connection:
        return greylist.passes(connection, SETTINGS, client, sender, "bob@example.test", at)


def test_a_first_try_waits_and_a_retry_after_the_delay_passes_from_then_on(database: Database) -> None:
    assert not tried(database, "198.51.100.7", 1000)
    assert not tried(database, "198.51.100.7", 1200)  # too soon: still waiting, the wait not restarted
    assert tried(database, "198.51.100.9", 1301)  # the same /24: a pool's other machine
    assert tried(database, "198.51.100.7", 5000)
    assert not tried(database, "203.0.113.7", 5000)  # another network is another triplet
    assert not tried(database, "198.51.100.7", 5000, sender="b@remote.example")


def test_a_triplet_not_seen_for_the_expiry_starts_over_and_is_forgotten(database: Database) -> None:
    assert not tried(database, "2001:db8:1:2::5", 0)
    assert tried(database, "2001:db8:1:2:ffff::1", 400)  # the same /64
    assert not tried(database, "2001:db8:1:2::5", 400 + 86400 + 1)
    with database.transaction() as connection:
        assert greylist.forget(connection, SETTINGS, 400 + 86400 * 3) == 1


def test_networks_are_counted_as_postgrey_counts_them() -> None:
    assert greylist.network("198.51.100.77") == "198.51.100.0/24"
    assert greylist.network("::ffff:198.51.100.77") == "198.51.100.0/24"
    assert greylist.network("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"


def test_big_senders_with_spf_and_listed_ones_are_exempt() -> None:
    assert greylist.exempt(SETTINGS, "203.0.113.5", "x@gmail.com", "bob@example.test", spf_passed=True)
    assert greylist.exempt(SETTINGS, "203.0.113.5", "x@mail.yahoo.co.jp", "bob@example.test", spf_passed=True)
    assert not greylist.exempt(SETTINGS, "203.0.113.5", "x@gmail.com", "bob@example.test", spf_passed=False)
    assert not greylist.exempt(SETTINGS, "203.0.113.5", "x@notgmail.com", "bob@example.test", spf_passed=True)
    assert greylist.exempt(SETTINGS, "203.0.113.5", "x@partner.example", "bob@example.test", spf_passed=True)
    assert greylist.exempt(SETTINGS, "192.0.2.44", "x@anyone.example", "bob@example.test", spf_passed=False)


def test_spf_is_asked_only_for_domains_it_could_exempt() -> None:
    assert greylist.vouched_by_spf(SETTINGS, "x@gmail.com")
    assert greylist.vouched_by_spf(SETTINGS, "x@mail.partner.example")
    assert not greylist.vouched_by_spf(SETTINGS, "x@remote.example")
    assert not greylist.vouched_by_spf(SETTINGS, "")  # the null sender has no domain to vouch for


def test_the_mx_s_greylisting_records_tries_asks_spf_where_it_counts_and_sweeps(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str, str, str]] = []

    def spf_passes(client: str, sender: str, helo: str) -> bool:
        asked.append((client, sender, helo))
        return True

    monkeypatch.setattr(greylist, "_spf_passes", spf_passes)
    with database.transaction() as connection:  # a triplet last seen long ago: the first try sweeps it
        greylist.passes(connection, SETTINGS, "203.0.113.1", "old@remote.example", "bob@example.test", 0)
    greylisting = greylist.Greylisting(SETTINGS, database)

    async def tries() -> list[bool]:
        return [
            await greylisting.refuses("198.51.100.7", "mx.remote.example", "a@remote.example", "bob@example.test"),
            await greylisting.refuses("198.51.100.7", "mx.remote.example", "a@remote.example", "bob@example.test"),
            await greylisting.refuses("198.51.100.7", "mx.remote.example", "", "bob@example.test"),  # a bounce
            await greylisting.refuses("198.51.100.7", "mail.gmail.com", "x@gmail.com", "bob@example.test"),
        ]

    assert asyncio.run(tries()) == [True, True, True, False]
    assert asked == [("198.51.100.7", "x@gmail.com", "mail.gmail.com")]  # nobody else's domain costs a lookup
    with database.transaction() as connection:
        rows = connection.exec_driver_sql("SELECT sender FROM greylist ORDER BY sender").all()
    assert [row[0] for row in rows] == ["", "a@remote.example"]


def test_a_store_that_fails_lets_the_mail_through_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        async def transact(self, job: object) -> bool:
            raise OSError("disk gone")

    greylisting = greylist.Greylisting(SETTINGS, Broken())  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="jitaku"):
        refused = asyncio.run(greylisting.refuses("198.51.100.7", "h", "a@remote.example", "bob@example.test"))
    assert not refused
    assert [r.getMessage() for r in caplog.records if "greylist_failed" in r.getMessage()], caplog.text
