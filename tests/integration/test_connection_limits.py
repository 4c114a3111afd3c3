"""Descriptors and connections (issue 15, point 8): every listener bounds the connections one address and
everyone together hold, answering the rest in its protocol's words; the web closes requests that never
finish; the daemon raises its descriptor limit and logs running out of descriptors once, not per accept."""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
from collections.abc import Iterator
from typing import Any

from tests.integration.harness import Jitaku
from tests.integration.pressure import still_serves
from tests.peers import wait_for_port

LISTENERS = ("smtp", "submission", "imap", "pop3", "web")


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def first_line(sock: socket.socket, request: bytes = b"") -> bytes:
    """The server's first line (its greeting, or its answer to REQUEST); b"" when it closed without one."""
    if request:
        sock.sendall(request)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while b"\n" not in data:
            chunk = sock.recv(512)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n")[0]


def greeting(sock: socket.socket, listener: str) -> bytes:
    # the web says nothing first: ask it something
    return first_line(sock, b"GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n" if listener == "web" else b"")


def port_of(server: Jitaku, listener: str) -> int:
    return int(getattr(server, f"{listener}_port"))


def limited_server(jitaku_factory: Any, **limits: int) -> Jitaku:
    server: Jitaku = jitaku_factory()
    server.init("alice@example.test")
    for listener in LISTENERS:
        server.settings[listener].update(limits)
    server.write_config()
    server.start()
    for listener in LISTENERS:
        wait_for_port(port_of(server, listener))
    return server


@contextlib.contextmanager
def soft_open_files_limit(limit: int) -> Iterator[None]:
    """Processes started inside the block inherit a soft RLIMIT_NOFILE of LIMIT, as under many init systems."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(limit, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_files_limits(pid: int) -> tuple[int, int]:
    with open(f"/proc/{pid}/limits") as limits:
        for line in limits:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return int(soft), int(hard)
    raise AssertionError("no Max open files in /proc/PID/limits")


REFUSALS = {
    "smtp": b"421 4.7.0 ",
    "submission": b"421 4.7.0 ",
    "imap": b"* BYE [UNAVAILABLE] ",
    "pop3": b"-ERR [SYS/TEMP] ",
    "web": b"HTTP/1.1 503 ",
}


def admitted(answer: bytes, listener: str) -> bool:
    return answer[:1] in (b"2", b"*", b"+", b"H") and not answer.startswith(REFUSALS[listener])


def admitted_connections(port: int, listener: str, count: int, source: str) -> list[socket.socket]:
    """COUNT connections from SOURCE that the daemon admits. It counts a close when its event loop gets to
    it, later on a loaded machine: until then earlier connections still count, and this tries again."""
    deadline = time.monotonic() + 15
    while True:
        held = [connect(port, source) for _ in range(count)]
        if listener == "web":
            return held  # a web client is answered only once it asks
        answers = [greeting(sock, listener) for sock in held]
        if all(admitted(answer, listener) for answer in answers):
            return held
        for sock in held:
            sock.close()
        assert time.monotonic() < deadline, answers
        time.sleep(0.5)


def test_every_listener_bounds_connections_per_address_and_in_all(jitaku_factory: Any) -> None:
    server = limited_server(jitaku_factory, max_connections_per_ip=3, max_connections=5)
    for listener in LISTENERS:
        port = port_of(server, listener)
        held = admitted_connections(port, listener, 3, "127.0.0.1")
        over = connect(port)
        assert greeting(over, listener).startswith(REFUSALS[listener]), listener
        held += admitted_connections(port, listener, 2, "127.0.0.2")  # another address, up to the total of 5
        beyond = connect(port, "127.0.0.3")
        assert greeting(beyond, listener).startswith(REFUSALS[listener]), listener
        for sock in [*held, over, beyond]:
            sock.close()
        deadline = time.monotonic() + 15
        while True:  # closed connections no longer count (once the daemon has seen them closed)
            with connect(port, "127.0.0.3") as again:
                answer = greeting(again, listener)
            if admitted(answer, listener):
                break
            assert time.monotonic() < deadline, (listener, answer)
            time.sleep(0.5)
    assert "event=connection_refused" in server.log()


def test_idle_sockets_past_the_common_soft_limit_leave_every_listener_up(jitaku_factory: Any) -> None:
    # At a soft limit of 1,024, 1,100 idle sockets took every listener down.
    server: Jitaku = jitaku_factory()
    server.init("alice@example.test")
    with soft_open_files_limit(1024):
        server.start()
    assert server.process is not None
    soft, hard = open_files_limits(server.process.pid)
    assert soft == hard, "the daemon keeps a soft descriptor limit below its hard one"
    wait_for_port(server.imap_port)
    idle: list[socket.socket] = []
    try:
        for address in range(2, 2 + 22):  # 22 addresses x 50 (the default per address)
            for _ in range(50):
                idle.append(connect(server.smtp_port, f"127.0.0.{address}"))
        answers = [first_line(sock)[:3] for sock in idle]
        # 1,000 in all (wait_for_port's probes may not have been seen closed yet), the rest refused
        assert 990 <= answers.count(b"220") <= 1000 and answers.count(b"421") == 1100 - answers.count(b"220")
        for listener in ("submission", "imap", "pop3"):
            with connect(port_of(server, listener)) as sock:
                assert greeting(sock, listener)[:1] in (b"2", b"*", b"+"), listener
        with connect(server.web_port) as sock:
            answer = greeting(sock, "web")
        assert answer.startswith(b"HTTP/1.1 ") and b" 503 " not in answer, "the web stopped answering"
    finally:
        for sock in idle:
            sock.close()
    still_serves(server)
    assert "out of system resource" not in server.log()


def test_running_out_of_descriptors_is_logged_once_not_per_accept(jitaku_factory: Any) -> None:
    server: Jitaku = jitaku_factory()
    server.init("alice@example.test")
    server.start()
    assert server.process is not None
    for listener in LISTENERS:  # every service answers: the web imports its modules once its port is bound
        with connect(port_of(server, listener)) as sock:
            assert greeting(sock, listener), listener
    pid = server.process.pid
    in_use = len(os.listdir(f"/proc/{pid}/fd"))
    _, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (in_use + 20, hard))
    idle = []
    try:
        for address in (2, 3):
            for _ in range(40):
                idle.append(connect(server.smtp_port, f"127.0.0.{address}"))
        time.sleep(3.5)  # asyncio retries every listener's accept each second
        log = server.log()
        assert log.count("event=accept_resource_error") == 1, log[-3000:]
        assert "out of system resource" not in log
    finally:
        for sock in idle:
            sock.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (hard, hard))
    time.sleep(1.5)
    still_serves(server)


def test_the_web_closes_requests_that_never_finish(jitaku_factory: Any) -> None:
    server: Jitaku = jitaku_factory()
    server.init("alice@example.test")
    server.settings["web"].update(header_timeout=1.0, idle_timeout=1.0)
    server.write_config()
    server.start()
    wait_for_port(server.web_port)
    silent = connect(server.web_port)
    dribbling = connect(server.web_port)
    dribbling.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
    stalled = connect(server.web_port)
    stalled.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nuser=")
    started = time.monotonic()
    closed: dict[str, float] = {}
    socks = {"silent": silent, "dribbling": dribbling, "stalled": stalled}
    for sock in socks.values():
        sock.settimeout(0.2)
    while len(closed) < len(socks) and time.monotonic() - started < 10:
        for name, sock in socks.items():
            if name in closed:
                continue
            if name == "dribbling":
                with contextlib.suppress(OSError):
                    sock.sendall(b"X")  # a byte at a time: never idle, never done (slowloris)
            try:
                if sock.recv(4096) == b"":
                    closed[name] = time.monotonic() - started
            except TimeoutError:
                pass
            except OSError:
                closed[name] = time.monotonic() - started
    for sock in socks.values():
        sock.close()
    assert set(closed) == set(socks), f"still open after 10 s: {set(socks) - set(closed)}"
    assert max(closed.values()) < 6, closed
    with connect(server.web_port) as sock:
        answer = greeting(sock, "web")
    assert answer.startswith(b"HTTP/1.1 ") and b" 503 " not in answer, answer
