"""ratelimit.LoginLimiter on a real database: tries count from their start, per user and address and per
address, for a window; a try that only tries being checked keep out waits for their outcome; a success
forgives only its own user's failures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from jitaku.config import LoginSettings
from jitaku.ratelimit import Attempt, FailureLimiter, LoginLimiter, address_key
from jitaku.store import Database, logins
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

WAIT = 5.0  # seconds a try waits for those being checked, here


async def fail(limits: LoginLimiter, client: str, user: str) -> None:
    """One try of USER from CLIENT, checked and wrong."""
    attempt = await limits.start(client, user)
    assert attempt is not None
    await limits.failed(attempt)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def attempts(database: Database, client: str, login: str, now: float) -> logins.Counts:
    """Every try the store holds of LOGIN from CLIENT and from CLIENT in all, since the epoch: a window's end
    deletes them, it does not only stop counting them."""
    return database.read_now(lambda c: logins.counts(c, client, login, 0, now))


def limiter(url: str, clock: Clock) -> tuple[Database, LoginLimiter]:
    database = Database(url)
    settings = LoginSettings(max_failures=5, max_failures_per_address=10, window=900)
    return database, LoginLimiter(database, settings, clock, max_wait=WAIT)


def test_parallel_wrong_tries_get_five_checks_however_many_start_at_once(tmp_path: Path) -> None:
    database, limits = limiter(database_url(tmp_path), Clock())

    async def go() -> list[Attempt | None]:
        tries = [asyncio.ensure_future(limits.start("192.0.2.1", "alice@example.test")) for _ in range(50)]
        await asyncio.sleep(0.5)
        checked = [attempt.result() for attempt in tries if attempt.done()]
        assert len(checked) == 5 and all(checked)  # the sixth waits: five checks fill the limit
        for attempt in checked:
            assert attempt is not None
            await limits.failed(attempt)
        return list(await asyncio.gather(*tries))

    started = asyncio.run(go())
    assert sum(attempt is not None for attempt in started) == 5  # the others were refused once those failed
    assert asyncio.run(limits.allows("192.0.2.1", "Alice@Example.test ")) is False
    assert asyncio.run(limits.allows("192.0.2.1", "bob@example.test")) is True  # the household's other users
    assert asyncio.run(limits.allows("192.0.2.2", "alice@example.test")) is True  # and alice elsewhere
    database.close()


def test_parallel_right_tries_all_get_in(tmp_path: Path) -> None:
    clock = Clock()
    database, limits = limiter(database_url(tmp_path), clock)

    async def one() -> bool:  # a mail client's connection: the right password, checked in a moment
        attempt = await limits.start("192.0.2.1", "alice@example.test")
        if attempt is None:
            return False
        await asyncio.sleep(0.2)
        await limits.succeeded(attempt)
        return True

    async def go() -> list[bool]:
        return list(await asyncio.gather(*(one() for _ in range(12))))

    assert asyncio.run(go()) == [True] * 12
    assert attempts(database, "192.0.2.1", "alice@example.test", clock.now) == logins.Counts(0, 0)
    database.close()


def test_a_try_waits_no_longer_than_its_bound_for_checks_that_never_end(tmp_path: Path) -> None:
    database, limits = limiter(database_url(tmp_path), Clock())

    async def go() -> None:
        for _ in range(5):
            assert await limits.start("192.0.2.1", "alice@example.test") is not None
        started = time.monotonic()
        assert await limits.start("192.0.2.1", "alice@example.test") is None
        assert WAIT <= time.monotonic() - started < WAIT + 5

    asyncio.run(go())
    database.close()


def test_a_check_that_died_counts_as_a_failure_after_a_minute(tmp_path: Path) -> None:
    clock = Clock()
    database, limits = limiter(database_url(tmp_path), clock)

    async def go() -> None:
        for _ in range(5):  # the process was killed during these checks
            assert await limits.start("192.0.2.1", "alice@example.test") is not None
        clock.now += 61
        assert not await limits.allows("192.0.2.1", "alice@example.test")
        started = time.monotonic()
        assert await limits.start("192.0.2.1", "alice@example.test") is None
        assert time.monotonic() - started < WAIT  # refused, not waiting: those checks are over

    asyncio.run(go())
    database.close()


def test_an_address_is_bounded_across_users_and_a_success_forgives_only_its_user(tmp_path: Path) -> None:
    clock = Clock()
    database, limits = limiter(database_url(tmp_path), clock)

    async def go() -> None:
        for _ in range(4):
            await fail(limits, "192.0.2.1", "alice@example.test")
        for index in range(6):
            await fail(limits, "192.0.2.1", f"user{index}@example.test")
        assert not await limits.allows("192.0.2.1", "bob@example.test")  # ten from this address
        assert await limits.start("192.0.2.1", "bob@example.test") is None

    asyncio.run(go())
    assert attempts(database, "192.0.2.1", "alice@example.test", clock.now) == logins.Counts(login=4, client=10)
    database.close()


def test_a_success_forgives_its_own_users_failures_only(tmp_path: Path) -> None:
    database, limits = limiter(database_url(tmp_path), Clock())

    async def go() -> None:
        for _ in range(4):
            await fail(limits, "192.0.2.1", "alice@example.test")
        await fail(limits, "192.0.2.1", "mallory@example.test")
        last = await limits.start("192.0.2.1", "alice@example.test")
        assert last is not None
        await limits.succeeded(last)
        for _ in range(5):  # alice's four before are forgiven
            await fail(limits, "192.0.2.1", "alice@example.test")
        assert await limits.start("192.0.2.1", "alice@example.test") is None
        for _ in range(4):  # mallory's one before still counts
            await fail(limits, "192.0.2.1", "mallory@example.test")
        assert not await limits.allows("192.0.2.1", "mallory@example.test")

    asyncio.run(go())
    database.close()


def test_failures_count_for_the_window_and_are_then_deleted(tmp_path: Path) -> None:
    clock = Clock()
    database, limits = limiter(database_url(tmp_path), clock)

    async def go() -> None:
        for _ in range(5):
            await fail(limits, "192.0.2.1", "alice@example.test")
        clock.now += 899
        assert not await limits.allows("192.0.2.1", "alice@example.test")
        clock.now += 2
        assert await limits.allows("192.0.2.1", "alice@example.test")
        assert await limits.start("192.0.2.9", "bob@example.test") is not None

    asyncio.run(go())
    assert attempts(database, "192.0.2.1", "alice@example.test", clock.now) == logins.Counts(0, 0)  # deleted
    assert attempts(database, "192.0.2.9", "bob@example.test", clock.now) == logins.Counts(0, 0, 1, 1)  # the window's
    database.close()


def test_the_limit_is_the_same_for_two_processes_and_after_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    url = database_url(tmp_path)
    first, one = limiter(url, clock)
    second, other = limiter(url, clock)

    async def go() -> None:
        for limits in (one, other, one, other, one):
            await fail(limits, "192.0.2.1", "alice@example.test")
        assert await other.start("192.0.2.1", "alice@example.test") is None

    asyncio.run(go())
    first.close()
    second.close()
    again, limits = limiter(url, clock)
    assert asyncio.run(limits.allows("192.0.2.1", "alice@example.test")) is False
    again.close()


def test_an_ipv6_household_counts_as_its_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("?") == "?"


def test_the_buddy_token_limit_counts_an_ipv6_client_as_its_64_too() -> None:
    limiter = FailureLimiter(max_failures=3)
    for host in range(1, 4):
        limiter.failed(f"2001:db8:1:2::{host}")
    assert limiter.blocked("2001:db8:1:2::99") and not limiter.blocked("2001:db8:1:3::1")
