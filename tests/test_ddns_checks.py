"""The DDNS lock (flock: kill -9 of its holder frees it) and the check against authoritative DNS (dnslib)."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dns.asyncresolver
import dns.resolver
import pytest

from jitaku.ddns import lock, verify
from jitaku.resolver import Nameserver, configure
from tests.peers import Zone, free_port, wait_until

HOLDER = """
import sys, time
from pathlib import Path
from jitaku.ddns import lock
with lock.held(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def test_the_lock_excludes_a_second_updater_and_dies_with_its_holder(tmp_path: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(lock.Busy, match="another jitaku process is updating DNS now"):
            with lock.held(tmp_path, wait=0.3):
                pass
        holder.send_signal(signal.SIGKILL)  # a power cut, as far as the lock can tell
        holder.wait()
        with lock.held(tmp_path):  # no stale lock: it went with the process
            assert (tmp_path / lock.LOCK_NAME).exists()
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def zone(dns_zone: tuple[Zone, int], monkeypatch: pytest.MonkeyPatch) -> tuple[Zone, int]:
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    configure((Nameserver("127.0.0.1", dns_zone[1]),))
    return dns_zone


def test_the_published_record_is_read_from_the_authoritative_server(zone: tuple[Zone, int]) -> None:
    records, port = zone
    server = [Nameserver("127.0.0.1", port)]
    records.add("home.example.org. 120 IN A 203.0.113.7")
    records.add("home.example.org. 120 IN AAAA 2001:db8::7")
    found = asyncio.run(verify.published("home.example.org", 4, server))
    assert found.addresses == {ipaddress.ip_address("203.0.113.7")} and found.ttl == 120
    assert asyncio.run(verify.published("home.example.org", 6, server)).addresses == {
        ipaddress.ip_address("2001:db8::7")
    }
    records.records.clear()
    records.add("home.example.org. 60 IN A 198.51.100.9")  # the provider changed it
    assert asyncio.run(verify.published("home.example.org", 4, server)).addresses == {
        ipaddress.ip_address("198.51.100.9")
    }
    assert asyncio.run(verify.published("nothing.example.org", 4, server)).addresses == frozenset()
    silent = [Nameserver("127.0.0.1", free_port())]
    with pytest.raises(verify.Unverifiable, match="no authoritative server answered"):
        asyncio.run(verify.published("home.example.org", 4, silent))


def test_the_zones_authoritative_servers_are_found_through_the_resolver(zone: tuple[Zone, int]) -> None:
    records, _port = zone
    records.add("example.org. 300 IN SOA ns1.example.org. hostmaster.example.org. 1 7200 3600 1209600 300")
    records.add("example.org. 300 IN NS ns1.example.org.")
    records.add("example.org. 300 IN NS ns2.example.org.")
    records.add("ns1.example.org. 300 IN A 192.0.2.53")
    records.add("ns2.example.org. 300 IN A 198.51.100.53")
    servers = wait_until(lambda: asyncio.run(verify.authoritative_servers("home.example.org")), timeout=5)
    assert sorted(s.address for s in servers) == ["192.0.2.53", "198.51.100.53"]
    assert {s.port for s in servers} == {53}


def test_our_ipv6_address_is_the_first_public_one_on_an_interface(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import psutil

    from jitaku import interfaces

    def addresses(*found: tuple[int, str]) -> dict[str, list[SimpleNamespace]]:
        return {"eth0": [SimpleNamespace(family=family, address=address) for family, address in found]}

    monkeypatch.setattr(
        psutil,
        "net_if_addrs",
        lambda: addresses(
            (socket.AF_INET, "192.168.1.5"),
            (socket.AF_INET6, "fe80::1%eth0"),
            (socket.AF_INET6, "fd00::5"),
            (socket.AF_INET6, "2001:db8::5"),
        ),
    )
    assert interfaces.global_ipv6() == ipaddress.ip_address("2001:db8::5")
    monkeypatch.setattr(psutil, "net_if_addrs", lambda: addresses((socket.AF_INET6, "fe80::1%eth0")))
    assert interfaces.global_ipv6() is None
