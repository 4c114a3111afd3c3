"""IPv6 inbound, in a network namespace of our own whose interface holds a global IPv6 address (2001:db8::10,
documentation space, which jitaku counts as public) beside an IPv4 one: `init --public` listens on both, the
MX, IMAP and the web answer over IPv6 as over IPv4, and the records printed include the AAAA and its PTR."""

from __future__ import annotations

import imaplib
import json
import poplib
import re
import subprocess

import httpx
import pytest

from jitaku.health.services import reading_context
from tests.integration.harness import JITAKU, Jitaku
from tests.peers import NetworkNamespace, swaks, wait_until
from tests.test_dns_records import loaded

V6, V4 = "2001:db8::10", "192.0.2.10"
NEIGHBOUR = "2001:db8::11"
V6_REVERSE = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
ALICE, PASSWORD = "alice@example.test", "secret-password"


def home_line(namespace: NetworkNamespace) -> None:
    """The addresses an ISP gives a home line: IPv4 and a global IPv6 (no duplicate detection: no one else
    is on the link, and it would hold the address back for a second or two)."""
    namespace.ip("addr", "add", f"{V4}/24", "dev", "home0")
    namespace.ip("addr", "add", f"{V6}/64", "dev", "home0", "nodad")


def test_init_public_listens_on_ipv4_and_ipv6_and_prints_the_records_ipv6_needs(
    network_namespace, jitaku_factory, dns_zone
) -> None:
    home_line(network_namespace)
    zone, dns_port = dns_zone
    server: Jitaku = jitaku_factory(dns_port)
    (server.dir / "jitaku.toml").unlink()
    init = subprocess.run(
        [*JITAKU, "init", "--domain", "example.test", "--public", "--dir", str(server.dir)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert init.returncode == 0, init.stderr
    config = (server.dir / "jitaku.toml").read_text()
    assert 'listen = ["0.0.0.0:25", "[::]:25"]' in config and 'listen = ["0.0.0.0:993", "[::]:993"]' in config
    assert 'listen = ["0.0.0.0:443", "[::]:443", "0.0.0.0:80", "[::]:80"]' in config

    printed = init.stdout.partition("Publish these DNS records")[2].partition("\n")[2]
    records = loaded(printed)
    assert {rdata.to_text() for rdata in records["mail.example.test", "AAAA"]} == {V6}
    assert {rdata.to_text() for rdata in records[V6_REVERSE, "PTR"]} == {"mail.example.test."}
    # `mx` covers the MX host's AAAA for a client over IPv6 (RFC 7208 §5.4): no ip6: needed
    assert {rdata.to_text() for rdata in records["example.test", "TXT"]} == {'"v=spf1 mx -all"'}
    assert "(the reverse name of our public IPv4 address)" in printed  # IPv4's is not known yet
    zone.add(printed)
    (server.dir / "jitaku.toml").write_text(
        config.replace("nameservers = []", f'nameservers = ["127.0.0.1:{dns_port}"]')
    )
    checked = json.loads(server.cli("dns", "records", "--check", "--json").stdout)
    states = {(row["name"], row["type"]): row["state"] for row in checked}
    assert states["mail.example.test", "AAAA"] == states[V6_REVERSE, "PTR"] == "ok"

    server.add_user(ALICE)
    server.start()
    assert server.listening["mx"] == ["0.0.0.0:25", "[::]:25"]
    zone.add('six.test. 300 IN TXT "v=spf1 ip6:2001:db8::/64 -all"\nmx.test. 300 IN TXT "v=spf1 mx -all"')
    zone.add(f"mx.test. 300 IN MX 10 mail.mx.test.\nmail.mx.test. 300 IN AAAA {V6}")
    for sender, server_address in (("carol@six.test", V6), ("dave@mx.test", V6), ("erin@four.test", V4)):
        sent = swaks("--server", server_address, "--port", "25", "--to", ALICE, "--from", sender, "--helo", "c.test")
        assert "250 2.0.0 Ok: queued as" in sent.stdout, sent.stdout + sent.stderr
    bodies = wait_until(lambda: len(server.stored_bodies(ALICE)) == 3 and server.stored_bodies(ALICE))
    heads = [body.partition(b"\r\n\r\n")[0] for body in bodies]
    assert b"Received: from c.test ([IPv6:2001:db8::10])" in heads[0], heads[0]  # RFC 5321 §4.1.3
    assert re.search(rb"spf=pass [^;]*smtp.mailfrom=carol@six.test", heads[0]), heads[0]
    assert re.search(rb"spf=pass [^;]*smtp.mailfrom=dave@mx.test", heads[1]), heads[1]
    assert b"Received: from c.test ([192.0.2.10])" in heads[2], heads[2]  # the same port, over IPv4
    assert f"client={V6}" in server.log() and "::ffff:" not in server.log()

    services = json.loads(server.cli("check", "services", "--json").stdout)
    assert services[0]["state"] == "ok" and services[0]["sentence"] == "all 18 listeners answer.", services


def test_imap_and_pop3_over_ipv6_take_a_password_in_the_clear_only_from_loopback(
    network_namespace, jitaku_factory
) -> None:
    """::1 is this machine; 2001:db8::10 is not, and its /64 is one address to the failed-login limit."""
    home_line(network_namespace)
    network_namespace.ip("addr", "add", f"{NEIGHBOUR}/64", "dev", "home0", "nodad")
    server: Jitaku = jitaku_factory()
    server.settings["imap"] = {"listen": ["[::]:0"]}
    server.settings["pop3"] = {"listen": ["[::]:0"]}
    server.write_config()
    server.init(ALICE)
    server.start()
    assert server.listening["imap"][0].startswith("[::]:")
    here = imaplib.IMAP4("::1", server.imap_port, timeout=10)
    assert here.login(ALICE, PASSWORD)[0] == "OK"
    away = imaplib.IMAP4(V6, server.imap_port, timeout=10)
    assert "LOGINDISABLED" in away.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        away.login(ALICE, PASSWORD)
    away.starttls(reading_context())
    assert away.login(ALICE, PASSWORD)[0] == "OK"
    pop3 = poplib.POP3(V6, server.pop3_port, timeout=10)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\] passwords only over TLS"):
        pop3.user(ALICE)
    assert poplib.POP3("::1", server.pop3_port, timeout=10).user(ALICE).startswith(b"+OK")
    log = server.log()
    assert f"client={V6}" in log and "client=::1" in log

    for _ in range(5):
        wrong = imaplib.IMAP4(V6, server.imap_port, timeout=10)
        wrong.starttls(reading_context())
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            wrong.login(ALICE, "wrong")
    neighbour = imaplib.IMAP4(NEIGHBOUR, server.imap_port, timeout=10)
    neighbour.starttls(reading_context())
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        neighbour.login(ALICE, PASSWORD)  # another address of the same /64: the same household, or attacker


def test_the_dashboard_over_ipv6_trusts_loopback_alone(network_namespace, jitaku_factory) -> None:
    home_line(network_namespace)
    server: Jitaku = jitaku_factory()
    server.settings["web"]["listen"] = ["[::]:0"]
    server.write_config()
    server.init(ALICE)
    server.start()
    port = server.web_port
    wait_until(lambda: httpx.get(f"http://[::1]:{port}/api/health").status_code == 200, timeout=10)
    # as a browser asks for http://[::1]/ on port 80: a Host without a port
    assert httpx.get(f"http://[::1]:{port}/api/health", headers={"Host": "[::1]"}).status_code == 200
    assert httpx.get(f"http://[{V6}]:{port}/api/health").status_code == 401
    assert httpx.get(f"http://[{V6}]:{port}/login").status_code == 200


def test_on_a_host_with_ipv6_off_the_ipv6_wildcard_is_not_a_listener_down(network_namespace, jitaku_factory) -> None:
    """net.ipv6.conf.*.disable_ipv6 = 1: "[::]" still binds, but nobody can reach it, ourselves included."""
    for name in ("all", "default", "lo", "home0"):
        subprocess.run(["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"], check=True)
    server: Jitaku = jitaku_factory()
    server.settings["smtp"]["listen"] = ["0.0.0.0:25", "[::]:25"]
    server.write_config()
    server.init()
    server.start()
    checked = server.cli("check", "services", "--json", check=False)
    (services,) = json.loads(checked.stdout)
    assert checked.returncode == 0 and services["state"] == "ok", services
    assert services["sentence"] == (
        "all 5 listeners answer; IPv6 is off on this host, so [::]:25 cannot be reached."
    ), services
