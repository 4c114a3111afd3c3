"""Requests after the first on one connection (web/protocol.py on uvicorn's httptools parser, issue 21):
pipelined requests are each answered, in order; a next request's head is owed within `header_timeout` of the
previous response's end, however slowly its bytes come (slowloris on a kept-alive connection); and a body
that stalls is cut after `idle_timeout`. test_connection_limits.py holds the first request to the same."""

from __future__ import annotations

import socket
import time
from typing import Any

from tests.integration.harness import Jitaku
from tests.peers import wait_for_port

REQUEST = b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def answers(sock: socket.socket, count: int) -> list[bytes]:
    """COUNT whole responses' status lines (each body read by its Content-Length)."""
    buffer, found = b"", []
    while len(found) < count:
        while b"\r\n\r\n" not in buffer:
            buffer += sock.recv(65536)
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
        )
        while len(buffer) < length:
            buffer += sock.recv(65536)
        buffer = buffer[length:]
        found.append(head.split(b"\r\n")[0])
    return found


def closed_after(sock: socket.socket, trickle: bytes, limit: float) -> float | None:
    """Seconds until the server closes SOCK while TRICKLE goes out a byte every 0.2 s; None if not in LIMIT."""
    started = time.monotonic()
    sock.settimeout(0.2)
    for byte in (trickle * 1000)[: int(limit / 0.2)]:
        try:
            sock.sendall(bytes([byte]))
            if sock.recv(4096) == b"":
                return time.monotonic() - started
        except TimeoutError:
            continue
        except OSError:
            return time.monotonic() - started
    return None


def test_pipelined_requests_are_answered_and_a_kept_alive_connection_still_owes_its_next_head(
    jitaku_factory: Any,
) -> None:
    server: Jitaku = jitaku_factory()
    server.init("alice@example.test")
    server.settings["web"].update(header_timeout=1.0, idle_timeout=1.0)
    server.write_config()
    server.start()
    wait_for_port(server.web_port)
    with socket.create_connection(("127.0.0.1", server.web_port), timeout=10) as sock:
        sock.sendall(REQUEST * 3)
        assert answers(sock, 3) == [b"HTTP/1.1 200 OK"] * 3
        time.sleep(0.5)  # within header_timeout: still open for the next request
        sock.sendall(REQUEST)
        assert answers(sock, 1) == [b"HTTP/1.1 200 OK"]
        took = closed_after(sock, b"GET /api/health HTTP/1.1\r\nX-Slow: " + b"x" * 100, limit=6.0)
    assert took is not None and took < 3.0, took  # 1 s from the last response's end, not from the last byte

    with socket.create_connection(("127.0.0.1", server.web_port), timeout=10) as sock:
        sock.sendall(REQUEST)
        assert answers(sock, 1) == [b"HTTP/1.1 200 OK"]
        form = b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100"
        sock.sendall(b"POST /login HTTP/1.1\r\nHost: 127.0.0.1\r\n" + form + b"\r\n\r\naddress=")
        started = time.monotonic()
        sock.settimeout(5)
        assert sock.recv(4096) == b""  # the body stalled: cut, with no answer
    assert time.monotonic() - started < 3.0
