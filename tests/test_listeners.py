"""Binding the listeners on a kernel without IPv6 (booted with ipv6.disable=1, which no network namespace can
give a test): the "[::]" wildcard is left out with a log line, anything else that cannot be bound stops the
start, and what is left out is not in ports.json, so `jitaku check services` does not look for it."""

from __future__ import annotations

import errno
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from jitaku import app, ports
from jitaku.config import Config, Listen, parse
from jitaku.errors import ServeError

CONFIG = """domains = ["example.test"]
[smtp]
listen = ["127.0.0.1:0", "[::]:0"]
[submission]
listen = []
[imap]
listen = ["127.0.0.1:0"]
[pop3]
listen = []
[web]
listen = ["[::]:0", "127.0.0.1:0"]
"""


class WithoutIPv6(socket.socket):
    """A socket as a kernel without IPv6 makes them: no AF_INET6 at all (EAFNOSUPPORT)."""

    def __init__(self, family: Any = socket.AF_INET, *args: Any, **kwargs: Any) -> None:
        if family == socket.AF_INET6:
            raise OSError(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        super().__init__(family, *args, **kwargs)


class CannotBindIPv6(socket.socket):
    """An AF_INET6 socket that cannot bind any address (EADDRNOTAVAIL), as some containers' kernels answer."""

    def bind(self, address: Any) -> None:
        if self.family == socket.AF_INET6:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        super().bind(address)


@pytest.mark.parametrize("kernel", [WithoutIPv6, CannotBindIPv6])
def test_without_ipv6_the_ipv6_wildcard_is_left_out_and_said_in_the_log(
    kernel: type[socket.socket], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    config = Config(parse(CONFIG, tmp_path / "jitaku.toml"), tmp_path)
    monkeypatch.setattr(socket, "socket", kernel)
    with caplog.at_level(logging.INFO, logger="jitaku"), app.listening(config) as sockets:
        listening = app._listening(sockets)
        assert [address.host for address in listening["mx"]] == ["127.0.0.1"]
        assert [address.host for address in listening["web"]] == ["127.0.0.1"]
        skipped = [record.getMessage() for record in caplog.records if "listener_skipped" in record.getMessage()]
        assert skipped == [
            'event=listener_skipped listener=mx address=[::]:0 reason="no IPv6 on this host"',
            'event=listener_skipped listener=web address=[::]:0 reason="no IPv6 on this host"',
        ]
        ports.record(tmp_path, listening)
        running = ports.running(config).settings  # what `jitaku check services` looks at
        assert running.smtp.listen == listening["mx"] and running.web.listen == listening["web"]
        assert running.imap.listen == listening["imap"]


def test_an_ipv6_address_that_cannot_be_bound_still_stops_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the wildcard is left out: an address written in the config that cannot be bound is a mistake."""
    monkeypatch.setattr(socket, "socket", CannotBindIPv6)
    with pytest.raises(ServeError, match=r"cannot listen on \[2001:db8::1\]:25 for mx: Cannot assign requested"):
        app._socket(Listen("2001:db8::1", 25), "mx")


def test_ipv4_and_ipv6_wildcards_bind_the_same_port_side_by_side(tmp_path: Path) -> None:
    """IPV6_V6ONLY: without it "[::]:P" takes IPv4 too (net.ipv6.bindv6only = 0, Linux's default), and
    "0.0.0.0:P" beside it fails with EADDRINUSE."""
    first = app._socket(Listen("0.0.0.0", 0), "mx")
    assert first is not None
    port = first.getsockname()[1]
    second = app._socket(Listen("::", port), "mx")
    assert second is not None
    try:
        assert second.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        first.close()
        second.close()
