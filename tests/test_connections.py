"""jitaku.connections: counting per address and in all, and refusals logged once a minute."""

from __future__ import annotations

import logging

import pytest

from jitaku.connections import ConnectionLimit


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


def test_refusals_are_logged_once_a_minute_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    limit = ConnectionLimit("imap", per_ip=1, total=100)
    limit.admit("192.0.2.1")
    with caplog.at_level(logging.INFO, logger="jitaku"):
        for _ in range(500):
            assert limit.admit("192.0.2.1") == "address"
    lines = [record.getMessage() for record in caplog.records if "connection_refused" in record.getMessage()]
    assert len(lines) == 1 and "listener=imap" in lines[0] and "client=192.0.2.1" in lines[0]
