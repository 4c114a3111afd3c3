"""Attacks on the MX's DATA (issue 15, points 2, 5 and 7), over the socket: what each costs the daemon in
event-loop latency (a new client's wait for its banner) and memory, printed with `pytest -s`."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from tests.integration.harness import Jitaku, RawSession
from tests.integration.pressure import MB, Pressure, rss, still_serves
from tests.peers import wait_until

LINE = b"A" * 76 + b"\r\n"


def send_message(server: Jitaku, data: bytes) -> bytes:
    """DATA of DATA (dot-stuffing is the caller's) to alice through the MX; the reply to the final dot."""
    with RawSession(server.smtp_port, timeout=120) as session:
        assert session.start_data().startswith(b"354")
        session.sock.sendall(data + b"\r\n.\r\n")
        return session.reply()


def test_a_header_folded_over_thousands_of_lines_does_not_hold_the_event_loop(server: Jitaku) -> None:
    # One field folded over 20,000 lines of 1,000 bytes (20 MB) held the MX for 28 s: unfolding was
    # quadratic. Now the header section is bounded ([smtp] max_header_size) and split in linear time.
    huge = b"X-Folded: start\r\n" + (b" " + b"b" * 997 + b"\r\n") * 20_000 + b"Subject: huge\r\n\r\nbody"
    # and one as long as the bound allows, folded over 60,000 short lines, is accepted promptly
    long = b"X-Folded: start\r\n" + b" b\r\n" * 60_000 + b"Subject: long\r\n\r\nbody"
    with Pressure(server) as pressure:
        refused = send_message(server, huge)
        accepted = send_message(server, long)
    print(pressure.report("folded-header"))
    assert refused.startswith(b"552 5.3.4"), refused
    assert accepted.startswith(b"250 "), accepted
    assert pressure.prompt, pressure.report("folded-header")
    still_serves(server)


def test_a_data_line_without_crlf_is_not_kept(server: Jitaku) -> None:
    # aiosmtpd kept the fragments of a line it had already found too long: 500 MB -> +470 MB RSS
    chunk = b"x" * MB
    with Pressure(server) as pressure:
        with RawSession(server.smtp_port, timeout=120) as session:
            assert session.start_data().startswith(b"354")
            for _ in range(400):
                session.sock.sendall(chunk)
            session.sock.sendall(b"\r\n.\r\n")
            reply = session.reply()
    print(pressure.report("400MB-line"))
    assert reply.startswith(b"500 5.5.6"), reply
    assert pressure.rss_growth < 150 * MB, pressure.report("400MB-line")
    still_serves(server)
    assert server.mailbox("alice@example.test") == []


def spool_files(server: Jitaku) -> list[str]:
    """The daemon's open spool files: files without a name in its data directory (mail/spool.py)."""
    assert server.process is not None
    links = []
    for fd in Path(f"/proc/{server.process.pid}/fd").iterdir():
        try:
            links.append(os.readlink(fd))
        except FileNotFoundError:  # closed between the listing and the look (a socket, a database connection)
            continue
    return [target for target in links if target.startswith(str(server.dir)) and target.endswith("(deleted)")]


def test_a_message_refused_for_a_line_too_long_keeps_nothing_while_its_data_goes_on(server: Jitaku) -> None:
    # A message refused for its size is dropped at once; one refused for a line too long kept what it had
    # spooled (a file of up to max_message_size) for as long as the client went on sending.
    line = b"x" * 998 + b"\r\n"
    with RawSession(server.smtp_port, timeout=30) as session:
        assert session.start_data().startswith(b"354")
        session.sock.sendall(b"Subject: long lines\r\n\r\n" + line * 3 * 1024)  # 3 MB: to a file
        wait_until(lambda: spool_files(server))
        session.sock.sendall(b"y" * 5000 + b"\r\n" + line)  # and the data goes on
        time.sleep(1.0)
        kept = spool_files(server)
        session.sock.sendall(b".\r\n")
        reply = session.reply()
    assert reply.startswith(b"500 5.5.6"), reply
    assert kept == []


def test_ten_large_messages_at_once_are_accepted_within_a_memory_bound(server: Jitaku) -> None:
    # Ten concurrent 22 MB messages cost 895 MB, kept afterwards. Each client sends half its message and
    # waits until all ten have, so a bound that made them wait for memory held by the others would deadlock.
    half = LINE * (11_000_000 // len(LINE))
    clients = 10
    halfway = threading.Barrier(clients, timeout=120)
    replies: list[bytes] = []

    def client() -> None:
        with RawSession(server.smtp_port, timeout=120) as session:
            assert session.start_data().startswith(b"354")
            session.sock.sendall(b"Subject: large\r\n\r\n" + half)
            halfway.wait()
            session.sock.sendall(half + b".\r\n")
            replies.append(session.reply())

    with Pressure(server) as pressure:
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    print(pressure.report("10x22MB"))
    assert len(replies) == clients and all(reply.startswith(b"250 ") for reply in replies), replies
    assert pressure.rss_growth < 150 * MB, pressure.report("10x22MB")
    still_serves(server)
    time.sleep(1)
    after = rss(server.process.pid) - pressure.idle_rss  # type: ignore[union-attr]
    print(f"attack=10x22MB rss_after={after / MB:.0f}MB above idle")
    assert after < 60 * MB, f"{after / MB:.0f} MB above idle kept after the messages were stored"
    assert len(server.mailbox("alice@example.test")) == clients
