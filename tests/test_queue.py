"""mail/queue without a daemon: a queued entry against a real SMTP peer (Postfix's smtp-sink on loopback).

Delivered copies leave the queue, a 4xx stays with a growing delay, a 5xx or an entry older than its
lifetime bounces once to its sender (never to the null sender), a list's personal copy is reported to
the list runner, and one queue entry goes out as one transaction per recipient domain.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from email import message_from_bytes
from typing import Any

import dns.asyncresolver
import dns.resolver
import pytest

from jitaku.config import QueueSettings, RelaySettings, Settings
from jitaku.mail import delivery, dkim
from jitaku.mail.delivery import Delivery, Entry
from jitaku.mail.pipeline import Pipeline
from jitaku.mail.policy import Policy
from jitaku.mail.queue import Queue, retry_delay
from jitaku.mail.transport import DirectTransport, RelayTransport, Transport
from jitaku.resolver import Nameserver, configure
from jitaku.store import Database, Tx, intake, lists, mailstore, queue
from jitaku.store.queue import Personal, QueuedMessage
from jitaku.store.statements import Statements
from tests.peers import Sink, Zone

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

HOSTNAME = "mx.example.test"
ALICE = "alice@example.test"
DAVE = "dave@remote.test"
MESSAGE = b"From: Alice <alice@example.test>\r\nTo: dave@remote.test\r\nSubject: hello\r\n\r\nhi\r\n"
SETTINGS = QueueSettings(retry_min=60, retry_max=600, max_age=3600)
REFUSED = "550 5.1.1 No such user here"
LATER = "451 4.3.0 Try again later"


def relay(sink: Sink) -> RelayTransport:
    return RelayTransport(RelaySettings(host="127.0.0.1", port=sink.port), HOSTNAME, timeout=10)


def queued(
    database: Database, *recipients: str, sender: str = ALICE, personal: dict[str, Personal] | None = None
) -> str:
    """An entry as the pipeline leaves it (mail/delivery.commit); PERSONAL: the recipients with copies of their own."""
    entry = Entry(delivery.new_queue_id(), sender, list(recipients), MESSAGE, personal or {})
    with database.transaction() as connection:
        delivery.commit(Tx.over(connection), Delivery(queued=[entry]))
    return entry.queue_id


def run_queue(
    database: Database,
    transport: Transport,
    until: Callable[[Statements], Any],
    on_personal_delivered: Callable[[Tx, list[tuple[str, str]]], None] | None = None,
) -> None:
    """The queue's worker, as `jitaku serve` runs it, until UNTIL (read from the database) holds."""

    async def main() -> None:
        wakeup = asyncio.Event()
        pipeline = Pipeline(HOSTNAME, database, dkim.Signer([]), wakeup.set, lambda: None)
        policy = Policy(Settings(domains=["example.test"]), database)
        worker = Queue(
            SETTINGS,
            database,
            transport,
            policy,
            HOSTNAME,
            postmaster="MAILER-DAEMON@example.test",
            concurrency=4,
            pipeline=pipeline,
            wakeup=wakeup,
            on_personal_delivered=on_personal_delivered,
        )
        running = asyncio.create_task(worker.run())
        try:
            while not await database.query(until):
                await asyncio.sleep(0.05)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    asyncio.run(asyncio.wait_for(main(), timeout=30))


def entries(statements: Statements) -> list[QueuedMessage]:
    return queue.list_queue(statements)


def empty(statements: Statements) -> bool:
    return not queue.list_queue(statements)


def tried(times: int) -> Callable[[Statements], bool]:
    return lambda statements: any(entry.attempts >= times for entry in queue.list_queue(statements))


def inbox(database: Database, address: str) -> list[bytes]:
    return [message.body for message in database.read_now(lambda c: mailstore.list_messages(c, address))]


def envelope(stored: bytes, field: str) -> list[str]:
    """smtp-sink's record of the envelope (X-Mail-Args, X-Rcpt-Args) above what it received."""
    prefix = f"{field}: ".encode()
    return [line[len(prefix) :].decode() for line in stored.splitlines() if line.startswith(prefix)]


def test_a_delivered_entry_leaves_the_queue_and_reaches_the_peer(database: Database, sink_factory: Any) -> None:
    sink: Sink = sink_factory()
    queued(database, DAVE, "erin@remote.test")
    run_queue(database, relay(sink), empty)
    (stored,) = _settled(sink)
    assert envelope(stored, "X-Mail-Args") == [f"<{ALICE}>"]
    assert envelope(stored, "X-Rcpt-Args") == [f"<{DAVE}>", "<erin@remote.test>"]
    assert stored.endswith(lines(MESSAGE))
    assert inbox(database, ALICE) == []  # no bounce


def test_a_4xx_keeps_the_entry_with_its_error_and_a_growing_delay_until_it_goes(
    database: Database, sink_factory: Any
) -> None:
    deferring: Sink = sink_factory("-r", "rcpt", "-b", LATER)
    queue_id = queued(database, DAVE)
    before = time.time()
    run_queue(database, relay(deferring), tried(1))
    (entry,) = database.query_now(entries)
    assert (entry.id, entry.recipients, entry.attempts) == (queue_id, (DAVE,), 1)
    assert entry.last_error == LATER
    assert before + SETTINGS.retry_min <= entry.next_attempt <= time.time() + SETTINGS.retry_min

    with database.transaction() as connection:  # `jitaku queue flush`
        queue.flush(connection, time.time())
    before = time.time()
    run_queue(database, relay(deferring), tried(2))
    (entry,) = database.query_now(entries)
    assert entry.attempts == 2
    assert before + 2 * SETTINGS.retry_min <= entry.next_attempt <= time.time() + 2 * SETTINGS.retry_min

    accepting: Sink = sink_factory()  # the relay changed in the config, or the peer got better: nothing is lost
    with database.transaction() as connection:
        queue.flush(connection, time.time())
    run_queue(database, relay(accepting), empty)
    assert len(_settled(accepting)) == 1
    assert inbox(database, ALICE) == []


def test_the_delay_doubles_from_retry_min_up_to_retry_max() -> None:
    assert [retry_delay(attempts, SETTINGS) for attempts in range(6)] == [60, 120, 240, 480, 600, 600]


def test_a_5xx_bounces_once_to_the_sender_and_leaves_the_queue(database: Database, sink_factory: Any) -> None:
    sink: Sink = sink_factory("-f", "rcpt", "-B", REFUSED)
    queue_id = queued(database, DAVE, "erin@remote.test")
    run_queue(database, relay(sink), empty)
    (bounce,) = inbox(database, ALICE)  # one report for both recipients
    assert bounce.startswith(b"Return-Path: <>\r\n")  # a bounce has the null sender: it is never bounced
    report = message_from_bytes(bounce)
    assert report["From"] == "Mail Delivery System <MAILER-DAEMON@example.test>"
    assert report["To"] == f"<{ALICE}>"
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = bounce.decode()
    assert f"X-Jitaku-Queue-ID: {queue_id}" in status
    for recipient in (DAVE, "erin@remote.test"):
        assert f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: 5.1.1\r\n" in status
    assert f"Diagnostic-Code: smtp; {REFUSED}" in status
    assert "Subject: hello" in status  # the undelivered message's header, for the sender to recognise it
    assert database.query_now(entries) == []


def test_a_bounce_that_fails_is_dropped_not_bounced(
    database: Database, sink_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="jitaku")
    sink: Sink = sink_factory("-f", "rcpt", "-B", REFUSED)
    queue_id = queued(database, DAVE, sender="")
    run_queue(database, relay(sink), empty)
    assert inbox(database, ALICE) == []
    assert database.query_now(entries) == []
    (bounced,) = [line for line in caplog.messages if line.startswith("event=bounced ")]
    assert f"queue_id={queue_id} to={DAVE}" in bounced
    assert 'notified="nobody (null sender)"' in bounced
    assert not [line for line in caplog.messages if "event=bounce_dropped" in line]  # no report was even tried


def test_an_entry_older_than_max_age_gives_up_on_a_4xx_with_a_bounce(database: Database, sink_factory: Any) -> None:
    sink: Sink = sink_factory("-r", "rcpt", "-b", LATER)
    long_ago = time.time() - SETTINGS.max_age - 60
    with database.transaction() as connection:
        intake.enqueue(Tx.over(connection), "OLD0000001", ALICE, [DAVE], MESSAGE, long_ago)
    run_queue(database, relay(sink), empty)
    (bounce,) = inbox(database, ALICE)
    status = bounce.decode()
    assert f"Final-Recipient: rfc822; {DAVE}\r\nAction: failed\r\nStatus: 4.3.0\r\n" in status
    assert f"Diagnostic-Code: smtp; {LATER}" in status


def test_a_personal_copy_goes_from_its_own_sender_and_its_delivery_is_reported(
    database: Database, sink_factory: Any
) -> None:
    sink: Sink = sink_factory()
    verp = "sota-bounces+dave=remote.test@example.test"
    own = Personal(verp, b"List-Unsubscribe: <https://example.test/u/1>\r\n")
    queued(database, DAVE, "erin@remote.test", personal={DAVE: own})
    reported: list[tuple[str, str]] = []
    run_queue(database, relay(sink), empty, lambda _tx, copies: reported.extend(copies))
    assert reported == [(verp, DAVE)]
    shared, personal = sorted(_settled(sink, 2), key=lambda stored: DAVE in envelope(stored, "X-Rcpt-Args")[0])
    assert envelope(shared, "X-Mail-Args") == [f"<{ALICE}>"]
    assert envelope(personal, "X-Mail-Args") == [f"<{verp}>"]
    assert personal.endswith(lines(own.prefix + MESSAGE))
    assert b"List-Unsubscribe" not in shared


def test_a_personal_copy_that_bounces_reports_to_its_own_sender(database: Database, sink_factory: Any) -> None:
    """The list's VERP address, not the entry's sender, hears which member failed."""
    sink: Sink = sink_factory("-f", "rcpt", "-B", REFUSED)
    verp = "sota-bounces+dave=remote.test@example.test"
    with database.transaction() as connection:
        lists.create_list(connection, "sota@example.test", "SOTA", "[sota:%05d]", "list", "auto", "")
    queued(database, DAVE, personal={DAVE: Personal(verp, b"")})
    reported: list[tuple[str, str]] = []
    run_queue(database, relay(sink), empty, lambda _tx, copies: reported.extend(copies))
    assert reported == []
    item = database.read_now(lambda c: lists.inbox_item(c, lists.next_inbox(c, time.time()) or 0))
    assert item is not None
    assert (item.role, item.recipient, item.sender) == ("bounces", verp, "")
    assert f"Final-Recipient: rfc822; {DAVE}".encode() in item.body
    assert inbox(database, ALICE) == []


@pytest.fixture
def mx_zone(dns_zone: tuple[Zone, int], monkeypatch: pytest.MonkeyPatch) -> Zone:
    """remote.test's MX and other.test's own address (an implicit MX) both on 127.0.0.1."""
    zone, port = dns_zone
    zone.add("remote.test. 60 IN MX 10 mx.remote.test.")
    zone.add("mx.remote.test. 60 IN A 127.0.0.1")
    zone.add("other.test. 60 IN A 127.0.0.1")
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    configure((Nameserver("127.0.0.1", port),))
    return zone


def test_one_entry_goes_as_one_transaction_per_recipient_domain(
    database: Database, sink_factory: Any, mx_zone: Zone
) -> None:
    sink: Sink = sink_factory()
    queued(database, DAVE, "carol@other.test", "erin@remote.test")
    run_queue(database, DirectTransport(sink.port, HOSTNAME, timeout=10), empty)
    by_rcpt = sorted(envelope(stored, "X-Rcpt-Args") for stored in _settled(sink, 2))
    assert by_rcpt == [["<carol@other.test>"], [f"<{DAVE}>", "<erin@remote.test>"]]


def lines(message: bytes) -> bytes:
    """MESSAGE as smtp-sink stores it: LF line ends, and one more at the end."""
    return message.replace(b"\r\n", b"\n") + b"\n"


def _settled(sink: Sink, count: int = 1) -> list[bytes]:
    """What SINK stored once COUNT messages are there (smtp-sink writes after its 250)."""
    deadline = time.monotonic() + 15
    while len(found := sink.messages()) < count:
        assert time.monotonic() < deadline, f"smtp-sink holds {len(found)} messages, expected {count}"
        time.sleep(0.1)
    return found
