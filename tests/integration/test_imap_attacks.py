"""What one IMAP client can do to the house (issue 15), over the socket, against a real `jitaku serve`: each
attack's cost is measured from outside (tests/integration/pressure.py): a new MX client gets its banner
within a second during it, the daemon's memory rises at most 150 MB, and it still serves afterwards.

Run with -s to see each attack's figures."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import READER, Jitaku, fill, on_disk
from tests.integration.pressure import MB, Pressure, still_serves
from tests.peers import wait_for_port

PASSWORD = "secret-password"


class Imap:
    """One IMAP connection driven by hand: commands as written, answers as they come."""

    def __init__(self, port: int, timeout: float = 30) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.stream = self.sock.makefile("rb")
        self.greeting = self.stream.readline()
        self._tags = 0

    def close(self) -> None:
        self.stream.close()
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def tag(self) -> bytes:
        self._tags += 1
        return b"t%d" % self._tags

    def answer(self, tag: bytes) -> tuple[list[bytes], bytes]:
        """The lines up to TAG's tagged response, and that response (after the tag); literals are read whole."""
        lines = []
        while True:
            line = self.stream.readline()
            if not line:
                raise ConnectionError("closed by the server")
            if line.startswith(tag + b" "):
                return lines, line[len(tag) + 1 :].rstrip(b"\r\n")
            while line.endswith(b"}\r\n"):  # a literal: its bytes, then the rest of the response
                size = int(line[line.rindex(b"{") + 1 : -3])
                line += self.stream.read(size) + self.stream.readline()
            lines.append(line)

    def command(self, text: bytes) -> tuple[list[bytes], bytes]:
        tag = self.tag()
        self.send(tag + b" " + text + b"\r\n")
        return self.answer(tag)

    def log_in(self, mailbox: bytes | None = b"INBOX") -> Imap:
        assert self.command(f'LOGIN {READER} "{PASSWORD}"'.encode())[1].startswith(b"OK")
        if mailbox is not None:
            assert self.command(b"SELECT " + mailbox)[1].startswith(b"OK")
        return self

    def append(self, message: bytes, mailbox: bytes = b"INBOX") -> bytes:
        tag = self.tag()
        self.send(tag + b" APPEND " + mailbox + b" {%d+}\r\n" % len(message) + message + b"\r\n")
        return self.answer(tag)[1]


def imap_server(jitaku_factory: Any, **settings: Any) -> Jitaku:
    """A running jitaku with users alice and bob, and SETTINGS over the defaults ({"imap": {...}, ...})."""
    server: Jitaku = jitaku_factory()
    for section, values in settings.items():
        server.settings.setdefault(section, {}).update(values)
    server.write_config()
    server.init(READER, "bob@example.org")
    server.start()
    wait_for_port(server.imap_port)
    return server


def many_fields(count: int, subject: bytes = b"needle") -> bytes:
    return b"".join(b"X-Field-%d: value %d\r\n" % (number, number) for number in range(count)) + (
        b"From: someone@remote.test\r\nSubject: " + subject + b"\r\n\r\nhello\r\n"
    )


def test_search_text_over_a_message_of_twenty_thousand_header_fields(jitaku_factory: Any) -> None:
    """Issue 15 point 1: SEARCH TEXT over such a message froze the daemon 18 s. The MX now refuses a header of
    more than [smtp] max_header_fields (1,000), but a mailbox may hold one from before, or APPENDed."""
    server = imap_server(jitaku_factory)
    imap = Imap(server.imap_port).log_in()
    assert imap.append(many_fields(20_000)).startswith(b"OK")
    with Pressure(server) as pressure:
        lines, done = imap.command(b"SEARCH TEXT needle")
        assert done.startswith(b"OK") and lines == [b"* SEARCH 1\r\n"]
        assert imap.command(b"SEARCH TEXT haystack")[0] == [b"* SEARCH\r\n"]
        assert imap.command(b"SEARCH HEADER X-Field-19999 19999")[0] == [b"* SEARCH 1\r\n"]
    print(pressure.report("search_text_20000_fields"))
    assert pressure.prompt, pressure.report("search_text_20000_fields")
    still_serves(server)


def test_sigterm_stops_the_daemon_during_a_search_of_a_million_header_fields(jitaku_factory: Any) -> None:
    """Issue 15 point 1: during a SEARCH over one message of a million fields the daemon ignored SIGTERM for
    minutes. Here the search may read the whole message and take all the time it likes: it runs in a worker
    thread, in pieces, and stops when its session is cancelled."""
    big = 32 * MB
    server = imap_server(
        jitaku_factory, smtp={"max_message_size": big}, imap={"max_search_bytes": big, "max_command_time": 600.0}
    )
    imap = Imap(server.imap_port).log_in()
    assert imap.append(many_fields(1_000_000)).startswith(b"OK")
    assert server.process is not None
    with Pressure(server) as pressure:
        imap.send(b"s1 SEARCH TEXT needle\r\n")
        time.sleep(2.0)  # well into the search: reading a million fields takes longer
    print(pressure.report("search_text_1000000_fields"))
    assert pressure.prompt, pressure.report("search_text_1000000_fields")
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the daemon did not stop within 10 s of SIGTERM during a search")
    print(f"stopped {time.monotonic() - started:.2f} s after SIGTERM")
    assert "event=stopped" in server.log()
    assert imap.stream.readline() == b"* BYE server shutting down\r\n"  # in the middle of its SEARCH (issue 17)


def test_fetch_bodystructure_of_a_message_of_a_hundred_thousand_parts(jitaku_factory: Any) -> None:
    """A stranger's message of tiny MIME parts: each FETCH BODYSTRUCTURE cut and parsed every one of them on
    the event loop (3 s for these 100,000; 20 s for a 25 MB message). Past 10,000 parts the rest stays whole."""
    server = imap_server(jitaku_factory)
    imap = Imap(server.imap_port).log_in()
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(100_000))
    assert imap.append(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n").startswith(b"OK")
    with Pressure(server) as pressure:
        for _ in range(3):
            lines, done = imap.command(b"FETCH 1 BODYSTRUCTURE")
            assert done.startswith(b"OK") and lines[0].count(b'("text" "plain"') == 9_999
    print(pressure.report("bodystructure_100000_parts"))
    assert pressure.prompt, pressure.report("bodystructure_100000_parts")
    still_serves(server)


def test_a_search_of_thousands_of_keys_is_refused(jitaku_factory: Any) -> None:
    """Issue 15 point 3: literals let one SEARCH carry any number of keys, each tried on every message."""
    server = imap_server(jitaku_factory)
    imap = Imap(server.imap_port).log_in()
    for number in range(50):
        assert imap.append(b"Subject: message %d\r\nFrom: a@remote.test\r\n\r\nhello\r\n" % number).startswith(b"OK")
    # every key holds for every message, so each is tried on each: 1.5 million tries
    keys = b"".join(b" NOT SUBJECT {%d+}\r\nword%d" % (len(b"word%d" % n), n) for n in range(30_000))
    with Pressure(server) as pressure:
        tag = imap.tag()
        imap.send(tag + b" SEARCH" + keys + b"\r\n")
        lines, done = imap.answer(tag)
    print(pressure.report("search_30000_keys"))
    assert done.startswith(b"NO [LIMIT]"), done
    assert pressure.prompt, pressure.report("search_30000_keys")
    numbers = b" ".join(b"%d" % number for number in range(1, 51))
    assert imap.command(b"SEARCH SUBJECT message")[0] == [b"* SEARCH " + numbers + b"\r\n"]
    still_serves(server)


def test_listing_thousands_of_mailboxes_and_the_cap_on_them(jitaku_factory: Any) -> None:
    """Issue 15 point 3: LIST looked for each name's children among all names (quadratic), and a user could
    create any number of mailboxes. The cap (max_mailboxes) is raised here to make the LIST long. It bounds
    subscriptions too, which outlive their mailboxes (issue 16)."""
    cap = 4000
    server = imap_server(jitaku_factory, imap={"max_mailboxes": cap})
    sessions = [Imap(server.imap_port).log_in(None) for _ in range(8)]
    names = [b"Projects/%d" % number for number in range(cap - 6)]  # and INBOX and 5 special-use folders

    def create(session: Imap, part: list[bytes]) -> None:  # pipelined: one write, then the answers
        commands = [verb + name for name in part for verb in (b" CREATE ", b" SUBSCRIBE ")]
        tags = [session.tag() for _ in commands]
        session.send(b"".join(tag + command + b"\r\n" for tag, command in zip(tags, commands, strict=True)))
        assert all(session.answer(tag)[1].startswith(b"OK") for tag in tags)

    threads = [threading.Thread(target=create, args=(s, names[i :: len(sessions)])) for i, s in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    imap = sessions[0]
    with Pressure(server) as pressure:
        for _ in range(3):
            lines, done = imap.command(b'LIST "" "*"')
            assert done.startswith(b"OK") and len(lines) == cap + 1  # and the level "Projects"
        assert len(imap.command(b'LSUB "" "*"')[0]) == cap
        lines, done = imap.command(b'LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    print(pressure.report(f"list_{cap}_mailboxes"))
    assert pressure.prompt, pressure.report(f"list_{cap}_mailboxes")
    assert b'* LIST (\\NonExistent \\HasChildren) "/" "Projects" (CHILDINFO ("SUBSCRIBED"))\r\n' in lines
    assert imap.command(b"CREATE one-too-many")[1].startswith(b"NO [LIMIT]")
    assert imap.command(b"RENAME INBOX Old-mail")[1].startswith(b"NO [LIMIT]")  # renaming INBOX makes a mailbox
    assert imap.command(b"DELETE Projects/0")[1].startswith(b"OK")
    assert imap.command(b"CREATE one-more")[1].startswith(b"OK")
    assert imap.command(b"SUBSCRIBE one-more")[1].startswith(b"NO [LIMIT]")  # Projects/0's is subscribed still
    assert imap.command(b"UNSUBSCRIBE Projects/0")[1].startswith(b"OK")
    assert imap.command(b"SUBSCRIBE one-more")[1].startswith(b"OK")
    for session in sessions:
        session.close()
    still_serves(server)


def test_literals_before_login_are_refused_past_a_few_kilobytes(jitaku_factory: Any) -> None:
    """Issue 15 point 4: one command before login could chain any number of 64 MiB literals (+826 MB)."""
    server = imap_server(jitaku_factory, smtp={"max_message_size": MB})
    chunk = b"y" * (64 * MB)
    with Pressure(server, probe_banner=False) as pressure:
        attackers = [Imap(server.imap_port) for _ in range(3)]
        for attacker in attackers:
            with contextlib.suppress(OSError):  # the server hangs up at the first announcement
                attacker.send(b"a LOGIN {67108864+}\r\n")
                for _ in range(3):
                    attacker.send(chunk + b" {67108864+}\r\n")
        time.sleep(1.0)
    print(pressure.report("literals_before_login"))
    assert pressure.rss_growth < 150 * MB, pressure.report("literals_before_login")
    for attacker in attackers:
        with contextlib.suppress(OSError):
            assert attacker.stream.read().endswith(b"* BYE [TOOBIG] a literal that large is refused\r\n")
        attacker.close()
    still_serves(server)
    refused = Imap(server.imap_port)
    assert refused.command(b"LOGIN {67108864}")[1].startswith(b"NO [TOOBIG]")  # the client sends none of it
    assert refused.command(f'LOGIN {READER} "{PASSWORD}"'.encode())[1].startswith(b"OK")
    assert b"APPENDLIMIT=1048576" in refused.command(b"CAPABILITY")[0][0]
    message = b"Subject: big\r\n\r\n" + b"x" * MB
    assert refused.command(b"APPEND INBOX {%d}" % len(message))[1].startswith(b"NO [TOOBIG]")
    assert refused.append(b"Subject: small\r\n\r\nhello\r\n").startswith(b"OK [APPENDUID")


def test_clients_that_stop_reading_a_fetch_hold_little_and_are_cut_off(jitaku_factory: Any) -> None:
    """Issue 15 point 6: FETCH 1:* BODY.PEEK[] read 200 bodies at once, and a client that stopped reading kept
    them for ever: three such sessions held 5 GB."""
    server = imap_server(jitaku_factory, imap={"write_timeout": 4.0})
    writer = Imap(server.imap_port).log_in(None)
    body = b"Subject: large\r\n\r\n" + (b"z" * 998 + b"\r\n") * 2048  # 2 MB
    for _ in range(60):
        assert writer.append(body).startswith(b"OK")
    with Pressure(server, probe_banner=False) as pressure:
        readers = [Imap(server.imap_port, timeout=15).log_in() for _ in range(3)]
        for reader in readers:
            reader.send(b"f1 FETCH 1:* BODY.PEEK[]\r\n")  # and read nothing
        time.sleep(2.0)
    print(pressure.report("stalled_fetch_readers"))
    assert pressure.rss_growth < 150 * MB, pressure.report("stalled_fetch_readers")
    time.sleep(4.0)  # past the write timeout: each reader is cut off before its FETCH completes
    for reader in readers:
        received = b""
        with contextlib.suppress(OSError):
            while chunk := reader.sock.recv(1 << 20):
                received += chunk
        assert b"f1 OK" not in received and len(received) < 60 * len(body)
        reader.close()
    fetched, done = writer.command(b"SELECT INBOX")
    lines, done = writer.command(b"FETCH 60 BODY.PEEK[]")
    assert done.startswith(b"OK") and lines[0].endswith(body + b")\r\n")
    still_serves(server)


def test_a_full_disk_answers_no_and_keeps_the_session(jitaku_factory: Any, small_disk: Path) -> None:
    """Issue 15 point 11: on a full disk SELECT (whose \\Recent claim is a write) dropped the connection.

    A small write may still succeed on a full disk, durably: SQLite's write-ahead log reuses the room it already
    has. So SELECT and CREATE may answer either way, but never drop the session; an APPEND larger than any room
    the log keeps (about 4 MB at its checkpoint) must find the disk full."""
    server = on_disk(jitaku_factory, small_disk)
    wait_for_port(server.imap_port)
    imap = Imap(server.imap_port).log_in(None)
    assert imap.append(b"Subject: before\r\n\r\nhello\r\n").startswith(b"OK")
    filler = fill(small_disk)
    lines, done = imap.command(b"SELECT INBOX")
    assert done.startswith((b"OK", b"NO [LIMIT]")), done
    assert imap.command(b"NOOP")[1].startswith(b"OK")
    created = imap.command(b"CREATE Full")[1]
    assert created.startswith((b"OK", b"NO [LIMIT]")), created
    large = b"Subject: after\r\n\r\n" + (b"x" * 74 + b"\r\n") * 80_000  # 6 MB: a synchronizing literal (LITERAL-)
    tag = imap.tag()
    imap.send(tag + b" APPEND INBOX {%d}\r\n" % len(large))
    assert imap.stream.readline().startswith(b"+")
    imap.send(large + b"\r\n")
    appended = imap.answer(tag)[1]
    assert appended.startswith(b"NO [LIMIT]"), appended
    assert imap.command(b"EXAMINE INBOX")[1].startswith(b"OK")  # reading needs no room
    assert imap.command(b"STORE 1 +FLAGS (\\Seen)")[1].startswith(b"NO")  # read-only, as examined
    filler.unlink()
    assert imap.command(b"SELECT INBOX")[1].startswith(b"OK [READ-WRITE]")
    assert imap.command(b"STORE 1 +FLAGS (\\Seen)")[1].startswith(b"OK")
    still_serves(server)
    server.stop()
