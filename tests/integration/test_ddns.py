"""The DDNS updater inside `jitaku serve`: a DynDNS2 stand-in on loopback that changes a local authoritative
DNS server (dnslib), an address-echo server whose answer the test changes, and `jitaku ddns` commands."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from tests.conftest import Jitaku, Zone, wait_until

NAME = "home.example.org"


class World:
    """Our public address as the echo server tells it, and a DynDNS2 provider publishing into ZONE."""

    def __init__(self, zone: Zone, stand_in: Any) -> None:
        self.address = "203.0.113.7"
        self.reply = "good"  # what the provider says
        self.publishes = True  # whether it really changes the record
        self.delay = 0.0
        self.zone = zone
        self.zone.add(f"{NAME}. 1 IN A 192.0.2.1")  # what DNS said before the power cut
        self.echo = stand_in(lambda *request: (200, self.address + "\n"))
        self.provider = stand_in(self._update)
        self.updates = 0
        self._lock = threading.Lock()

    def _update(self, method: str, path: str, query: Any, headers: Any, body: bytes) -> tuple[int, str]:
        """DynDNS2's /nic/update names the address; MyDNS's /login.html takes the caller's (the echo's)."""
        time.sleep(self.delay)
        with self._lock:
            self.updates += 1
        address = query["myip"][0] if path == "/nic/update" else self.address
        if self.reply == "good" and self.publishes:
            self.zone.records = [r for r in self.zone.records if str(r.rname) != f"{NAME}."]
            self.zone.add(f"{NAME}. 1 IN A {address}")
        if path == "/nic/update":
            return 200, f"{self.reply} {address}"
        return (200, "login ok") if self.reply == "good" else (401, "Unauthorized")

    def published(self) -> list[str]:
        return [str(r.rdata) for r in self.zone.records if str(r.rname) == f"{NAME}."]


@pytest.fixture
def world(dns_zone, stand_in) -> World:
    return World(dns_zone[0], stand_in)


def ddns_server(jitaku_factory: Any, dns_zone: Any, world: World, provider: str = "dyndns2") -> Jitaku:
    server: Jitaku = jitaku_factory(dns_zone[1])
    server.cli("init")
    with (server.dir / "jitaku.toml").open("a") as config:
        config.write(
            f'\n[public_ip]\nsources = ["{world.echo.url}/ip"]\ninterval = 1\n'
            f'\n[[ddns]]\nprovider = "{provider}"\nname = "{NAME}"\nusername = "home"\npassword = "s3cret-pw"\n'
            f'endpoint = "{world.provider.url}"\nverify_nameservers = ["127.0.0.1:{dns_zone[1]}"]\n'
        )
    return server


def status(server: Jitaku) -> dict[str, Any]:
    (entry,) = json.loads(server.cli("ddns", "status", "--json").stdout)
    return entry


@pytest.mark.parametrize("provider", ["dyndns2", "mydns"])
def test_the_record_is_right_at_start_and_follows_an_address_change(jitaku_factory, dns_zone, world, provider) -> None:
    server = ddns_server(jitaku_factory, dns_zone, world, provider)
    server.start()
    wait_until(lambda: world.published() == ["203.0.113.7"], timeout=20)
    entry = wait_until(lambda: (e := status(server))["published"] == "203.0.113.7" and e)
    assert entry["sent"] == "203.0.113.7" and entry["error"] is None and entry["provider"] == provider
    world.address = "198.51.100.9"  # the ISP gave us a new one
    wait_until(lambda: world.published() == ["198.51.100.9"], timeout=20)
    wait_until(lambda: status(server)["sent"] == "198.51.100.9")
    shown = server.cli("ddns", "status").stdout + server.cli("ddns", "status", "--json").stdout + server.log()
    assert "s3cret-pw" not in shown and "czNjcmV0LXB3" not in shown  # not even base64-encoded


def test_a_provider_that_says_good_but_changes_nothing_is_caught(jitaku_factory, dns_zone, world) -> None:
    world.publishes = False
    server = ddns_server(jitaku_factory, dns_zone, world)
    server.start()
    entry = wait_until(lambda: (e := status(server))["error"] and e, timeout=20)
    assert "the authoritative servers still answer 192.0.2.1" in entry["error"]
    assert "event=ddns_mismatch" in server.log()


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
