"""Greylisting (issue 23): a first try waits `delay`, a retry after it passes and keeps passing, networks as
postgrey counts them, big senders whose SPF passed and the configured exemptions never wait, old triplets go."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitaku.config import GreylistSettings
from jitaku.mail.filters import greylist
from jitaku.store import Database

SETTINGS = GreylistSettings(enabled=True, delay=300, expiry=86400, exempt=("partner.example", "192.0.2.0/24"))


@pytest.fixture
def database(tmp_path: Path) -> Database:
    return Database(f"sqlite:///{tmp_path / 'j.db'}")


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
