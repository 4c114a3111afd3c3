"""jitaku.connections: counting per address and in all, refusals logged once a minute, and sessions ended at
shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from jitaku.connections import ConnectionLimit, OpenSessions


def test_limits_per_address_and_in_all() -> None:
    limit = ConnectionLimit("mx", per_ip=2, total=3)
    assert limit.admit("192.0.2.1") is None
    assert limit.admit("192.0.2.1") is None
    assert limit.admit("192.0.2.1") == "address"
    assert limit.admit("192.0.2.2") is None
    assert limit.admit("192.0.2.3") == "total"
    limit.release("192.0.2.1")
    assert limit.admit("192.0.2.3") is None
    assert limit.admit("192.0.2.1") == "total"


def test_an_ipv6_client_counts_as_its_64_since_each_connection_could_come_from_another_address() -> None:
    limit = ConnectionLimit("mx", per_ip=2, total=100)
    assert limit.admit("2001:db8:1:2::1") is None
    assert limit.admit("2001:db8:1:2:ffff::2") is None
    assert limit.admit("2001:db8:1:2::3") == "address"
    assert limit.admit("2001:db8:1:3::1") is None  # another household
    limit.release("2001:db8:1:2:ffff::2")
    assert limit.admit("2001:db8:1:2::4") is None


def test_refusals_are_logged_once_a_minute_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    limit = ConnectionLimit("imap", per_ip=1, total=100)
    limit.admit("192.0.2.1")
    with caplog.at_level(logging.INFO, logger="jitaku"):
        for _ in range(500):
            assert limit.admit("192.0.2.1") == "address"
    lines = [record.getMessage() for record in caplog.records if "connection_refused" in record.getMessage()]
    assert len(lines) == 1 and "listener=imap" in lines[0] and "client=192.0.2.1" in lines[0]


def test_the_end_reaches_every_session_once_and_those_that_open_meanwhile() -> None:
    """A connection accepted just before the listeners closed may open its session while the others end."""
    ended: list[str] = []
    sessions = OpenSessions()

    def ending(name: str, opens: str | None = None) -> Callable[[], Awaitable[None]]:
        async def end() -> None:
            await asyncio.sleep(0)
            if opens is not None:
                sessions.add(opens, ending(opens))
            ended.append(name)

        return end

    sessions.add("idle", ending("idle"))
    sessions.add("gone", ending("gone"))
    sessions.discard("gone")  # closed by its client before the stop
    sessions.add("busy", ending("busy", opens="late"))
    assert asyncio.run(sessions.end()) == 3
    assert sorted(ended) == ["busy", "idle", "late"]
