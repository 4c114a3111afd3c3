"""Certificates by ACME from Debian's pebble, validating for real: HTTP-01 by fetching the token from jitaku's web
on port 80 at the address the tests' DNS zone gives, DNS-01 by asking challtestsrv for the TXT record that
jitaku set through a Cloudflare stand-in. Then every listener serves a chain that verifies to pebble's root."""

from __future__ import annotations

import json
import smtplib
import socket
import ssl
from pathlib import Path
from typing import Any

from tests.integration.harness import Jitaku
from tests.integration.pebble import Pebble
from tests.peers import Zone, wait_until

ADDRESS = "127.0.11.21"  # this test's own loopback address: its web takes ports 80 and 443 there
NAMES = ["mail.example.test", "mta-sts.example.test"]


def _zone(zone: Zone, names: list[str] = NAMES) -> None:
    zone.add("example.test. 1 IN SOA ns.example.test. hostmaster.example.test. 1 60 60 60 1")
    for name in names:
        zone.add(f"{name}. 1 IN A {ADDRESS}")


def _acme(server: Jitaku, pebble: Pebble, **more: Any) -> None:
    server.settings["acme"] = {
        "email": "owner@example.test",
        "directory": pebble.directory,
        "directory_ca": str(pebble.directory_ca),
        **more,
    }
    server.write_config()


def _jitaku(jitaku_factory: Any, dns_port: int, web: list[str]) -> Jitaku:
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["web"]["listen"] = ["127.0.0.1:0", *web]
    server.write_config()
    server.init("alice@example.test")
    return server


def _verified_by(roots: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(roots))
    return context


def _submission(server: Jitaku, context: ssl.SSLContext) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as smtp:
            smtp.ehlo("client.example.test")
            smtp._host = "mail.example.test"  # the name the certificate is checked against
            smtp.starttls(context=context)
        return True
    except ssl.SSLCertVerificationError:
        return False


def _https(context: ssl.SSLContext) -> bool:
    try:
        with (
            socket.create_connection((ADDRESS, 443), timeout=10) as plain,
            context.wrap_socket(plain, server_hostname="mail.example.test"),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


def _status(server: Jitaku) -> dict[str, Any]:
    return dict(json.loads(server.cli("cert", "status", "--json").stdout))


def test_http01_issues_a_certificate_that_every_listener_serves_and_renews_as_the_same_account(
    jitaku_factory, dns_zone, pebble_factory, tmp_path: Path
) -> None:
    zone, dns_port = dns_zone
    _zone(zone)
    pebble = pebble_factory(dns_port)
    server = _jitaku(jitaku_factory, dns_port, [f"{ADDRESS}:80", f"{ADDRESS}:443"])
    _acme(server, pebble)
    server.start()
    roots = tmp_path / "roots.pem"
    roots.write_text(pebble.roots())
    context = _verified_by(roots)
    assert not _https(context)  # the self-signed one, before

    renewed = server.cli("cert", "renew", check=False)
    assert renewed.returncode == 0, renewed.stderr + pebble.log()
    assert renewed.stdout.startswith("renewed: mail.example.test, mta-sts.example.test, valid until ")

    wait_until(lambda: _https(context) and _submission(server, context), timeout=10, interval=0.5)
    status = _status(server)
    assert "Pebble Intermediate" in status["issuer"] and status["names"] == NAMES
    assert status["not_after"] and status["last_error"] is None and status["last_success"]
    assert not list((server.dir / "acme" / "http-01").iterdir())  # the tokens withdrawn

    account = json.loads((server.dir / "acme" / "account.json").read_text())["url"]
    assert server.cli("cert", "renew").stdout.startswith("not due: valid until ")
    assert server.cli("cert", "renew", "--force").stdout.startswith("renewed: ")
    assert json.loads((server.dir / "acme" / "account.json").read_text())["url"] == account
    assert (server.dir / "acme" / "account.json").stat().st_mode & 0o777 == 0o600
    assert "Traceback" not in server.log()
