"""The queue, certs, services and buddy checks without a daemon: a backlog, a certificate written here,
and listeners on loopback that greet wrongly or not at all. Each says what it finds in English and in
Japanese, with the same numbers, names and addresses."""

from __future__ import annotations

import asyncio
import datetime
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from jitaku.acme.state import Attempts, moment
from jitaku.config import BuddySettings, CertsCheckSettings, QueueCheckSettings, parse
from jitaku.health import buddy, certs, queue, services
from jitaku.health.result import State
from jitaku.store.queue import Backlog
from tests.peers import free_port

NOW = 1_800_000_000.0  # 2027-01-15


def test_the_queue_says_how_much_waits_and_how_long() -> None:
    empty = queue.check(QueueCheckSettings(), Backlog(0, None, None), NOW)
    assert (empty.state, empty.ja) == (State.OK, "送信キューは空です。")
    stuck = queue.check(QueueCheckSettings(), Backlog(3, NOW - 3 * 86400, "mx.example.net: 421 try later"), NOW)
    assert stuck.state == State.CRITICAL
    assert stuck.sentence == "3 messages queued, the oldest for 72 hours (mx.example.net: 421 try later)."
    assert (
        stuck.ja == "送信待ちのメールが 3 通あり、最も古いものは 72 時間待っています（mx.example.net: 421 try later）。"
    )
    young = queue.check(QueueCheckSettings(), Backlog(1, NOW - 300, None), NOW)
    assert (young.state, young.ja) == (State.OK, "送信待ちのメールが 1 通あり、最も古いものは 5 分待っています。")
    one = queue.check(QueueCheckSettings(), Backlog(1, NOW - 60, None), NOW)
    assert one.sentence == "1 message queued, the oldest for 1 minute."  # not "1 minutes" (issue 17)


def certificate(path: Path, ends: float, key_path: Path | None = None, issuer: str = "mail.example.test") -> Path:
    """A certificate for mail.example.test until ENDS at PATH (and its key at KEY_PATH), self-signed unless ISSUER
    names a CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    if key_path is not None:
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        key_path.write_bytes(pem)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime.fromtimestamp(NOW - 86400 * 90, datetime.UTC))
        .not_valid_after(datetime.datetime.fromtimestamp(ends, datetime.UTC))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("mail.example.test")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_the_certificate_says_when_it_ends(tmp_path: Path) -> None:
    soon = certs.check(CertsCheckSettings(), certificate(tmp_path / "soon.pem", NOW + 10 * 86400), NOW)
    assert soon is not None and soon.state == State.WARNING
    assert soon.sentence == "the certificate for mail.example.test expires on 2027-01-25, in 10 days."
    assert soon.ja == "mail.example.test の証明書は 2027-01-25 に期限が切れます（あと 10 日）。"
    tomorrow = certs.check(CertsCheckSettings(), certificate(tmp_path / "tomorrow.pem", NOW + 86400), NOW)
    assert tomorrow is not None and tomorrow.sentence.endswith(", in 1 day.")
    gone = certs.check(CertsCheckSettings(), certificate(tmp_path / "gone.pem", NOW - 86400), NOW)
    assert gone is not None and gone.state == State.CRITICAL
    assert gone.ja == "mail.example.test の証明書は 2027-01-14 に期限が切れました。"
    fine = certs.check(CertsCheckSettings(), certificate(tmp_path / "fine.pem", NOW + 60 * 86400), NOW)
    assert fine is not None and fine.ja == "mail.example.test の証明書は 2027-03-16 まで有効です。"
    renewed = certificate(tmp_path / "renewed.pem", NOW + 90 * 86400)
    serving = x509.load_pem_x509_certificate((tmp_path / "soon.pem").read_bytes())
    stale = certs.check(CertsCheckSettings(), renewed, NOW, serving)  # renewed on disk, not yet loaded
    assert stale is not None and stale.state == State.WARNING
    assert stale.sentence == (
        f"the certificate for mail.example.test expires on 2027-01-25, in 10 days, but it is not {renewed} "
        "(valid until 2027-04-15), which jitaku could not load: tls_reload_failed in its log says why."
    )
    assert certs.check(CertsCheckSettings(), renewed, NOW, x509.load_pem_x509_certificate(renewed.read_bytes())) == (
        certs.check(CertsCheckSettings(), renewed, NOW)
    )
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk = certs.check(CertsCheckSettings(), tmp_path / "junk.pem", NOW)
    assert junk is not None and junk.state == State.CRITICAL
    assert junk.ja.startswith(f"証明書 {tmp_path / 'junk.pem'} を読めません: ")


FAILED = Attempts(last_try=NOW - 60, last_error="the CA answered 500.", failures=1, next_try=NOW + 540)
ACME = certs.Renewals(("mail.example.test", "www.example.test"), FAILED)


def test_a_certificate_written_a_moment_ago_is_not_said_to_fail_to_load(tmp_path: Path) -> None:
    """A renewal just wrote it: the listeners load it within seconds (tls_reload), no alert meanwhile."""
    now = time.time()
    old = certificate(tmp_path / "old.pem", now + 10 * 86400)
    renewed = certificate(tmp_path / "renewed.pem", now + 90 * 86400)
    serving = x509.load_pem_x509_certificate(old.read_bytes())
    fresh = certs.check(CertsCheckSettings(), renewed, now, serving)
    assert fresh is not None and (fresh.state, fresh.sentence) == (
        State.OK,
        certs.check(CertsCheckSettings(), renewed, now).sentence,
    )
    later = now + certs.LOADED_WITHIN + 1  # still not served: now it did not load
    stale = certs.check(CertsCheckSettings(), renewed, later, serving)
    assert stale is not None and stale.state == State.WARNING and "which jitaku could not load" in stale.sentence


def test_a_failed_renewal_says_when_the_next_try_is(tmp_path: Path) -> None:
    at = moment(NOW + 540)
    fine = certificate(tmp_path / "fine.pem", NOW + 25 * 86400, issuer="Pebble Intermediate CA")
    failed = certs.check(CertsCheckSettings(), fine, NOW, renewals=ACME)
    assert failed is not None and failed.state == State.WARNING  # 25 days left: no expiry warning without ACME
    assert failed.sentence == (
        "the certificate for mail.example.test expires on 2027-02-09, in 25 days; its renewal failed: the CA "
        f"answered 500; the next try is at {at}."
    )
    assert failed.ja == (
        "mail.example.test の証明書は 2027-02-09 に期限が切れます（あと 25 日）。更新に失敗しました: the CA answered "
        f"500。次の試行は {at} です。"
    )
    near = certificate(tmp_path / "near.pem", NOW + 3 * 86400, issuer="Pebble Intermediate CA")
    critical = certs.check(CertsCheckSettings(), near, NOW, renewals=ACME)
    assert critical is not None and critical.state == State.CRITICAL
    assert critical.sentence.endswith(f", in 3 days; its renewal failed: the CA answered 500; the next try is at {at}.")
    gone = certificate(tmp_path / "gone.pem", NOW - 86400, issuer="Pebble Intermediate CA")
    expired = certs.check(CertsCheckSettings(), gone, NOW, renewals=ACME)
    assert expired is not None and expired.state == State.CRITICAL
    assert expired.sentence.startswith("the certificate for mail.example.test expired on 2027-01-14; its renewal ")


def test_no_certificate_from_acme_yet_says_the_self_signed_one_is_served(tmp_path: Path) -> None:
    at = moment(NOW + 540)
    own = certificate(tmp_path / "own.pem", NOW + 3650 * 86400)  # init's, self-signed
    none_yet = certs.check(CertsCheckSettings(), own, NOW, renewals=ACME)
    assert none_yet is not None and none_yet.state == State.WARNING
    assert none_yet.sentence == (
        "no certificate from ACME yet for mail.example.test, www.example.test: the CA answered 500; the next try is "
        f"at {at}; the self-signed one is served meanwhile."
    )
    assert none_yet.ja == (
        "mail.example.test, www.example.test の ACME の証明書はまだありません: the CA answered 500。次の試行は "
        f"{at} です。それまでは自己署名の証明書を使います。"
    )
    first = certs.Renewals(ACME.names, Attempts())  # the daemon has not tried yet: as without ACME
    assert certs.check(CertsCheckSettings(), own, NOW, renewals=first) == certs.check(CertsCheckSettings(), own, NOW)


def test_a_healthy_renewal_says_when_it_was_renewed(tmp_path: Path) -> None:
    issued = certificate(tmp_path / "cert.pem", NOW + 89 * 86400, issuer="Pebble Intermediate CA")
    renewed = certs.Renewals(ACME.names, FAILED.succeeded(NOW - 86400))
    fine = certs.check(CertsCheckSettings(), issued, NOW, renewals=renewed)
    assert fine is not None and fine.state == State.OK
    assert fine.sentence == "the certificate for mail.example.test is valid until 2027-04-14, renewed on 2027-01-14."
    assert fine.ja == "mail.example.test の証明書は 2027-04-14 まで有効です（2027-01-14 に更新）。"


def test_a_failed_renewal_no_longer_alerts_once_the_certificate_is_not_due(tmp_path: Path) -> None:
    """A forced `jitaku cert renew` that failed, or a certificate installed by hand after a failure: the daemon tries
    again only when the certificate comes due, so the alert and its "next try" would stand for weeks, untrue."""
    mine = certs.Renewals(("mail.example.test",), FAILED)
    good = certificate(tmp_path / "good.pem", NOW + 60 * 86400, issuer="Pebble Intermediate CA")
    judged = certs.check(CertsCheckSettings(), good, NOW, renewals=mine)
    assert judged is not None and judged.state == State.OK
    assert judged.sentence == "the certificate for mail.example.test is valid until 2027-03-16."
    due = certificate(tmp_path / "due.pem", NOW + 20 * 86400, issuer="Pebble Intermediate CA")  # renew_days: 30
    still = certs.check(CertsCheckSettings(), due, NOW, renewals=mine)
    assert still is not None and still.state == State.WARNING and "its renewal failed" in still.sentence
    by_hand = certs.Renewals(mine.names, replace(FAILED, last_try=NOW - 100 * 86400))  # before its not-before
    assert certs.check(CertsCheckSettings(), due, NOW, renewals=by_hand) == certs.check(CertsCheckSettings(), due, NOW)


def test_every_date_and_time_in_the_sentences_is_local(tmp_path: Path) -> None:
    """A certificate ending 20:00 UTC is gone at 05:00 the next day in Tokyo: the date said is that day, as the
    next try's time is local."""
    ends = datetime.datetime(2027, 4, 14, 20, 0, tzinfo=datetime.UTC).timestamp()
    issued = certificate(tmp_path / "cert.pem", ends, issuer="Pebble Intermediate CA")
    zone = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"
    time.tzset()
    try:
        renewed = certs.Renewals(ACME.names[:1], FAILED.succeeded(NOW - 86400))
        fine = certs.check(CertsCheckSettings(), issued, NOW, renewals=renewed)
        failed = certs.check(CertsCheckSettings(), issued, ends - 86400, renewals=ACME)
        at = moment(FAILED.next_try)
    finally:
        if zone is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = zone
        time.tzset()
    assert fine is not None and fine.sentence.endswith("is valid until 2027-04-15, renewed on 2027-01-14.")
    assert failed is not None and failed.sentence.startswith(
        "the certificate for mail.example.test expires on 2027-04-15"
    )
    assert at.endswith(" JST")


@asynccontextmanager
async def listening(greeting: bytes) -> AsyncIterator[int]:
    """A listener on loopback that says GREETING to whoever connects; its port."""

    async def greet(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


def test_services_say_which_listener_does_not_answer_and_why() -> None:
    async def look(smtp: int, submission: int, pop3: int, web: int) -> services.Result:
        text = (
            f'domains = ["example.test"]\n[smtp]\nlisten = ["127.0.0.1:{smtp}"]\n'
            f'[submission]\nlisten = ["127.0.0.1:{submission}"]\n[pop3]\nlisten = ["127.0.0.1:{pop3}"]\n'
            "[imap]\nlisten = []\n"
            f'[web]\nlisten = ["127.0.0.1:{web}"]\n'
        )
        return await services.check(parse(text, Path("jitaku.toml")))

    async def scene() -> tuple[services.Result, services.Result]:
        async with (
            listening(b"554 not now\r\n") as refusing,
            listening(b"220 hello\r\n") as greeting,
            listening(b"+OK ready\r\n") as pop3,
        ):
            closed = free_port()
            return await look(refusing, closed, greeting, greeting), await look(greeting, greeting, pop3, greeting)

    broken, fine = asyncio.run(scene())
    assert broken.state == State.CRITICAL and broken.metrics["broken"] == 3.0
    assert broken.sentence.startswith("not answering: smtp on 127.0.0.1:")
    assert broken.ja.startswith("応答しない待ち受けがあります: 127.0.0.1:")
    assert "の smtp: 最初の応答が 220 ではなく b'554 not now\\r\\n' です、" in broken.ja
    assert "の submission: 接続できません（ConnectionRefusedError）、" in broken.ja
    assert "の pop3: 最初の応答が +OK ではなく b'220 hello\\r\\n' です。" in broken.ja
    assert (fine.state, fine.ja) == (State.OK, "待ち受け 4 個すべてが応答しています。")


def test_a_buddy_that_does_not_answer_is_said_in_japanese_too() -> None:
    theirs = f"127.0.0.1:{free_port()}"
    settings = BuddySettings(url=f"http://127.0.0.1:{free_port()}", token="t" * 16, theirs=(theirs,), ours=(theirs,))
    watched = asyncio.run(buddy.watch(settings))
    assert watched is not None and watched.state == State.CRITICAL
    assert watched.sentence == (
        f"our buddy 127.0.0.1: {theirs} does not answer (no connection (ConnectionRefusedError)); "
        "its jitaku does not answer (ConnectError)."
    )
    assert watched.ja == (
        f"相棒 127.0.0.1: {theirs}: 接続できません（ConnectionRefusedError）、先方の jitaku が応答しません（ConnectError）。"
    )
    seen = asyncio.run(buddy.seen_from_buddy(settings))
    assert seen is not None and seen.state == State.WARNING
    assert seen.ja == "相棒 127.0.0.1 に、外からこのサーバーがどう見えるかを問い合わせられません: ConnectError。"
