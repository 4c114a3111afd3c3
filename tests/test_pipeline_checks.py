"""mail/pipeline's Check and Vouch stages without a daemon: the Authentication-Results a reader finds.

Check writes our verdict on a stranger's mail (SPF, DKIM, DMARC, looked up in a DNS zone served on
loopback) and drops results forged in our name; it refuses nothing, since policy answered at RCPT.
Vouch puts our word for an authenticated user's list post on the list's copy alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import dns.asyncresolver
import dns.resolver
import pytest

from jitaku.mail import dkim, trace
from jitaku.mail.pipeline import Arrival, Pipeline
from jitaku.mail.policy import Accepted
from jitaku.resolver import Nameserver, configure
from jitaku.store import Database, accounts, lists, mailstore
from tests.peers import Zone
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

HOSTNAME = "mx.example.test"
ALICE = "alice@example.test"
BOB = "bob@example.test"
CAROL = "carol@remote.test"
LIST = "sota@example.test"
FROM_CAROL = b"From: Carol <carol@remote.test>\r\nTo: bob@example.test\r\nSubject: hello\r\n\r\nhi\r\n"
FROM_ALICE = b"From: Alice <alice@example.test>\r\nTo: sota@example.test\r\nSubject: hello\r\n\r\nhi\r\n"
FORGED = b"Authentication-Results: mx.example.test; spf=pass smtp.mailfrom=carol@remote.test\r\n"
THEIRS = b"Authentication-Results: relay.remote.test; spf=pass smtp.mailfrom=carol@remote.test\r\n"
CAROLS_SERVER = "192.0.2.7"


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
def carols_key(tmp_path: Path) -> dkim.DkimKey:
    dkim.ensure_keys(tmp_path / "remote", "remote.test", "s1", False)
    (key,) = dkim.load_keys(tmp_path / "remote", "remote.test", "s1", False)
    return key


@pytest.fixture
def remote_zone(dns_zone: tuple[Zone, int], carols_key: dkim.DkimKey, monkeypatch: pytest.MonkeyPatch) -> Zone:
    """remote.test as its owner publishes it: SPF for one address, DMARC p=reject, a DKIM key."""
    zone, port = dns_zone
    zone.add(f'remote.test. 60 IN TXT "v=spf1 ip4:{CAROLS_SERVER} -all"')
    zone.add('_dmarc.remote.test. 60 IN TXT "v=DMARC1; p=reject"')
    value = carols_key.record_value()
    chunks = " ".join(f'"{value[i : i + 200]}"' for i in range(0, len(value), 200))
    zone.add(f"{carols_key.record_name}. 60 IN TXT {chunks}")
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    configure((Nameserver("127.0.0.1", port),))
    return zone


def accept(database: Database, arrival: Arrival) -> None:
    pipeline = Pipeline(HOSTNAME, database, dkim.Signer([]), lambda: None, lambda: None)
    asyncio.run(asyncio.wait_for(pipeline.accept(arrival), timeout=30))


def from_stranger(data: bytes, client_ip: str = CAROLS_SERVER, *recipients: Accepted) -> Arrival:
    session = trace.Session(client_ip, "mx.remote.test", False, None)
    return Arrival(CAROL, recipients or (Accepted(BOB, BOB),), data, session)


def header_lines(message: bytes) -> list[bytes]:
    """The header section's fields, each unfolded onto one line, in order."""
    head = message.split(b"\r\n\r\n", 1)[0]
    return head.replace(b"\r\n\t", b" ").replace(b"\r\n ", b" ").split(b"\r\n")


def ours(message: bytes) -> list[bytes]:
    return [line for line in header_lines(message) if line.startswith(b"Authentication-Results: " + HOSTNAME.encode())]


def bobs_copy(database: Database) -> bytes:
    (stored,) = database.read_now(lambda c: mailstore.list_messages(c, BOB))
    return bytes(stored.body)


def test_mail_from_an_address_spf_allows_reads_spf_pass_dmarc_pass_above_received(
    database: Database, remote_zone: Zone
) -> None:
    accept(database, from_stranger(FROM_CAROL))
    stored = bobs_copy(database)
    fields = header_lines(stored)
    assert fields[0] == b"Return-Path: <carol@remote.test>"
    assert fields[1] == (
        b'Authentication-Results: mx.example.test; spf=pass reason="sender SPF authorized"'
        b" smtp.helo=mx.remote.test smtp.mailfrom=remote.test; dkim=none;"
        b" dmarc=pass (Used From Domain Record) header.from=remote.test policy.dmarc=reject"
    )
    assert fields[2].startswith(b"Received: from mx.remote.test ([192.0.2.7])")
    assert stored.endswith(FROM_CAROL)


def test_mail_from_an_address_spf_forbids_reads_spf_fail_dmarc_fail(database: Database, remote_zone: Zone) -> None:
    accept(database, from_stranger(FROM_CAROL, "198.51.100.9"))  # delivered all the same: Check refuses nothing
    (verdict,) = ours(bobs_copy(database))
    assert b" spf=fail " in verdict
    assert b" dmarc=fail (Used From Domain Record) header.from=remote.test policy.dmarc=reject" in verdict


def test_a_good_dkim_signature_reads_dkim_pass_from_any_address(
    database: Database, remote_zone: Zone, carols_key: dkim.DkimKey
) -> None:
    signed = dkim.Signer([carols_key]).sign(FROM_CAROL, "remote.test")
    accept(database, from_stranger(signed, "198.51.100.9"))
    (verdict,) = ours(bobs_copy(database))
    assert b" spf=fail " in verdict
    assert b" dkim=pass header.d=remote.test" in verdict
    assert b" dmarc=pass " in verdict  # the aligned signature is enough


def test_results_forged_in_our_name_are_dropped_and_another_servers_kept(database: Database, remote_zone: Zone) -> None:
    accept(database, from_stranger(FORGED + THEIRS + FROM_CAROL, "198.51.100.9"))
    stored = bobs_copy(database)
    (verdict,) = ours(stored)
    assert b"spf=fail" in verdict  # ours, not the forged pass
    assert FORGED not in stored
    assert stored.endswith(THEIRS + FROM_CAROL)


def test_our_own_users_mail_gets_no_verdict(database: Database) -> None:
    """No DNS zone here: Check looks nothing up for a user who logged in."""
    session = trace.Session("192.0.2.50", "laptop", True, ALICE)
    accept(database, Arrival(ALICE, (Accepted(BOB, BOB),), FROM_ALICE, session))
    stored = bobs_copy(database)
    assert ours(stored) == []
    assert [line.split(b":")[0] for line in header_lines(stored)][:2] == [b"Return-Path", b"Received"]


def test_a_bounce_made_here_gets_no_verdict(database: Database) -> None:
    accept(database, Arrival("", (Accepted(BOB, BOB),), FROM_ALICE, None))
    assert bobs_copy(database) == b"Return-Path: <>\r\n" + FROM_ALICE


def list_copy(database: Database) -> bytes:
    item = database.read_now(lambda c: lists.inbox_item(c, lists.next_inbox(c, 2**40) or 0))
    assert item is not None
    assert item.recipient == LIST
    return bytes(item.body)


def test_a_users_list_post_carries_our_word_for_the_login_on_the_lists_copy_alone(database: Database) -> None:
    session = trace.Session("192.0.2.50", "laptop", True, ALICE)
    recipients = (Accepted(LIST, None, (LIST, "post")), Accepted(BOB, BOB))
    accept(database, Arrival(ALICE, recipients, FORGED + FROM_ALICE, session))
    posted = list_copy(database)
    fields = header_lines(posted)
    assert fields[0] == b"Authentication-Results: mx.example.test; auth=pass smtp.auth=alice@example.test"
    assert fields[1].startswith(b"Received: from laptop ([192.0.2.50])")
    assert ours(posted) == [fields[0]]  # the forged line is gone from the list's copy
    assert posted.endswith(FROM_ALICE)
    assert b"auth=pass" not in bobs_copy(database)  # a reader's copy carries no vouching


def test_a_strangers_list_post_carries_checks_verdict_not_a_vouch(database: Database, remote_zone: Zone) -> None:
    accept(database, from_stranger(FROM_CAROL, CAROLS_SERVER, Accepted(LIST, None, (LIST, "post"))))
    (verdict,) = ours(list_copy(database))
    assert b"auth=pass" not in verdict
    assert b" spf=pass " in verdict
