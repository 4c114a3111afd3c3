"""ratelimit.LoginLimiter on a real database: tries count from their start, per user and address and per
address, for a window; a success forgives only its own user's failures."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import func, select

from jitaku.config import LoginSettings
from jitaku.ratelimit import LoginLimiter, address_key
from jitaku.store import Database
from jitaku.store.schema import login_attempts


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def limiter(tmp_path: Path, clock: Clock, name: str = "j.db") -> tuple[Database, LoginLimiter]:
    database = Database(f"sqlite:///{tmp_path / name}")
    settings = LoginSettings(max_failures=5, max_failures_per_address=10, window=900)
    return database, LoginLimiter(database, settings, clock)


def test_parallel_tries_count_from_their_start(tmp_path: Path) -> None:
    database, limits = limiter(tmp_path, Clock())

    async def go() -> list[object]:
        return await asyncio.gather(*(limits.start("192.0.2.1", "alice@example.test") for _ in range(50)))

    started = asyncio.run(go())
    assert sum(attempt is not None for attempt in started) == 5  # no check has finished, yet the sixth waits
    assert asyncio.run(limits.allows("192.0.2.1", "Alice@Example.test ")) is False
    assert asyncio.run(limits.allows("192.0.2.1", "bob@example.test")) is True  # the household's other users
    assert asyncio.run(limits.allows("192.0.2.2", "alice@example.test")) is True  # and alice elsewhere
    database.close()


def test_an_address_is_bounded_across_users_and_a_success_forgives_only_its_user(tmp_path: Path) -> None:
    database, limits = limiter(tmp_path, Clock())

    async def go() -> None:
        for _ in range(4):
            attempt = await limits.start("192.0.2.1", "alice@example.test")
            assert attempt is not None
            limits.failed(attempt)
        for index in range(6):
            assert await limits.start("192.0.2.1", f"user{index}@example.test") is not None
        assert not await limits.allows("192.0.2.1", "bob@example.test")  # ten from this address
        assert await limits.start("192.0.2.1", "bob@example.test") is None

    asyncio.run(go())
    count = database.read_now(lambda c: c.execute(select(func.count()).select_from(login_attempts)).scalar_one())
    assert count == 10
    database.close()


def test_a_success_forgives_its_own_users_failures_only(tmp_path: Path) -> None:
    database, limits = limiter(tmp_path, Clock())

    async def go() -> None:
        for _ in range(4):
            attempt = await limits.start("192.0.2.1", "alice@example.test")
            assert attempt is not None
        other = await limits.start("192.0.2.1", "mallory@example.test")
        assert other is not None
        last = await limits.start("192.0.2.1", "alice@example.test")
        assert last is not None and last.last_for_login
        assert await limits.start("192.0.2.1", "alice@example.test") is None
        await limits.succeeded(last)
        for _ in range(5):
            assert await limits.start("192.0.2.1", "alice@example.test") is not None
        assert await limits.start("192.0.2.1", "mallory@example.test") is not None  # hers still counts: 2 of 5

    asyncio.run(go())
    database.close()


def test_failures_count_for_the_window_and_are_then_deleted(tmp_path: Path) -> None:
    clock = Clock()
    database, limits = limiter(tmp_path, clock)

    async def go() -> None:
        for _ in range(5):
            assert await limits.start("192.0.2.1", "alice@example.test") is not None
        clock.now += 899
        assert not await limits.allows("192.0.2.1", "alice@example.test")
        clock.now += 2
        assert await limits.allows("192.0.2.1", "alice@example.test")
        assert await limits.start("192.0.2.9", "bob@example.test") is not None

    asyncio.run(go())
    rows = database.read_now(lambda c: c.execute(select(login_attempts.c.client)).scalars().all())
    assert rows == ["192.0.2.9"]  # the window's attempts only
    database.close()


def test_the_limit_is_the_same_for_two_processes_and_after_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    first, one = limiter(tmp_path, clock)
    second, other = limiter(tmp_path, clock)

    async def go() -> None:
        for limits in (one, other, one, other, one):
            assert await limits.start("192.0.2.1", "alice@example.test") is not None
        assert await other.start("192.0.2.1", "alice@example.test") is None

    asyncio.run(go())
    first.close()
    second.close()
    again, limits = limiter(tmp_path, clock)
    assert asyncio.run(limits.allows("192.0.2.1", "alice@example.test")) is False
    again.close()


def test_an_ipv6_household_counts_as_its_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("?") == "?"
