"""Mailing lists end to end: posts through swaks to the MX, members' MX are Postfix smtp-sink behind a
local DNS server, signatures and ARC checked by Perl's Mail::DKIM, the one-click POST by curl."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.conftest import Jitaku, Sink, swaks, wait_until
from tests.integration.test_outbound import deliver_to_port, dkim_results, publish_dkim

ARC_VERIFIER = Path(__file__).with_name("arc_verify.pl")
SIGNER = Path(__file__).with_name("dkim_sign.pl")
LIST = "sota@example.test"
MEMBER_DOMAINS = ("members.test", "other.test")


def arc_results(message: bytes, dns_port: int) -> dict[str, str]:
    result = subprocess.run(["perl", str(ARC_VERIFIER), str(dns_port)], input=message, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.decode().splitlines())


def envelope(dump: bytes) -> tuple[str, list[str], bytes]:
    """smtp-sink's dump: its X-Mail-Args and X-Rcpt-Args lines, then the message as it arrived."""
    sender, recipients = "", []
    rest = dump
    while rest.startswith(b"X-"):
        line, _, rest = rest.partition(b"\n")
        address = line.partition(b"<")[2].partition(b">")[0].decode()
        if line.startswith(b"X-Mail-Args:"):
            sender = address
        elif line.startswith(b"X-Rcpt-Args:"):
            recipients.append(address)
    return sender, recipients, rest


class Members:
    """The members' mail servers: one smtp-sink for every member domain, found through MX records."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def copies(self) -> list[tuple[str, list[str], bytes]]:
        return [envelope(dump) for dump in self.sink.messages()]

    def copies_for(self, address: str) -> list[bytes]:
        return [message for _sender, recipients, message in self.copies() if address in recipients]


@pytest.fixture
def list_server(server: Jitaku, dns_zone, sink_factory) -> tuple[Jitaku, Members]:
    zone, _port = dns_zone
    publish_dkim(server, zone)
    for domain in MEMBER_DOMAINS:
        zone.add(f"{domain}. 300 IN MX 10 mx.{domain}.")
        zone.add(f"mx.{domain}. 300 IN A 127.0.0.1")
        zone.add(f'{domain}. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"')
    sink = sink_factory()
    deliver_to_port(server, sink.port)
    server.cli("list", "create", LIST, "--name", "SOTA Japan", "--owner", "alice@example.test")
    server.cli("list", "add", LIST, "carol@members.test", "dave@members.test", "erin@other.test", "bob@example.org")
    return server, Members(sink)


def post(server: Jitaku, sender: str, subject: str, *extra: str, to: str = LIST) -> str:
    result = swaks(
        "--server",
        f"127.0.0.1:{server.smtp_port}",
        "--from",
        sender,
        "--to",
        to,
        "--header",
        f"Subject: {subject}",
        *extra,
    )
    assert "250 2.0.0" in result.stdout, result.stdout
    return result.stdout


def test_a_post_reaches_every_member_numbered_signed_and_sealed(list_server, dns_zone) -> None:
    server, members = list_server
    post(server, "carol@members.test", "Hello", "--header", "From: Carol <carol@members.test>")
    wait_until(lambda: len(members.copies()) == 3, timeout=20)
    for sender, recipients, message in members.copies():
        assert len(recipients) == 1
        assert sender == f"sota-bounces+{recipients[0].replace('@', '=')}@example.test"
        assert "pass" in dkim_results(message, dns_zone[1])
        print(arc_results(message, dns_zone[1]))
    local = server.mailbox("bob@example.org")
    assert local
