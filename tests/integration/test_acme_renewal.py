"""The daemon renews its certificate from ACME by itself (jitaku.acme.renewal), against Debian's pebble validating
HTTP-01 for real: pebble asks the tests' DNS zone where mail.example.test is, and fetches the token from the web
listener on 127.0.11.41 (on pebble's HTTP-01 port). Certificates that last seconds make the renewal come due within the test. Open IMAP and
SMTP sessions keep working across a renewal; a renewal that fails reaches the alert channel with its next try; a
fenced box renews nothing."""

from __future__ import annotations

import imaplib
import json
import smtplib
import time
from typing import Any

import pytest
from cryptography import x509

from jitaku.acme import state
from jitaku.acme.renewal import FIRST_LOOK
from jitaku.health.services import reading_context
from tests.integration.harness import READER, Jitaku
from tests.integration.pebble import Pebble
from tests.integration.test_health import Hook
from tests.peers import Zone, wait_until

WEB = "127.0.11.41"  # this test's own loopback address: the web on pebble's HTTP-01 port
NAME = "mail.example.test"


@pytest.fixture
def hook(stand_in: Any) -> Hook:
    return Hook(stand_in)


def acme_server(jitaku_factory: Any, dns_zone: tuple[Zone, int], pebble: Pebble, **settings: Any) -> Jitaku:
    zone, dns_port = dns_zone
    zone.add("example.test. 1 IN SOA ns.example.test. hostmaster.example.test. 1 60 60 60 1")
    zone.add(f"{NAME}. 1 IN A {WEB}")
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["web"]["listen"] += [f"{WEB}:{pebble.http_port}"]
    server.settings["acme"] = {
        "email": "postmaster@example.test",
        "directory": pebble.directory,
        "directory_ca": str(pebble.directory_ca),
        "names": [NAME],
    }
    server.settings.update(settings)
    server.write_config()
    server.init(READER)
    return server


def on_disk(server: Jitaku) -> x509.Certificate:
    return x509.load_pem_x509_certificate((server.dir / "tls" / "cert.pem").read_bytes())


def served(server: Jitaku) -> x509.Certificate:
    """What a new connection gets: the MX's certificate after STARTTLS."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.starttls(context=reading_context())
        return peer_certificate(smtp.sock)


def peer_certificate(sock: Any) -> x509.Certificate:
    der = sock.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def renewals(server: Jitaku) -> int:
    return server.log().count("event=acme_renewed")


def from_pebble(cert: x509.Certificate) -> bool:
    return cert.issuer != cert.subject and "Pebble" in cert.issuer.rfc4514_string()


def test_a_renewal_reaches_new_connections_while_open_imap_and_smtp_sessions_keep_working(
    jitaku_factory: Any, dns_zone: tuple[Zone, int], pebble_factory: Any
) -> None:
    pebble = pebble_factory(dns_zone[1], validity=45)  # due with a third left: 30 s after each issue
    server = acme_server(jitaku_factory, dns_zone, pebble)
    server.start()
    wait_until(lambda: renewals(server) >= 1, timeout=30, interval=0.5)  # the self-signed one is replaced at once
    first = on_disk(server)
    assert from_pebble(first)
    wait_until(lambda: served(server).serial_number == first.serial_number, timeout=30, interval=0.5)

    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=30)
    imap.starttls(reading_context())
    imap.login(READER, "secret-password")
    imap.select("INBOX")
    tag = imap._new_tag()  # imaplib has no IDLE: the command by hand
    imap.send(tag + b" IDLE\r\n")
    assert imap.readline().startswith(b"+ ")
    smtp = smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30)
    smtp.starttls(context=reading_context())
    assert smtp.sendmail("carol@remote.test", [READER], b"Subject: one\r\n\r\nbefore the renewal\r\n") == {}
    assert imap.readline() == b"* 1 EXISTS\r\n"

    wait_until(lambda: renewals(server) >= 2, timeout=60, interval=0.5)  # by itself, once due
    second = on_disk(server)
    assert second.serial_number != first.serial_number
    wait_until(lambda: served(server).serial_number == second.serial_number, timeout=30, interval=0.5)

    # the sessions opened before: on the old certificate still, and working
    assert peer_certificate(smtp.sock).serial_number == first.serial_number
    assert peer_certificate(imap.sock).serial_number == first.serial_number
    assert smtp.sendmail("carol@remote.test", [READER], b"Subject: two\r\n\r\nafter the renewal\r\n") == {}
    while (line := imap.readline()) == b"* 1 RECENT\r\n":
        pass
    assert line == b"* 2 EXISTS\r\n"
    imap.send(b"DONE\r\n")
    while not (line := imap.readline()).startswith(tag):
        pass
    assert line.startswith(tag + b" OK")
    imap.logout()
    smtp.quit()
    assert "Traceback" not in server.log()


def test_a_failed_renewal_is_alerted_with_its_next_try(
    jitaku_factory: Any, dns_zone: tuple[Zone, int], pebble_factory: Any, hook: Hook
) -> None:
    pebble = pebble_factory(dns_zone[1], validity=30)  # due 20 s after the issue
    server = acme_server(jitaku_factory, dns_zone, pebble, health={"interval": 1.0}, alerts={"urls": [hook.url]})
    server.start()
    wait_until(lambda: renewals(server) >= 1, timeout=30, interval=0.5)
    pebble.process.terminate()  # the CA is gone when the renewal comes due
    pebble.process.wait(timeout=10)

    _at, alert = wait_until(lambda: hook.first("its renewal failed"), timeout=60, interval=0.5)
    attempts = json.loads((server.dir / "acme" / "state.json").read_text())
    assert attempts["failures"] == 1 and attempts["next_try"] > time.time() + 500  # backs off 10 minutes
    assert alert["title"] == f"[{NAME}] critical: certs"  # it expires within seconds
    # 10 s from due to the end: on a loaded box the failed try, a health round and the alert may take longer
    assert any(f"the certificate for {NAME} {word} on " in alert["message"] for word in ("expires", "expired"))
    assert f"; the next try is at {state.moment(attempts['next_try'])}." in alert["message"]
    assert "could not load" not in json.dumps(hook.received)  # the new certificate, before the listeners load it
    [failed] = [line for line in server.log().splitlines() if "event=acme_failed" in line]  # once for one failure
    assert f'next_try="{state.moment(attempts["next_try"])}"' in failed and "Traceback" not in server.log()


def test_a_fenced_box_renews_nothing(jitaku_factory: Any, dns_zone: tuple[Zone, int], pebble_factory: Any) -> None:
    """Only a primary renews: a fenced box (like a standby) serves the certificate its primary mirrors to it."""
    server = acme_server(jitaku_factory, dns_zone, pebble_factory(dns_zone[1]))
    (server.dir / "ha").mkdir(mode=0o700, exist_ok=True)
    fenced = server.dir / "ha" / "fenced"
    fenced.write_text(json.dumps({"purpose": "failover", "by": "http://192.0.2.1:8080", "at": 1.0}))
    server.start()
    wait_until(lambda: "mode=fenced" in server.log(), timeout=30)
    time.sleep(2 * FIRST_LOOK)  # twice the first look's delay after the start
    assert "event=acme_" not in server.log()
    assert not from_pebble(on_disk(server))

    fenced.unlink()
    server.restart()
    wait_until(lambda: renewals(server) >= 1, timeout=30, interval=0.5)  # the same box as a primary renews
    assert from_pebble(on_disk(server))
