"""mail/pipeline without a daemon: the stages' order, and where one message ends up (mailbox or queue, signed)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from pathlib import Path

import dkim as dkimpy
import dns.asyncresolver
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization

from jitaku.config import FiltersSettings
from jitaku.mail import authcheck, dkim, trace
from jitaku.mail.filters.scanning import Scanning
from jitaku.mail.filters.verdict import EngineError, Envelope, Verdict
from jitaku.mail.pipeline import Arrival, BeginScan, Check, Commit, Filter, Pipeline, Route, Sign, Trace, Vouch
from jitaku.mail.policy import Accepted
from jitaku.resolver import Nameserver, configure
from jitaku.store import Database, accounts, lists, mailstore, queue
from tests.peers import Zone
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

HOSTNAME = "mx.example.test"
ALICE = "alice@example.test"
BOB = "bob@example.test"
LIST = "sota@example.test"
MESSAGE = b"From: Alice <alice@example.test>\r\nTo: dave@remote.test\r\nSubject: hello\r\n\r\nhi\r\n"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, ALICE, None)
        accounts.add_user(connection, BOB, None)
        lists.create_list(connection, LIST, "SOTA", "[sota:%05d]", "list", "auto", "")
    yield database
    database.close()


@pytest.fixture
def keys(tmp_path: Path) -> list[dkim.DkimKey]:
    dkim.ensure_keys(tmp_path / "dkim", "example.test", "jitaku", False)
    return dkim.load_keys(tmp_path / "dkim", "example.test", "jitaku", False)


class Wakes:
    """Counts the words the pipeline sends to the queue and the list runner."""

    def __init__(self) -> None:
        self.queue = 0
        self.lists = 0

    def wake(self) -> None:
        self.queue += 1

    def wake_lists(self) -> None:
        self.lists += 1


def pipeline(database: Database, keys: list[dkim.DkimKey], wakes: Wakes) -> Pipeline:
    return Pipeline(HOSTNAME, database, dkim.Signer(keys), wakes.wake, wakes.wake_lists)


def submitted(*recipients: Accepted, data: bytes = MESSAGE) -> Arrival:
    """ALICE's message after AUTH (Check looks up nothing in DNS for it)."""
    return Arrival(ALICE, recipients, data, trace.Session("192.0.2.7", "laptop", True, ALICE))


def accept(pipeline: Pipeline, arrival: Arrival) -> str:
    return asyncio.run(asyncio.wait_for(pipeline.accept(arrival), timeout=30))


def test_the_stages_run_trace_scan_check_filter_route_sign_vouch_commit(database: Database) -> None:
    run = Pipeline(HOSTNAME, database, dkim.Signer([]), lambda: None, lambda: None).stages
    assert [type(stage) for stage in run] == [Trace, BeginScan, Check, Filter, Route, Sign, Vouch, Commit]


def test_a_local_recipient_gets_the_message_below_return_path_and_received_and_nothing_is_queued(
    database: Database, keys: list[dkim.DkimKey]
) -> None:
    wakes = Wakes()
    queue_id = accept(pipeline(database, keys, wakes), submitted(Accepted(BOB, BOB)))
    (stored,) = database.read_now(lambda c: mailstore.list_messages(c, BOB))
    first, second = stored.body.split(b"\r\n", 2)[:2]
    assert first == f"Return-Path: <{ALICE}>".encode()
    assert second.startswith(b"Received: from laptop (")
    assert queue_id.encode() in stored.body.split(MESSAGE)[0]  # the Received line names the queue id
    assert stored.body.endswith(MESSAGE)
    assert b"DKIM-Signature" not in stored.body  # only mail that leaves is signed
    assert database.read_now(lambda c: mailstore.list_messages(c, ALICE)) == []
    assert database.read_now(queue.list_queue) == []
    assert (wakes.queue, wakes.lists) == (0, 0)


def test_a_remote_recipient_is_queued_dkim_signed_for_our_domain(database: Database, keys: list[dkim.DkimKey]) -> None:
    wakes = Wakes()
    queue_id = accept(pipeline(database, keys, wakes), submitted(Accepted("dave@remote.test", None)))
    (queued,) = database.read_now(queue.list_queue)
    assert (queued.id, queued.sender, queued.recipients) == (queue_id, ALICE, ("dave@remote.test",))
    body = database.read_now(lambda c: queue.body_of(c, queue_id))
    assert body is not None
    assert body.startswith(b"DKIM-Signature: ")
    assert b"d=example.test" in body.split(b"\r\nReceived:")[0]
    assert body.endswith(MESSAGE)
    public = serialization.load_pem_private_key(keys[0].private_pem, password=None).public_key()
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name == b"jitaku._domainkey.example.test." else b""

    assert dkimpy.verify(body, dnsfunc=dns)
    assert database.read_now(lambda c: mailstore.list_messages(c, BOB)) == []
    assert wakes.queue == 1


def test_mail_from_another_domain_leaves_unsigned(database: Database, keys: list[dkim.DkimKey]) -> None:
    data = MESSAGE.replace(b"alice@example.test", b"alice@elsewhere.test")
    queue_id = accept(pipeline(database, keys, Wakes()), submitted(Accepted("dave@remote.test", None), data=data))
    body = database.read_now(lambda c: queue.body_of(c, queue_id))
    assert body is not None
    assert body.startswith(b"Received: ")
    assert b"DKIM-Signature" not in body


class Down:
    """A virus scanner that cannot be reached, as clamd when it is stopped."""

    name = "clamav"

    async def scan(self, message: bytes, envelope: Envelope) -> Verdict:
        raise EngineError("clamav", "connection refused")

    async def close(self) -> None:
        return None


def test_the_filters_headers_go_on_the_stored_copy_and_not_on_the_one_that_leaves(
    database: Database, keys: list[dkim.DkimKey]
) -> None:
    settings = FiltersSettings(on_error="accept")
    filtered = Pipeline(
        HOSTNAME, database, dkim.Signer(keys), lambda: None, lambda: None, settings, Scanning(settings, [Down()])
    )
    data = b"X-Spam-Status: No\r\n" + MESSAGE  # a header the user's own program wrote stays on what leaves
    queue_id = accept(filtered, submitted(Accepted(BOB, BOB), Accepted("dave@remote.test", None), data=data))
    (stored,) = database.read_now(lambda c: mailstore.list_messages(c, BOB))
    head = bytes(stored.body).split(b"\r\n\r\n", 1)[0]
    assert b"X-Spam-Status: Unchecked (clamav unavailable)\r\n" in head and head.count(b"X-Spam-Status") == 1
    body = database.read_now(lambda c: queue.body_of(c, queue_id))
    assert body is not None and b"Unchecked" not in body and body.endswith(data)
    signature = body.split(b"\r\nReceived:")[0].lower()
    assert b"x-spam" not in signature


class Scores:
    """A spam engine that thinks little of every message."""

    name = "spamassassin"

    async def scan(self, message: bytes, envelope: Envelope) -> Verdict:
        return Verdict("spamassassin", score=1.0, action="ham")

    async def close(self) -> None:
        return None


@pytest.fixture
def no_records(dns_zone: tuple[Zone, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty zone for Check's lookups of a stranger's domain: nothing passes, and nothing waits."""
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    configure((Nameserver("127.0.0.1", dns_zone[1]),))


def test_a_strangers_own_spam_fields_reach_no_local_reader_and_leave_untouched_for_a_remote_one(
    database: Database, keys: list[dkim.DkimKey], no_records: None
) -> None:
    settings = FiltersSettings()
    filtered = Pipeline(
        HOSTNAME, database, dkim.Signer(keys), lambda: None, lambda: None, settings, Scanning(settings, [Scores()])
    )
    forged = b"X-Spam-Status: Yes\r\nX-Spam-Score: 99.0\r\nX-Virus-Status: Infected\r\n"  # for members' rules
    data = forged + b"From: Carol <carol@remote.test>\r\nTo: sota@example.test\r\nSubject: hi\r\n\r\nhi\r\n"
    recipients = (Accepted(LIST, None, (LIST, "post")), Accepted(BOB, BOB), Accepted("dave@remote.test", None))
    session = trace.Session("192.0.2.9", "mx.remote.test", False, None)
    queue_id = accept(filtered, Arrival("carol@remote.test", recipients, data, session))
    (stored,) = database.read_now(lambda c: mailstore.list_messages(c, BOB))
    head = bytes(stored.body).split(b"\r\n\r\n", 1)[0]
    assert b"X-Spam-Status: No\r\nX-Spam-Score: 1.0\r\n" in head and head.count(b"X-Spam-") == 2
    item = database.read_now(lambda c: lists.inbox_item(c, lists.next_inbox(c, 2**40) or 0))
    assert item is not None and item.note is None  # not held: the members get it
    posted = bytes(item.body)
    assert b"X-Spam-" not in posted and b"X-Virus-" not in posted and posted.endswith(data[len(forged) :])
    body = database.read_now(lambda c: queue.body_of(c, queue_id))
    assert body is not None and body.endswith(data)  # forwarded as it came: not ours to vouch for, nor to edit


class Asked:
    """An engine that notes when it is asked, and whether the message it got carries our results."""

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self._events = events

    async def scan(self, message: bytes, envelope: Envelope) -> Verdict:
        ours = b"Authentication-Results: " + HOSTNAME.encode() in message
        self._events.append(f"{self.name} asked{' with our results' if ours else ''}")
        return Verdict(self.name, score=0.0 if self.name == "rspamd" else None, action="no action")

    async def close(self) -> None:
        return None


def test_the_virus_scanner_is_asked_while_check_runs_and_the_spam_engine_after_it(
    database: Database, keys: list[dkim.DkimKey], no_records: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[str] = []
    check = authcheck.authentication_results

    async def noted(*args: object, **kwargs: object) -> bytes:
        events.append("check began")
        results = await check(*args, **kwargs)  # type: ignore[arg-type]
        events.append("check ended")
        return results

    monkeypatch.setattr(authcheck, "authentication_results", noted)
    settings = FiltersSettings()
    engines = [Asked("clamav", events), Asked("rspamd", events)]
    filtered = Pipeline(
        HOSTNAME, database, dkim.Signer(keys), lambda: None, lambda: None, settings, Scanning(settings, engines)
    )
    session = trace.Session("192.0.2.9", "mx.remote.test", False, None)
    data = b"From: Carol <carol@remote.test>\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\nhi\r\n"
    accept(filtered, Arrival("carol@remote.test", (Accepted(BOB, BOB),), data, session))
    assert events == ["check began", "clamav asked", "check ended", "rspamd asked with our results"]
    (stored,) = database.read_now(lambda c: mailstore.list_messages(c, BOB))
    assert b"X-Spam-Status: No" in bytes(stored.body)
