"""An allow rule trusts only a sender our checks vouch for (mail/filters/senders.py, issue 23): the envelope
sender whose domain passed SPF, the From address whose domain passed DMARC or has an aligned DKIM pass. Read
from our own Authentication-Results line, and end to end through the pipeline with SPF, DMARC and DKIM looked
up in a zone on loopback and an engine that refuses everything it is asked about."""

from __future__ import annotations

import asyncio

import pytest

from jitaku.config import FiltersSettings
from jitaku.mail import dkim, headers, trace
from jitaku.mail.filters import senders
from jitaku.mail.filters.scanning import Scanning
from jitaku.mail.filters.verdict import Envelope, Verdict
from jitaku.mail.pipeline import Arrival, Pipeline, Rejected
from jitaku.mail.policy import Accepted
from jitaku.store import Database, filters, mailstore
from tests.peers import Zone
from tests.test_pipeline_checks import (  # noqa: F401 (fixtures)
    ALICE,
    BOB,
    CAROL,
    CAROLS_SERVER,
    FROM_ALICE,
    FROM_CAROL,
    HOSTNAME,
    carols_key,
    database,
    remote_zone,
)

AR = b"Authentication-Results: mx.example.test; "


def vouched(envelope: str, from_field: str, results: bytes) -> dict[str, bool]:
    found = senders.of(envelope, f"From: {from_field}\r\nSubject: x\r\n\r\nhi\r\n".encode(), results + b"\r\n")
    return {name: found.vouched(name) for name in found.names}


def test_spf_vouches_for_the_envelope_sender_and_dmarc_or_aligned_dkim_for_the_from_address() -> None:
    spf = AR + b'spf=pass reason="sender SPF authorized" smtp.mailfrom=bank.example; dkim=none; dmarc=none'
    assert vouched("friend@bank.example", "news@other.example", spf) == {
        "friend@bank.example": True,
        "news@other.example": False,
    }
    dmarc = AR + b"spf=fail smtp.mailfrom=bounce.example; dkim=none; dmarc=pass header.from=bank.example"
    assert vouched("x@bounce.example", "Friend <Friend@Bank.example>", dmarc) == {
        "x@bounce.example": False,
        "friend@bank.example": True,
    }
    aligned = AR + b"spf=none smtp.mailfrom=x.example; dkim=pass header.d=mail.bank.example; dmarc=none"
    assert vouched("x@x.example", "friend@bank.example", aligned) == {"x@x.example": False, "friend@bank.example": True}
    elsewhere = AR + b"spf=none smtp.mailfrom=x.example; dkim=pass header.d=esp.example; dmarc=none"
    assert vouched("x@x.example", "friend@bank.example", elsewhere)["friend@bank.example"] is False


def test_nothing_is_vouched_for_by_a_failure_a_stranger_s_quoted_words_or_no_results() -> None:
    failed = (
        AR
        + b"spf=softfail smtp.mailfrom=bank.example; dkim=fail header.d=bank.example; dmarc=fail header.from=bank.example"
    )
    assert vouched("friend@bank.example", "friend@bank.example", failed) == {"friend@bank.example": False}
    # "dmarc=pass" inside a quoted local part and a reason is a stranger's text, not a result
    quoted = (
        AR + b'spf=fail reason="x; dmarc=pass header.from=bank.example"'
        b' smtp.mailfrom="a;dmarc=pass header.from=bank.example"@bank.example; dkim=none; dmarc=none'
    )
    assert vouched("friend@bank.example", "friend@bank.example", quoted) == {"friend@bank.example": False}
    assert vouched("friend@bank.example", "friend@bank.example", b"") == {"friend@bank.example": False}
    two = senders.of("", b"From: a@bank.example, b@bank.example\r\n\r\n", AR + b"dmarc=pass header.from=bank.example")
    assert two.names == ()  # the null sender, and a From of two addresses names nobody


class Refuses:
    """An engine that answers "reject" to everything, as rspamd does for GTUBE."""

    name = "rspamd"

    async def scan(self, message: bytes, envelope: Envelope) -> Verdict:
        return Verdict("rspamd", score=0.0, action="reject", symbols=("GTUBE",), reason="Gtube pattern")

    async def close(self) -> None:
        return None


def delivered(store: Database, client_ip: str, data: bytes = FROM_CAROL) -> bool:
    """Whether Carol's message from CLIENT_IP reaches Bob (True) or is refused (False)."""
    return accepted(
        store, Arrival(CAROL, (Accepted(BOB, BOB),), data, trace.Session(client_ip, "mx.remote.test", False, None))
    )


def accepted(store: Database, arrival: Arrival) -> bool:
    settings = FiltersSettings(reject_score=15, junk_score=5)
    scanning = Scanning(settings, [Refuses()])
    pipeline = Pipeline(HOSTNAME, store, dkim.Signer([]), lambda: None, lambda: None, settings, scanning)
    try:
        asyncio.run(asyncio.wait_for(pipeline.accept(arrival), timeout=30))
    except Rejected:
        return False
    return True


def test_an_allowed_sender_skips_the_scores_only_when_spf_or_dkim_vouches_for_it(
    database: Database,  # noqa: F811
    remote_zone: Zone,  # noqa: F811
    carols_key: dkim.DkimKey,  # noqa: F811
) -> None:
    with database.transaction() as connection:
        filters.add(connection, "user", BOB, "allow", CAROL)
    assert delivered(database, CAROLS_SERVER)  # SPF passes for remote.test from Carol's server
    assert not delivered(database, "198.51.100.9")  # anyone else writing MAIL FROM:<carol@remote.test>
    signed = dkim.Signer([carols_key]).sign(FROM_CAROL, "remote.test")
    assert delivered(database, "198.51.100.9", signed)  # from elsewhere, but signed by remote.test (DMARC passes)
    assert len(database.read_now(lambda c: mailstore.list_messages(c, BOB))) == 2


def test_a_long_header_s_from_field_is_read_off_the_event_loop_and_a_submission_s_not_at_all(
    database: Database,  # noqa: F811
    remote_zone: Zone,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The stdlib parser takes ~1 ms per 16 KiB of header, and a header may reach max_header_size (256 KiB)."""
    with database.transaction() as connection:
        filters.add(connection, "user", BOB, "allow", CAROL)
    read: list[bool] = []  # for each reading of a From field, whether it held the event loop
    from_addresses = headers.from_addresses

    def recorded(message: bytes) -> list[str]:
        try:
            asyncio.get_running_loop()
            read.append(True)
        except RuntimeError:
            read.append(False)
        return from_addresses(message)

    monkeypatch.setattr(headers, "from_addresses", recorded)
    assert delivered(database, CAROLS_SERVER)  # allowed: SPF vouches for carol@remote.test
    assert read == [True]  # a header of a few lines: on the loop, cheaper than a thread
    filler = b"".join(b"X-Filler-%d: %s\r\n" % (n, b"x" * 70) for n in range(2000))
    assert delivered(database, CAROLS_SERVER, filler + FROM_CAROL)
    assert read == [True, False]
    session = trace.Session("192.0.2.50", "laptop", True, ALICE)
    assert accepted(database, Arrival(ALICE, (Accepted(BOB, BOB),), filler + FROM_ALICE, session))
    assert read == [True, False]  # a user's own submission: no list of theirs applies to it
    assert len(database.read_now(lambda c: mailstore.list_messages(c, BOB))) == 3
