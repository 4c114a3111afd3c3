"""jitaku.failures: what real peers do wrong (a closed port, a silent server, a self-signed certificate, a DNS
server that never answers or fails), said in words rather than as Python's exceptions."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import dns.asyncresolver
import dns.exception
import pytest

from jitaku import failures, tls
from tests.peers import Zone, free_port


def test_a_closed_port_is_a_refused_connection() -> None:
    port = free_port()  # nothing listens there

    async def connect() -> BaseException:
        with socket.socket() as sock:
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            except OSError as error:
                return error
        raise AssertionError("connected")

    error = asyncio.run(connect())
    said = failures.network(error, failures.peer("mx.example.net", "127.0.0.1", port), 30)
    assert said == f"connection refused by mx.example.net (127.0.0.1, port {port})"
    assert "ConnectionRefusedError" in failures.detail(error)  # the log keeps what Python said


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, int]]:
    """A TCP port that accepts connections; the test says what happens to them."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server, server.getsockname()[1]


def smtp_error(port: int, **options: Any) -> BaseException:
    async def connect() -> BaseException:
        client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, **options)
        try:
            await client.connect()
        except aiosmtplib.SMTPException as error:
            return error
        finally:
            client.close()
        raise AssertionError("connected")

    return asyncio.run(connect())


def test_a_server_that_never_greets_gives_no_answer_within_the_timeout(listener: tuple[socket.socket, int]) -> None:
    _server, port = listener  # the kernel accepts; nobody says 220
    error = smtp_error(port, timeout=0.3)
    assert failures.network(error, "mx.example.net", 0.3) == "no answer from mx.example.net within 0.3 s"


def test_a_server_that_hangs_up_closed_the_connection(listener: tuple[socket.socket, int]) -> None:
    server, port = listener

    def hang_up() -> None:
        connection, _ = server.accept()
        connection.close()

    threading.Thread(target=hang_up, daemon=True).start()
    error = smtp_error(port, timeout=5)
    assert failures.network(error, "mx.example.net", 5) == "mx.example.net closed the connection"


def test_a_self_signed_certificate_is_named_as_such(listener: tuple[socket.socket, int], tmp_path: Path) -> None:
    server, port = listener
    tls.ensure_self_signed(tmp_path, "mx.example.net")  # what jitaku init makes: the same kind of certificate
    context = tls.server_context(tmp_path)

    def serve_tls() -> None:
        connection, _ = server.accept()
        try:
            context.wrap_socket(connection, server_side=True)
        except (ssl.SSLError, OSError):
            pass  # the client gave up on our certificate
        connection.close()

    threading.Thread(target=serve_tls, daemon=True).start()
    error = smtp_error(port, timeout=5, use_tls=True, validate_certs=True)
    said = failures.network(error, "mx.example.net", 5)
    assert said == "the TLS certificate of mx.example.net was not accepted: self-signed certificate", said


def lookup_error(port: int, name: str, rdtype: str = "MX") -> dns.exception.DNSException:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = port
    resolver.lifetime = 1.0

    async def ask() -> dns.exception.DNSException:
        try:
            await resolver.resolve(name, rdtype)
        except dns.exception.DNSException as error:
            return error
        raise AssertionError("answered")

    return asyncio.run(ask())


def test_dns_failures_in_words(dns_zone: tuple[Zone, int], monkeypatch: pytest.MonkeyPatch) -> None:
    zone, port = dns_zone
    zone.add("example.net. 300 IN A 192.0.2.1")
    nxdomain = lookup_error(port, "nowhere.example")
    assert failures.lookup(nxdomain, "nowhere.example", "MX") == "nowhere.example does not exist in DNS"
    assert (
        failures.lookup(lookup_error(port, "example.net"), "example.net", "MX")
        == "DNS has no MX record for example.net"
    )
    answer = zone.resolve

    def servfail(request: Any, handler: Any) -> Any:
        reply = answer(request, handler)
        reply.header.rcode = 2
        return reply

    monkeypatch.setattr(zone, "resolve", servfail)
    failing = lookup_error(port, "example.net")
    assert failures.lookup(failing, "example.net", "MX") == "the DNS servers failed to answer for example.net MX"


def test_a_dns_server_that_never_answers_did_not_answer_in_time() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # takes every question, answers none
        silent.bind(("127.0.0.1", 0))
        error = lookup_error(silent.getsockname()[1], "example.net")
    assert type(error).__name__ == "LifetimeTimeout"
    assert failures.lookup(error, "example.net", "MX") == "DNS did not answer in time for example.net MX"
    assert "LifetimeTimeout" in failures.detail(error)


def test_a_peer_is_named_with_its_address_and_port_when_they_add_something() -> None:
    assert failures.peer("mx.example.net", "203.0.113.25", 25) == "mx.example.net (203.0.113.25, port 25)"
    assert failures.peer("203.0.113.25", "203.0.113.25", 587) == "203.0.113.25 (port 587)"
    assert failures.peer("mx.example.net") == "mx.example.net"
