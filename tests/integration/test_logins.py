"""The failed-login limit, attacked from outside (issue 15, point 9): wrong passwords in parallel, over
submission, IMAP, POP3 and the web login, from one address and from many, across a restart and across two
SMTP worker processes. Every try is a real client over loopback; another address on loopback (127.0.0.2 and
up, bound as the client's source) is another household.

A try whose password was checked logs `event=auth_failed`; one refused before its check does not, so the
log counts the argon2 checks an attacker got."""

from __future__ import annotations

import base64
import imaplib
import poplib
import smtplib
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.integration.forms import csrf_of
from tests.integration.harness import READER, Jitaku, fill, on_disk
from tests.integration.pressure import Pressure, still_serves
from tests.peers import swaks, wait_for_port

PASSWORD = "secret-password"
ALICE = READER
BOB = "bob@example.org"
T = TypeVar("T")


def smtp_auth(server: Jitaku, user: str, password: str, source: str = "127.0.0.1", ready: Any = None) -> int:
    """AUTH PLAIN on submission from SOURCE; the reply's code. READY (a Barrier) holds the AUTH until every
    client is connected, so the tries reach the daemon together. A connection refused at once (421: the
    daemon has not yet seen the close of an earlier one from the same address, such as the fixture's port
    probe, and counts 50 open) gets no try."""
    try:
        client = smtplib.SMTP("127.0.0.1", server.submission_port, timeout=60, source_address=(source, 0))
    except smtplib.SMTPConnectError as refused:  # over max_connections_per_ip: no try at all
        if ready is not None:
            ready.wait()
        return refused.smtp_code
    with client:
        client.ehlo("client.test")
        if ready is not None:
            ready.wait()
        plain = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        code, _ = client.docmd("AUTH", f"PLAIN {plain}")
        return code


def in_parallel(count: int, attempt: Callable[[int, threading.Barrier], T]) -> list[T]:
    """COUNT tries at once: attempt(index, barrier) in a thread each."""
    ready = threading.Barrier(count, timeout=60)
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda index: attempt(index, ready), range(count)))


def checked(server: Jitaku, listener: str) -> int:
    """How many wrong passwords the daemon checked on LISTENER (each logs one auth_failed line)."""
    return sum(
        1 for line in server.log().splitlines() if "event=auth_failed" in line and f"listener={listener}" in line
    )


class Imap(imaplib.IMAP4):
    """imaplib from a source address of our choosing."""

    def __init__(self, port: int, source: str) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=60)

    def _create_socket(self, timeout: float | None) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


class Pop3(poplib.POP3):
    """poplib from a source address of our choosing."""

    def __init__(self, port: int, source: str) -> None:
        self.source = source
        super().__init__("127.0.0.1", port, timeout=60)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self.source, 0))


def imap_login(server: Jitaku, user: str, password: str, source: str = "127.0.0.1", ready: Any = None) -> str:
    """OK, or the response code of the refusal."""
    client = Imap(server.imap_port, source)
    try:
        if ready is not None:
            ready.wait()
        client.login(user, password)
        return "OK"
    except imaplib.IMAP4.error as error:
        return str(error).split("[")[1].split("]")[0]
    finally:
        client.shutdown()


def pop3_login(server: Jitaku, user: str, password: str, source: str = "127.0.0.1", ready: Any = None) -> str:
    """+OK, or the response code of the refusal."""
    client = Pop3(server.pop3_port, source)
    try:
        client.user(user)
        if ready is not None:
            ready.wait()
        return client.pass_(password).decode()[:3]
    except poplib.error_proto as error:
        return str(error).split("[")[1].split("]")[0]
    finally:
        client.close()


def web_login(server: Jitaku, user: str, password: str, source: str = "127.0.0.1", ready: Any = None) -> int:
    form = {"address": user, "password": password, "next": "/admin/health"}
    transport = httpx.HTTPTransport(local_address=source)
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", transport=transport, timeout=60) as client:
        page = client.get("/login")
        if ready is not None:
            ready.wait()
        return client.post("/login", data={**form, "csrf": csrf_of(page.text)}).status_code


def test_fifty_wrong_passwords_at_once_get_five_checks_and_lock_out_only_that_user_from_that_address(
    server: Jitaku,
) -> None:
    codes = Counter(in_parallel(50, lambda _i, ready: smtp_auth(server, ALICE, "wrong", ready=ready)))
    print(f"50 parallel wrong passwords on submission: {dict(codes)}, checked {checked(server, 'submission')}")
    assert checked(server, "submission") <= 5 and codes[535] == checked(server, "submission")
    assert codes[454] + codes[421] >= 45 and set(codes) <= {421, 454, 535} and codes[421] <= 2
    assert smtp_auth(server, ALICE, PASSWORD) == 454  # the phone with the old password keeps its user out
    assert smtp_auth(server, ALICE, PASSWORD, source="127.0.0.2") == 235  # from home, alice logs in
    assert smtp_auth(server, BOB, PASSWORD) == 235  # and the rest of the household, behind the same address
    assert "event=login_locked client=127.0.0.1 user=alice@example.test scope=user" in server.log()


def test_spraying_many_users_from_one_address_gets_ten_checks_and_locks_that_address(server: Jitaku) -> None:
    codes = Counter(in_parallel(50, lambda i, ready: smtp_auth(server, f"user{i}@example.test", "x", ready=ready)))
    print(f"50 users sprayed from one address: {dict(codes)}, checked {checked(server, 'submission')}")
    assert checked(server, "submission") <= 10 and codes[535] == checked(server, "submission")
    assert smtp_auth(server, BOB, PASSWORD) == 454
    assert smtp_auth(server, BOB, PASSWORD, source="127.0.0.2") == 235
    assert "scope=address" in server.log()


def test_an_unknown_user_costs_as_long_as_a_wrong_password(server: Jitaku) -> None:
    """User enumeration by timing: an unknown user was answered in 1 ms, a known one in 40-80 ms."""

    def timed(user: str, source: str) -> float:
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=30, source_address=(source, 0)) as client:
            client.ehlo("client.test")
            plain = base64.b64encode(f"\0{user}\0wrong".encode()).decode()
            started = time.perf_counter()
            code, _ = client.docmd("AUTH", f"PLAIN {plain}")
            elapsed = time.perf_counter() - started
            assert code == 535
            return elapsed

    known: list[float] = []
    unknown: list[float] = []
    for _ in range(4):  # taken in turns, so that a change of the machine's load weighs on both alike
        known.append(timed(ALICE, "127.0.0.3"))
        unknown.append(timed("nobody@example.test", "127.0.0.4"))
    print(
        f"AUTH answered in: known user {statistics.median(known) * 1000:.1f} ms,"
        f" unknown user {statistics.median(unknown) * 1000:.1f} ms (medians of 4)"
    )
    assert statistics.median(unknown) > 0.4 * statistics.median(known)


def test_the_limit_holds_across_a_restart(server: Jitaku) -> None:
    for _ in range(5):
        assert smtp_auth(server, ALICE, "wrong") == 535
    server.restart()
    wait_for_port(server.imap_port)
    assert smtp_auth(server, ALICE, PASSWORD) == 454
    assert "UNAVAILABLE" in imap_login(server, ALICE, PASSWORD)  # one limit for every protocol
    assert smtp_auth(server, ALICE, PASSWORD, source="127.0.0.2") == 235


def test_the_limit_holds_across_two_smtp_workers(jitaku_factory: Any) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["smtp"]["workers"] = 2
    server.write_config()
    server.init(ALICE, BOB)
    server.start()
    codes = Counter(in_parallel(50, lambda _i, ready: smtp_auth(server, ALICE, "wrong", ready=ready)))
    pids = {line.split("pid=")[1].split()[0] for line in server.log().splitlines() if "event=started" in line}
    print(f"50 parallel wrong passwords, two workers: {dict(codes)}, checked {checked(server, 'submission')}")
    assert len(pids) == 2
    assert checked(server, "submission") <= 5 and codes[454] >= 45
    assert all(smtp_auth(server, ALICE, PASSWORD) == 454 for _ in range(4))  # whichever worker takes it


def test_imap_pop3_and_web_count_tries_in_flight_too(mailhost: Jitaku) -> None:
    results = Counter(in_parallel(20, lambda _i, ready: imap_login(mailhost, ALICE, "wrong", ready=ready)))
    print(f"20 parallel IMAP logins: {dict(results)}, checked {checked(mailhost, 'imap')}")
    assert checked(mailhost, "imap") <= 5 and set(results) == {"AUTHENTICATIONFAILED", "UNAVAILABLE"}
    assert imap_login(mailhost, ALICE, PASSWORD, source="127.0.0.2") == "OK"
    assert imap_login(mailhost, BOB, PASSWORD) == "OK"

    replies = Counter(in_parallel(20, lambda _i, ready: pop3_login(mailhost, BOB, "wrong", "127.0.0.5", ready)))
    print(f"20 parallel POP3 logins: {dict(replies)}, checked {checked(mailhost, 'pop3')}")
    assert checked(mailhost, "pop3") <= 5 and set(replies) == {"AUTH", "SYS/TEMP"}
    assert pop3_login(mailhost, BOB, PASSWORD, source="127.0.0.2") == "+OK"

    statuses = Counter(in_parallel(20, lambda _i, ready: web_login(mailhost, ALICE, "wrong", "127.0.0.6", ready)))
    print(f"20 parallel web logins: {dict(statuses)}, checked {checked(mailhost, 'web')}")
    assert checked(mailhost, "web") <= 5 and set(statuses) == {401, 429}
    assert web_login(mailhost, ALICE, PASSWORD, source="127.0.0.2") == 303


def test_a_mail_client_opening_ten_connections_at_once_gets_every_one_in(mailhost: Jitaku) -> None:
    """Thunderbird opens up to five IMAP connections at once, imaptest ten: each with the right password.
    Tries being checked count against the limit from their start, so the sixth was refused with UNAVAILABLE
    as if five had failed; it now waits for their outcome."""
    results = Counter(in_parallel(10, lambda _i, ready: imap_login(mailhost, ALICE, PASSWORD, ready=ready)))
    assert results == {"OK": 10}
    replies = Counter(in_parallel(10, lambda _i, ready: pop3_login(mailhost, BOB, PASSWORD, ready=ready)))
    assert replies == {"+OK": 10}


def test_four_hundred_tries_from_forty_addresses_leave_the_mx_prompt(server: Jitaku) -> None:
    """argon2 has a small pool of its own: a try that would wait too long for it is told to come back
    (454), and the MX's banner and its delivery (SPF and DKIM checks on the default thread pool) do not wait
    behind 400 password checks."""
    took: list[float] = []

    def deliver() -> None:
        started = time.monotonic()
        sent = swaks("--server", f"127.0.0.1:{server.smtp_port}", "--to", ALICE, "--from", "x@remote.test")
        took.append(time.monotonic() - started)
        assert sent.returncode == 0, sent.stdout

    def attempt(index: int, ready: threading.Barrier) -> int:
        return smtp_auth(server, ALICE, f"guess{index}", f"127.0.1.{index % 40 + 1}", ready)

    ready = threading.Barrier(401, timeout=60)  # the delivery starts as the 400 AUTHs are sent
    with Pressure(server) as pressure, ThreadPoolExecutor(400) as pool:
        tries = [pool.submit(attempt, index, ready) for index in range(400)]
        ready.wait()
        started = time.monotonic()
        deliver()
        codes = Counter(one.result() for one in tries)
        attack = time.monotonic() - started
    print(
        pressure.report("400 parallel AUTH from 40 addresses"),
        f"mx_delivery={took[0]:.2f}s all_answered={attack:.2f}s",
        dict(codes),
    )
    assert set(codes) <= {454, 535} and codes[454] > 0
    assert pressure.prompt
    # 3.9 s on an idle machine (8 s in the issue) when argon2 shared the default thread pool; longer as it is busier
    assert took[0] < 2.0 * pressure.busiest
    still_serves(server)
    assert smtp_auth(server, ALICE, PASSWORD, source="127.0.0.2") == 235


def test_a_login_on_a_full_disk_is_refused_for_now_in_each_protocols_words(
    jitaku_factory: Any, small_disk: Path
) -> None:
    """A try is counted in the store before its password is checked: when that write fails (a full disk), the
    client hears a temporary refusal, not aiosmtpd's 500 with the database's error text, nor a dropped POP3
    connection."""
    server = on_disk(jitaku_factory, small_disk)
    wait_for_port(server.pop3_port)
    fill(small_disk)
    assert smtp_auth(server, ALICE, PASSWORD) == 454
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\]"):
        imap.login(ALICE, PASSWORD)
    pop3 = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    pop3.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\]"):
        pop3.pass_(PASSWORD)
    assert "USER" in pop3.capa()  # the session goes on
    still_serves(server)
    server.stop()
