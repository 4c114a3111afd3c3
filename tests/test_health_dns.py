"""The dns check: our host name and MX as a resolver answers them (a dnslib server stands in for the
public resolvers), against the address we are at."""

from __future__ import annotations

import asyncio
from pathlib import Path

from jitaku.config import parse
from jitaku.health import dns
from jitaku.health.result import State
from tests.peers import free_port

OURS = {"A": "203.0.113.7"}


def settings(port: int) -> object:
    text = (
        f'hostname = "mail.example.test"\ndomains = ["example.test"]\n[health.dns]\nresolvers = ["127.0.0.1:{port}"]\n'
    )
    return parse(text, Path("jitaku.toml"))


def run(port: int, ours: dict[str, str] = OURS) -> dns.Result:
    result = asyncio.run(dns.check(settings(port), ours))  # type: ignore[arg-type]
    assert result is not None
    return result


def test_right_records_are_ok_and_an_old_address_is_critical(dns_zone) -> None:
    zone, port = dns_zone
    zone.add("example.test. 60 IN MX 10 mail.example.test.")
    zone.add("mail.example.test. 60 IN A 203.0.113.7")
    right = run(port)
    assert right.state == State.OK
    assert right.sentence == "public resolvers lead mail.example.test to us (A 203.0.113.7)."
    assert right.ja == "公開リゾルバで mail.example.test はこのサーバー（A 203.0.113.7）を指しています。"
    zone.records = [r for r in zone.records if str(r.rname) != "mail.example.test."]
    zone.add("mail.example.test. 60 IN A 192.0.2.1")  # DNS kept the address from before the power cut
    old = run(port)
    assert old.state == State.CRITICAL
    assert old.sentence == "127.0.0.1 answers A mail.example.test = 192.0.2.1, not 203.0.113.7."
    assert old.ja == "127.0.0.1 の答えは A mail.example.test = 192.0.2.1 ですが、正しくは 203.0.113.7 です。"


def test_an_mx_that_does_not_lead_to_us_is_critical(dns_zone) -> None:
    zone, port = dns_zone
    zone.add("example.test. 60 IN MX 10 mx.elsewhere.test.")
    zone.add("mail.example.test. 60 IN A 203.0.113.7")
    result = run(port)
    assert result.state == State.CRITICAL
    assert result.sentence == "127.0.0.1 answers MX example.test = mx.elsewhere.test, which does not lead to us."
    assert result.ja == "127.0.0.1 の答えは MX example.test = mx.elsewhere.test で、このサーバーにつながりません。"
    zone.add("mx.elsewhere.test. 60 IN A 203.0.113.7")  # another name for this server is fine
    zone.add("mail.example.test. 60 IN A 198.51.100.1")  # and so is a second address beside ours
    assert run(port).state == State.OK


def test_silent_resolvers_and_an_unknown_address_are_warnings() -> None:
    silent = run(free_port())
    assert silent.state == State.WARNING and silent.sentence.startswith("127.0.0.1 did not answer A mail.example.test")
    assert silent.ja.startswith("127.0.0.1 が応答しません（A mail.example.test: ")
    unknown = run(free_port(), {})
    assert unknown.state == State.WARNING and "not known yet" in unknown.sentence
    assert "まだ分かりません（`jitaku ddns status` を参照）" in unknown.ja
