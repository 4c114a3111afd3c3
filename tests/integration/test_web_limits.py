"""Request bodies on the web listener, sent as a stranger would (raw HTTP/1.1 over a socket): an upload
larger than `[web] max_body_size` is refused with 413 on every route, whether it announces its length or
comes chunked, and leaves neither memory nor temporary files behind (issue 15, point 10)."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.harness import Jitaku
from tests.integration.pressure import MB, Pressure, still_serves

BOUNDARY = "jitaku-upload"
BLOCK = b"x" * 65536
ROUTES = ("/login", "/lists/sota@example.test/subscribe", "/logout", "/", "/api/buddy/probe", "/nothing-here")


@pytest.fixture
def web(jitaku_factory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Jitaku:
    """A running jitaku with a list, whose temporary files (Python's tempfile) go to a directory of the test's."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    server: Jitaku = jitaku_factory()
    server.init("alice@example.test")
    server.start()
    server.cli("list", "create", "sota@example.test")
    return server


def _head(path: str, framing: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n{framing}\r\n\r\n"
    ).encode()


def _file_part(size: int) -> Iterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="address"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    for _ in range(size // len(BLOCK)):
        yield BLOCK
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def upload(port: int, path: str, size: int, chunked: bool) -> bytes:
    """POST one file of SIZE bytes; stop sending once the server answers. Returns its status line, or b""
    when it cut the connection before we could read one."""
    parts = list(_file_part(0))
    length = sum(len(part) for part in parts) + size
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        try:
            sock.sendall(_head(path, framing))
            for piece in _file_part(size):
                if select.select([sock], [], [], 0)[0]:
                    break
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            else:
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
            return sock.recv(4096).partition(b"\r\n")[0]
        except OSError:
            return b""


def held_temp_bytes(pid: int, directory: Path) -> int:
    """Bytes in the files under DIRECTORY that PID holds open (tempfile's are unlinked, so only its fds show
    them)."""
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd).startswith(str(directory)):
                held += fd.stat().st_size
        except OSError:
            continue
    return held


def test_a_body_announced_over_the_cap_is_refused_on_every_route_before_it_is_read(web: Jitaku) -> None:
    for path in ROUTES:
        with socket.create_connection(("127.0.0.1", web.web_port), timeout=10) as sock:
            sock.sendall(_head(path, "Content-Length: 2000000000"))  # and no body: we are not read
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413 "), (path, answer[:200])
        assert b"connection: close" in answer.lower()
    # within the cap, a multipart form still gets its answer: files are refused (none of our forms takes one)
    small = upload(web.web_port, "/login", 1000, chunked=False)
    assert small.startswith(b"HTTP/1.1 400 "), small


def test_uploads_hold_neither_memory_nor_temporary_files(web: Jitaku, tmp_path: Path) -> None:
    assert web.process is not None
    spool, pid = tmp_path / "spool", web.process.pid
    peak_held = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak_held
        while not done.wait(0.02):
            peak_held = max(peak_held, held_temp_bytes(pid, spool))

    answers: list[bytes] = []
    attacks = [
        ("/login", True),
        ("/lists/sota@example.test/subscribe", True),
        ("/login", False),
        ("/lists/sota@example.test/subscribe", False),
    ]
    watcher = threading.Thread(target=watch, daemon=True)
    started = time.monotonic()
    with Pressure(web) as pressure:
        watcher.start()
        senders = [
            threading.Thread(target=lambda p=path, c=chunked: answers.append(upload(web.web_port, p, 512 * MB, c)))
            for path, chunked in attacks
        ]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        done.set()
        watcher.join()
    print(pressure.report("web_uploads"), f"temp_held_peak={peak_held}B seconds={time.monotonic() - started:.1f}")
    assert peak_held == 0 and list(spool.iterdir()) == []
    # 413 past the cap, or 400 when the form parser saw the file first; b"": cut off while still sending
    assert all(answer[:12] in (b"HTTP/1.1 413", b"HTTP/1.1 400", b"") for answer in answers), answers
    assert pressure.rss_growth < 150 * MB, pressure.report("web_uploads")
    still_serves(web)
    assert httpx.get(f"http://127.0.0.1:{web.web_port}/login").status_code == 200


def test_a_body_a_little_over_the_cap_gets_its_413_not_a_reset(web: Jitaku) -> None:
    """A browser posting a form a little too large must hear why: closing with its body unread sends a TCP
    reset, which throws away the 413 the client has not read yet ("connection reset by peer")."""
    for size in (65_537, 300_000, 1_000_000):
        with socket.create_connection(("127.0.0.1", web.web_port), timeout=30) as sock:
            sock.sendall(_head("/login", f"Content-Length: {size}") + b"x" * 1000)
            time.sleep(0.3)  # a slow uplink: the rest of the body is on its way after the daemon has answered
            try:
                sock.sendall(b"x" * (size - 1000))
            except OSError as error:
                pytest.fail(f"{size}: the body was cut off: {error!r}")
            time.sleep(0.3)
            try:
                answer = sock.recv(4096)
            except OSError as error:
                pytest.fail(f"{size}: {error!r}")
        assert answer.startswith(b"HTTP/1.1 413 "), (size, answer[:100])
    # a body with no length is counted as the form parser reads it: 15 fields of 10 KB, each within what a
    # form may hold, together past the cap
    fields = [
        b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\n%s\r\n' % (n, b"x" * 10_000) for n in range(15)
    ]
    form = {"content-type": "multipart/form-data; boundary=b"}
    with httpx.Client(base_url=f"http://127.0.0.1:{web.web_port}", timeout=30) as client:
        assert client.post("/login", content=iter([*fields, b"--b--\r\n"]), headers=form).status_code == 413
