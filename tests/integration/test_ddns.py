"""The DDNS updater inside `jitaku serve`: DynDNS2, MyDNS and Cloudflare stand-ins on loopback that change a
local authoritative DNS server (dnslib), an address-echo server whose answer the test changes, `jitaku ddns`
and `jitaku check`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from dnslib import QTYPE, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from tests.integration.harness import Jitaku
from tests.peers import NetworkNamespace, Zone, serve, stop_serving, wait_until

NAME = "home.example.org"


class World:
    """Our public address as the echo server tells it, and a provider publishing into ZONE: one stand-in
    that speaks DynDNS2 (/nic/update), MyDNS (a login at the endpoint) and Cloudflare's API (/zones...)."""

    def __init__(self, zone: Zone, stand_in: Any) -> None:
        self.address = "203.0.113.7"
        self.reply = "good"  # what the provider says
        self.publishes = True  # whether it really changes the record
        self.delay = 0.0
        self.zone = zone
        self.zone.add(f"{NAME}. 1 IN A 192.0.2.1")  # what DNS said before the power cut
        self.zone.add(f"{NAME}. 1 IN AAAA 2001:db8:1::1")
        self.echo = stand_in(lambda *request: (200, self.address + "\n"))
        self.provider = stand_in(self._update)
        self.updates = 0
        self._lock = threading.Lock()

    def _update(self, method: str, path: str, query: Any, headers: Any, body: bytes) -> tuple[int, Any]:
        time.sleep(self.delay)
        with self._lock:
            self.updates += 1
        if path.startswith("/zones"):
            return self._cloudflare(method, path, query, body)
        address = query["myip"][0] if path == "/nic/update" else self.address  # MyDNS takes the caller's
        if self.reply == "good":
            self._publish(address)
        if path == "/nic/update":
            return 200, f"{self.reply} {address}"
        return (200, "login ok") if self.reply == "good" else (401, "Unauthorized")

    def _cloudflare(self, method: str, path: str, query: Any, body: bytes) -> tuple[int, Any]:
        if path == "/zones":
            return 200, {"success": True, "result": [{"id": "zone1", "name": query["name"][0]}]}
        if method == "GET":
            kind = query["type"][0]
            return 200, {"success": True, "result": [{"id": kind, "type": kind}] if self.published(kind) else []}
        record = json.loads(body)
        self._publish(record["content"])
        return 200, {"success": True, "result": record}

    def _publish(self, address: str) -> None:
        if self.publishes:
            kind = "AAAA" if ":" in address else "A"
            self.zone.records = [r for r in self.zone.records if (str(r.rname), QTYPE[r.rtype]) != (f"{NAME}.", kind)]
            self.zone.add(f"{NAME}. 1 IN {kind} {address}")

    def published(self, kind: str = "A") -> list[str]:
        return [str(r.rdata) for r in self.zone.records if (str(r.rname), QTYPE[r.rtype]) == (f"{NAME}.", kind)]


@pytest.fixture
def world(dns_zone, stand_in) -> World:
    return World(dns_zone[0], stand_in)


LOGINS = {
    "dyndns2": 'username = "home"\npassword = "s3cret-pw"\n',
    "mydns": 'username = "mydns123456"\npassword = "s3cret-pw"\n',
    "cloudflare": 'zone = "example.org"\npassword = "s3cret-pw"\n',
}


def ddns_server(
    jitaku_factory: Any,
    dns_zone: Any,
    world: World,
    provider: str = "dyndns2",
    more: str = "",
    verify: list[str] | None = None,
    nameservers: list[str] | None = None,
) -> Jitaku:
    """A jitaku keeping NAME up to date; VERIFY: the nameservers it asks what the world sees (default the local
    DNS server; [] the zone's authoritative servers, found through NAMESERVERS, default the local DNS server)."""
    server: Jitaku = jitaku_factory(dns_zone[1])
    if nameservers is not None:
        server.settings["dns"] = {"nameservers": nameservers}
        server.write_config()
    server.init()
    verify = [f"127.0.0.1:{dns_zone[1]}"] if verify is None else verify
    with (server.dir / "jitaku.toml").open("a") as config:
        config.write(
            f'\n[public_ip]\nsources = ["{world.echo.url}/ip"]\ninterval = 1\n'
            f'\n[[ddns]]\nprovider = "{provider}"\nname = "{NAME}"\n{LOGINS[provider]}{more}'
            f'endpoint = "{world.provider.url}"\nverify_nameservers = {json.dumps(verify)}\n'
        )
    return server


def check(server: Jitaku) -> tuple[int, dict[str, Any]]:
    """`jitaku check --json`: its exit code and what the ddns check says."""
    ran = server.cli("check", "--json", check=False)
    (result,) = [r for r in json.loads(ran.stdout) if r["check"] == "ddns"]
    return ran.returncode, result


def status(server: Jitaku, family: str = "IPv4") -> dict[str, Any]:
    (entry,) = [e for e in json.loads(server.cli("ddns", "status", "--json").stdout) if e["family"] == family]
    return entry


@pytest.mark.parametrize("provider", ["dyndns2", "mydns", "cloudflare"])
def test_the_record_is_right_at_start_and_follows_an_address_change(jitaku_factory, dns_zone, world, provider) -> None:
    server = ddns_server(jitaku_factory, dns_zone, world, provider)
    server.start()
    wait_until(lambda: world.published() == ["203.0.113.7"], timeout=20)
    entry = wait_until(lambda: (e := status(server))["published"] == "203.0.113.7" and e)
    assert entry["sent"] == "203.0.113.7" and entry["error"] is None and entry["provider"] == provider
    assert entry["address"] == "203.0.113.7"
    assert check(server) == (
        0,
        {
            "check": "ddns",
            "state": "ok",
            "sentence": f"{NAME} (IPv4) points at 203.0.113.7.",
            "metrics": {"records": 1.0, "wrong": 0.0},
        },
    )
    world.address = "198.51.100.9"  # the ISP gave us a new one
    wait_until(lambda: world.published() == ["198.51.100.9"], timeout=20)
    wait_until(lambda: status(server)["sent"] == "198.51.100.9")
    shown = server.cli("ddns", "status").stdout + server.cli("ddns", "status", "--json").stdout + server.log()
    assert "s3cret-pw" not in shown and "czNjcmV0LXB3" not in shown  # not even base64-encoded


def test_a_provider_that_says_good_but_changes_nothing_is_caught(jitaku_factory, dns_zone, world, stand_in) -> None:
    alerts: list[dict[str, Any]] = []
    hook = stand_in(lambda method, path, query, headers, body: (alerts.append(json.loads(body)), (200, "ok"))[1])
    world.publishes = False
    server = ddns_server(jitaku_factory, dns_zone, world)
    with (server.dir / "jitaku.toml").open("a") as config:
        config.write(f'\n[health]\ninterval = 1\n[alerts]\nurls = ["json://{hook.url.removeprefix("http://")}/hook"]\n')
    server.start()
    entry = wait_until(lambda: (e := status(server))["error"] and e, timeout=20)
    assert "the authoritative servers still answer 192.0.2.1" in entry["error"]
    assert "event=ddns_mismatch" in server.log()
    code, result = check(server)
    assert code == 2 and result["state"] == "critical"
    assert result["sentence"].startswith(
        f"DNS answers 192.0.2.1 for {NAME} (IPv4), but we are at 203.0.113.7 (dyndns2 answered"
    )


def test_a_refused_login_is_not_retried_until_forced(jitaku_factory, dns_zone, world) -> None:
    world.reply = "badauth"
    server = ddns_server(jitaku_factory, dns_zone, world)
    server.start()
    wait_until(lambda: world.updates == 1, timeout=20)
    time.sleep(4)  # four more rounds
    assert world.updates == 1  # no hammering
    assert "badauth" in status(server)["error"]
    forced = server.cli("ddns", "update", "--force", check=False)  # beside the running daemon
    assert forced.returncode == 1 and "badauth" in forced.stdout
    assert world.updates == 2


def test_kill_9_in_the_middle_of_an_update_leaves_no_stale_lock(jitaku_factory, dns_zone, world) -> None:
    world.delay = 5.0
    server = ddns_server(jitaku_factory, dns_zone, world)
    server.start()
    wait_until(lambda: any(path == "/nic/update" for _m, path, _q, _h in world.provider.requests), timeout=20)
    server.kill9()  # mid-update: the lock's holder dies
    world.delay = 0.0
    world.address = "198.51.100.20"
    server.start()
    wait_until(lambda: world.published() == ["198.51.100.20"], timeout=20)


def test_the_aaaa_record_follows_the_interfaces_global_ipv6_address(
    network_namespace, jitaku_factory, dns_zone, world
) -> None:
    """IPv6 has no NAT: our address is the global one on an interface (here a veth in a namespace of our own)."""
    namespace: NetworkNamespace = network_namespace
    namespace.ip("addr", "add", "2001:db8:1::7/64", "dev", "home0", "nodad")
    server = ddns_server(jitaku_factory, dns_zone, world, more="ipv6 = true\n")
    server.start()
    wait_until(
        lambda: world.published("AAAA") == ["2001:db8:1::7"] and world.published("A") == ["203.0.113.7"], timeout=20
    )
    entry = wait_until(lambda: (e := status(server, "IPv6"))["published"] == "2001:db8:1::7" and e)
    assert entry["sent"] == "2001:db8:1::7" and entry["error"] is None
    namespace.ip("addr", "del", "2001:db8:1::7/64", "dev", "home0")  # the ISP hands out a new prefix
    namespace.ip("addr", "add", "2001:db8:2::7/64", "dev", "home0", "nodad")
    wait_until(lambda: world.published("AAAA") == ["2001:db8:2::7"], timeout=20)
    wait_until(lambda: status(server, "IPv6")["published"] == "2001:db8:2::7")
    assert world.published("A") == ["203.0.113.7"]


class Asked(BaseResolver):
    """ZONE's answers, keeping who asked what: (name, type, the client's address)."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.asked: list[tuple[str, str, str]] = []

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        self.asked.append((str(request.q.qname), QTYPE[request.q.qtype], handler.client_address[0]))
        return self.zone.resolve(request, handler)


@pytest.fixture
def ipv6_dns(network_namespace, world) -> Iterator[Asked]:
    """The zone's authoritative server at [2001:db8::53]:53, reached over IPv6 only: NS ns.example.org, whose
    only address is that AAAA."""
    network_namespace.ip("addr", "add", "2001:db8::53/64", "dev", "home0", "nodad")
    world.zone.add("example.org. 1 IN SOA ns.example.org. hostmaster.example.org. 1 60 60 60 1")
    world.zone.add("example.org. 1 IN NS ns.example.org.")
    world.zone.add("ns.example.org. 1 IN AAAA 2001:db8::53")
    asked = Asked(world.zone)
    servers = [DNSServer(asked, address="2001:db8::53", port=53, tcp=tcp) for tcp in (False, True)]
    for server in servers:
        serve(server.server)
    yield asked
    for server in servers:
        stop_serving(server.server)


@pytest.mark.parametrize("verify", [["2001:db8::53"], []], ids=["given", "found"])
def test_the_aaaa_record_is_checked_with_authoritative_servers_reached_over_ipv6(
    network_namespace, jitaku_factory, dns_zone, world, ipv6_dns, verify: list[str]
) -> None:
    """A home line whose DNS is reached over IPv6 (with DS-Lite, IPv4 goes through the ISP's tunnel): the
    authoritative server given in verify_nameservers, or found from the zone's NS record through a resolver
    given as "[2001:db8::53]:53"."""
    network_namespace.ip("addr", "add", "2001:db8:1::7/64", "dev", "home0", "nodad")
    server = ddns_server(
        jitaku_factory, dns_zone, world, more="ipv6 = true\n", verify=verify, nameservers=["[2001:db8::53]:53"]
    )
    server.start()
    entry = wait_until(lambda: (e := status(server, "IPv6"))["published"] == "2001:db8:1::7" and e, timeout=20)
    assert entry["address"] == "2001:db8:1::7" and entry["error"] is None
    wait_until(lambda: status(server)["published"] == "203.0.113.7")
    code, result = check(server)
    assert (code, result["sentence"]) == (
        0,
        f"{NAME} (IPv4) points at 203.0.113.7; {NAME} (IPv6) points at 2001:db8:1::7.",
    )
    asked = set(ipv6_dns.asked)
    assert (f"{NAME}.", "AAAA", "2001:db8::53") in asked and (f"{NAME}.", "A", "2001:db8::53") in asked
    if not verify:  # found: the NS record and its AAAA, asked of the resolver over IPv6 too
        assert ("example.org.", "NS", "2001:db8::53") in asked and ("ns.example.org.", "AAAA", "2001:db8::53") in asked


def test_without_a_global_ipv6_address_the_check_says_so(network_namespace, jitaku_factory, dns_zone, world) -> None:
    """A line whose IPv6 prefix is gone (or never came: a unique-local address only): no AAAA to send, and the
    one DNS still answers leads nowhere."""
    network_namespace.ip("addr", "add", "fd00::7/64", "dev", "home0", "nodad")
    server = ddns_server(jitaku_factory, dns_zone, world, more="ipv6 = true\n")
    server.start()
    reason = "this host has no global IPv6 address (only loopback, link-local or unique-local ones)"
    entry = wait_until(lambda: (e := status(server, "IPv6"))["error"] and e, timeout=20)
    assert entry["error"] == f"{reason}; DNS still answers 2001:db8:1::1" and entry["address"] is None
    wait_until(lambda: status(server)["published"] == "203.0.113.7")
    code, result = check(server)
    assert (code, result["state"], result["sentence"]) == (
        1,
        "warning",
        f"{NAME} (IPv6): {reason}; DNS still answers 2001:db8:1::1.",
    ), result
    assert world.published("AAAA") == ["2001:db8:1::1"]  # nothing was sent for IPv6
