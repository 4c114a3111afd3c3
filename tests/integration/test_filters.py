"""The filters at SMTP time, end to end (issue 23): a real `jitaku serve` with a real clamd, rspamd (with Redis)
and spamd on loopback, mail sent with swaks as a stranger's server sends it, and what each recipient's mailbox
holds read from the store. GTUBE and EICAR are refused before the 250 and nothing is stored; a plain message and
an ISO-2022-JP one reach INBOX with the engines' headers; the lists decide before the scores; one DATA reply
for several recipients; an engine that is down follows on_error; submission is scanned for viruses only. What
jitaku tells rspamd of the envelope is read by a fake rspamd that keeps each request (rspamd's own log shows the
HELO only through rules whose DNS lookups may or may not finish)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.header import Header
from pathlib import Path
from typing import Any

import pytest

from jitaku.mail.policy import DIRECTORY_CHECK_SECONDS
from jitaku.store import mailstore
from tests.integration.engines.clamav import EICAR, EICAR_SIGNATURE, Clamd, clamd  # noqa: F401 (a fixture)
from tests.integration.engines.rspamd import Rspamd, rspamd_engine  # noqa: F401 (a fixture)
from tests.integration.engines.spamd import Spamd, spamd  # noqa: F401 (a fixture)
from tests.integration.harness import Jitaku
from tests.integration.test_engine_rspamd import Fake, Request, fake, http  # noqa: F401 (a fixture)
from tests.peers import Zone, free_port, rejection, swaks, wait_until

GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
ALICE, BOB = "alice@example.test", "bob@example.test"
STRANGER = "someone@remote.example"
AUTH = ("--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", "secret-password")  # the harness's password


def send(server: Jitaku, *args: str, to: tuple[str, ...] = (ALICE,), sender: str = STRANGER) -> Any:
    return swaks("--server", f"127.0.0.1:{server.smtp_port}", "--from", sender, "--to", ",".join(to), *args)


def rule(server: Jitaku, *args: str) -> None:
    """`jitaku filter ARGS` while SERVER runs, and the second its MX may take to read the change (it looks at the
    version of its kept rules once a second, as at its users')."""
    server.cli("filter", *args)
    time.sleep(DIRECTORY_CHECK_SECONDS)


def folder(server: Jitaku, address: str, name: str = "INBOX") -> list[bytes]:
    return [m.body for m in server.read(lambda s: mailstore.list_messages(s, address, name))]


def engines_on(clamd: Clamd, rspamd: Rspamd, spamd: Spamd, timeout: float) -> dict[str, Any]:  # noqa: F811
    return {
        "junk_score": 5.0,
        "reject_score": 15.0,
        "timeout": timeout,
        "clamav": {"address": clamd.address},
        "rspamd": {"url": rspamd.url, "controller_url": rspamd.controller_url},
        "spamassassin": {"address": f"{spamd.host}:{spamd.port}"},
    }


def start_filtered(jitaku_factory: Any, dns_zone: tuple[Zone, int], filters: dict[str, Any], **settings: Any) -> Jitaku:
    """A server with FILTERS (and any other SETTINGS sections), its DNS a zone on loopback where the stranger's
    remote.example publishes SPF for 127.0.0.1, where swaks sends from (an allow rule trusts a sender SPF
    vouches for)."""
    zone, dns_port = dns_zone
    zone.add('remote.example. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"')
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["filters"] = filters
    server.settings.update(settings)
    server.write_config()
    server.init(ALICE, BOB)
    server.start()
    return server


@pytest.fixture
def filtered(
    jitaku_factory: Any,
    dns_zone: tuple[Zone, int],
    clamd: Clamd,  # noqa: F811
    rspamd_engine: Rspamd,  # noqa: F811
    spamd: Spamd,  # noqa: F811
) -> Iterator[Jitaku]:
    """A server with the three engines on."""
    yield start_filtered(jitaku_factory, dns_zone, engines_on(clamd, rspamd_engine, spamd, timeout=10))


def attached(directory: Path) -> tuple[str, ...]:
    """swaks's arguments for a message with the EICAR test file attached, as a mail program sends a file."""
    file = directory / "eicar.com"
    file.write_bytes(EICAR)
    return ("--body", "see the file", "--attach-type", "application/octet-stream", "--attach", f"@{file}")


def test_gtube_and_eicar_are_refused_before_the_250_and_nothing_is_stored(filtered: Jitaku, tmp_path: Path) -> None:
    gtube = send(filtered, "--header", "Subject: test", "--body", GTUBE)
    assert gtube.returncode != 0 and rejection(gtube.stdout).startswith("550 5.7.1"), gtube.stdout
    eicar = send(filtered, "--header", "Subject: test", *attached(tmp_path))
    said = rejection(eicar.stdout)
    assert said.startswith("554 5.7.1") and EICAR_SIGNATURE in said, eicar.stdout
    assert folder(filtered, ALICE) == [] and folder(filtered, ALICE, "Junk") == []


def test_plain_and_japanese_mail_reach_inbox_with_the_engines_headers(filtered: Jitaku) -> None:
    subject = Header("会議のお知らせ", "iso-2022-jp").encode()
    for body, extra in (
        ("Hello Alice, lunch on Friday?", ()),
        ("来週の会議は自宅サーバーの前で。", ("--header", "Content-Type: text/plain; charset=UTF-8")),
    ):
        result = send(filtered, "--header", f"Subject: {subject}", *extra, "--body", body)
        assert result.returncode == 0, result.stdout
    forged = send(filtered, "--header", "X-Spam-Status: No, trust me", "--header", "Subject: hi", "--body", "hello")
    assert forged.returncode == 0, forged.stdout
    stored = folder(filtered, ALICE)
    assert len(stored) == 3 and folder(filtered, ALICE, "Junk") == []
    for message in stored:
        head = message.split(b"\r\n\r\n", 1)[0]
        assert b"X-Spam-Status: No\r\n" in head and b"X-Spam-Score: " in head, head
        assert b"X-Spam-Symbols: " in head and b"rspamd=" in head
        assert head.count(b"X-Spam-Status:") == 1 and b"trust me" not in head  # only ours


def test_the_lists_decide_before_the_scores_and_one_reply_serves_every_recipient(filtered: Jitaku) -> None:
    filtered.cli("filter", "block", "blocked.example")
    blocked = send(filtered, "--body", "hi", sender="x@blocked.example")
    assert rejection(blocked.stdout) == "550 5.7.1 Message refused: sender blocked", blocked.stdout
    rule(filtered, "allow", "--user", BOB, STRANGER)
    both = send(filtered, "--header", "Subject: test", "--body", GTUBE, to=(ALICE, BOB))
    assert both.returncode == 0, both.stdout  # Bob allows the sender: the message is taken, Alice's copy junked
    assert len(folder(filtered, ALICE, "Junk")) == 1 and folder(filtered, ALICE) == []
    assert len(folder(filtered, BOB)) == 1 and folder(filtered, BOB, "Junk") == []
    # each copy says what put it where: our filter for Alice's, Bob's rule for his (Thunderbird's automatic
    # NonJunk on a Yes in INBOX would teach the engines this spam as ham)
    assert folder(filtered, ALICE, "Junk")[0].startswith(
        b"Return-Path: <someone@remote.example>\r\nX-Spam-Status: Yes\r\n"
    )
    (bobs,) = folder(filtered, BOB)
    assert bobs.startswith(b"Return-Path: <someone@remote.example>\r\nX-Spam-Status: No (sender allowed)\r\n")
    assert bobs.split(b"\r\n\r\n")[0].count(b"X-Spam-Status") == 1


def test_an_allowed_sender_skips_the_scores_only_when_spf_vouches_for_it(
    filtered: Jitaku, dns_zone: tuple[Zone, int]
) -> None:
    zone, _ = dns_zone
    zone.add('bank.example. 300 IN TXT "v=spf1 ip4:192.0.2.1 -all"')  # its mail comes from elsewhere
    for allowed in ("friend@bank.example", "pal@nospf.example", STRANGER):
        filtered.cli("filter", "allow", allowed)
    for forged in ("friend@bank.example", "pal@nospf.example"):  # SPF fail, SPF none
        refused = send(filtered, "--header", f"From: <{forged}>", "--body", GTUBE, sender=forged)
        assert rejection(refused.stdout).startswith("550 5.7.1 Message refused as spam"), refused.stdout
    genuine = send(filtered, "--header", f"From: <{STRANGER}>", "--header", "Subject: test", "--body", GTUBE)
    assert genuine.returncode == 0, genuine.stdout  # SPF passes for remote.example from 127.0.0.1
    (kept,) = folder(filtered, ALICE)
    assert GTUBE.encode() in kept and folder(filtered, ALICE, "Junk") == []


def test_an_engine_that_is_down_follows_on_error(jitaku_factory: Any, clamd: Clamd) -> None:  # noqa: F811
    server: Jitaku = jitaku_factory()
    dead = free_port()
    server.settings["filters"] = {
        "timeout": 5,
        "clamav": {"address": clamd.address},
        "spamassassin": {"address": f"127.0.0.1:{dead}"},
    }
    server.write_config()
    server.init(ALICE)
    server.start()
    accepted = send(server, "--body", "hello")
    assert accepted.returncode == 0, accepted.stdout
    (message,) = folder(server, ALICE)
    assert b"X-Spam-Status: Unchecked (spamassassin unavailable)\r\n" in message
    assert "filter_failed" in server.log() and "spamassassin" in server.log()
    server.stop()
    server.settings["filters"]["on_error"] = "tempfail"
    server.write_config()
    server.start()
    later = send(server, "--body", "hello")
    assert rejection(later.stdout).startswith("451 4.7.1 Message not checked (spamassassin unavailable)"), later.stdout
    assert len(folder(server, ALICE)) == 1


def test_a_submissions_copy_that_leaves_carries_none_of_our_filter_headers(
    jitaku_factory: Any, dns_zone: tuple[Zone, int], sink_factory: Any
) -> None:
    zone, dns_port = dns_zone
    sink = sink_factory()
    zone.add("remote.test. 300 IN MX 10 mx.remote.test.\nmx.remote.test. 300 IN A 127.0.0.1")
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["delivery"] = {"port": sink.port}
    server.settings["filters"] = {"timeout": 5, "clamav": {"address": f"127.0.0.1:{free_port()}"}}  # clamd down
    server.write_config()
    server.init(ALICE, BOB)
    server.start()
    to = ("--to", f"{BOB},dave@remote.test", "--header", f"From: Alice <{ALICE}>", "--header", "Subject: lunch")
    sent = swaks("--server", f"127.0.0.1:{server.submission_port}", *AUTH, "--from", ALICE, *to, "--body", "Friday?")
    assert sent.returncode == 0, sent.stdout
    (kept,) = folder(server, BOB)
    assert b"X-Spam-Status: Unchecked (clamav unavailable)\r\n" in kept
    (relayed,) = wait_until(sink.messages)
    assert b"Subject: lunch" in relayed and b"X-Spam-" not in relayed and b"DKIM-Signature:" in relayed


def test_submission_is_scanned_for_viruses_only(filtered: Jitaku, tmp_path: Path) -> None:
    def submit(*content: str) -> Any:
        server = f"127.0.0.1:{filtered.submission_port}"
        return swaks("--server", server, *AUTH, "--from", ALICE, "--to", BOB, "--header", "Subject: t", *content)

    assert submit("--body", GTUBE).returncode == 0  # the user's own words: not scored
    virus = submit(*attached(tmp_path))
    assert rejection(virus.stdout).startswith("554 5.7.1"), virus.stdout


def test_rspamd_is_told_the_envelope_helo_and_queue_id_of_what_is_stored(
    jitaku_factory: Any,
    fake: Fake,  # noqa: F811
    dns_zone: tuple[Zone, int],
) -> None:
    seen: list[Request] = []
    answer = b'{"score": 0.5, "required_score": 15, "action": "no action", "symbols": {"R_ONE": {"score": 0.5}}}'
    url = fake(http("200 OK", answer), seen)
    zone, port = dns_zone
    name = "mx-7.remote.example"  # the client's confirmed name: its PTR, and an A record that leads back
    zone.add(f"1.0.0.127.in-addr.arpa. 60 IN PTR {name}.")
    zone.add(f"{name}. 60 IN A 127.0.0.1")
    server: Jitaku = jitaku_factory(port)
    server.settings["filters"] = {"timeout": 5, "rspamd": {"url": url, "controller_url": url}}
    server.write_config()
    server.init(ALICE, BOB)
    server.start()
    helo = "client-7.remote.example"
    sent = send(server, "--helo", helo, "--header", "Subject: envelope", "--body", "body-token-5f2c", to=(ALICE, BOB))
    assert sent.returncode == 0, sent.stdout
    (scan,) = [r for r in seen if r.line.startswith("POST /checkv2 ")]
    assert scan.values("IP") == ["127.0.0.1"]
    assert scan.values("Helo") == [helo]
    assert scan.values("Hostname") == [name]
    assert scan.values("From") == [STRANGER]
    assert scan.values("Rcpt") == [ALICE, BOB]
    assert scan.values("User") == []  # a stranger's mail: no authenticated user
    (stored,) = folder(server, ALICE)
    (queue_id,) = scan.values("Queue-Id")
    assert f" id {queue_id};".encode() in stored  # the id our Received field and our log give the message
    # rspamd reads the message as it is stored, under our Received and Authentication-Results fields, without the
    # X-Spam fields its verdict gives
    results, received, *_ = scan.body.split(b"\r\n", 2)
    assert results.startswith(b"Authentication-Results: mail.example.test; spf=none smtp.helo=" + helo.encode())
    assert (
        received == f"Received: from {helo} ({name} [127.0.0.1])".encode() and b"\r\n\r\nbody-token-5f2c" in scan.body
    )
    verdict = b"X-Spam-Status: No\r\nX-Spam-Score: 0.5\r\nX-Spam-Symbols: rspamd=R_ONE\r\n"
    assert stored == f"Return-Path: <{STRANGER}>\r\n".encode() + verdict + scan.body, stored[:400]

    auth = ("--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", "secret-password")  # the harness's password
    submission = f"127.0.0.1:{server.submission_port}"
    submitted = swaks("--server", submission, *auth, "--from", ALICE, "--to", BOB, "--body", "from alice")
    assert submitted.returncode == 0, submitted.stdout
    assert len(folder(server, BOB)) == 2
    assert [r for r in seen if r.line.startswith("POST /checkv2 ")] == [scan]  # our own user's mail: not scored
