"""The client's forward-confirmed reverse DNS name (mail/reverse_dns.py), asked of a real DNS server (dnslib on
loopback): a PTR name counts only when its own address records lead back to the client."""

from __future__ import annotations

import asyncio

import dns.asyncresolver
import dns.resolver
import pytest

from jitaku.mail import reverse_dns
from jitaku.mail.reverse_dns import confirmed_name
from jitaku.resolver import Nameserver, configure
from tests.peers import Zone


@pytest.fixture
def zone(dns_zone: tuple[Zone, int], monkeypatch: pytest.MonkeyPatch) -> Zone:
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    monkeypatch.setattr(reverse_dns, "_answers", type(reverse_dns._answers)())  # what another test asked
    monkeypatch.setattr(reverse_dns, "_asking", {})
    configure((Nameserver("127.0.0.1", dns_zone[1]),))
    records = dns_zone[0]
    records.add("example. 60 IN SOA ns.example. admin.example. 1 60 60 60 60")
    records.add("in-addr.arpa. 60 IN SOA ns.example. admin.example. 1 60 60 60 60")
    return records


def test_a_name_whose_address_leads_back_is_confirmed(zone: Zone) -> None:
    zone.add("7.113.0.203.in-addr.arpa. 60 IN PTR mx1.Mail.Example.")
    zone.add("mx1.mail.example. 60 IN A 203.0.113.7")
    assert asyncio.run(confirmed_name("203.0.113.7")) == "mx1.mail.example"


def test_the_second_of_several_names_may_be_the_confirmed_one(zone: Zone) -> None:
    zone.add("8.113.0.203.in-addr.arpa. 60 IN PTR claimed.example.")
    zone.add("8.113.0.203.in-addr.arpa. 60 IN PTR real.example.")
    zone.add("claimed.example. 60 IN A 198.51.100.1")
    zone.add("real.example. 60 IN A 203.0.113.8")
    assert asyncio.run(confirmed_name("203.0.113.8")) == "real.example"


def test_ipv6_is_confirmed_by_aaaa(zone: Zone) -> None:
    pointer = "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
    zone.add(f"{pointer} 60 IN PTR v6.example.")
    zone.add("v6.example. 60 IN AAAA 2001:db8::1")
    assert asyncio.run(confirmed_name("2001:db8::1")) == "v6.example"


@pytest.mark.parametrize(
    "records",
    [
        [],  # no PTR at all
        ["9.113.0.203.in-addr.arpa. 60 IN PTR liar.example.", "liar.example. 60 IN A 198.51.100.9"],  # not back
        ["9.113.0.203.in-addr.arpa. 60 IN PTR nowhere.example."],  # the name has no address
        # a name no host may have, which would end up in a header
        ["9.113.0.203.in-addr.arpa. 60 IN PTR bad\\(name\\).example.", "bad\\(name\\).example. 60 IN A 203.0.113.9"],
    ],
)
def test_no_name_is_given_unless_confirmed(zone: Zone, records: list[str]) -> None:
    for record in records:
        zone.add(record)
    assert asyncio.run(confirmed_name("203.0.113.9")) == ""


def test_what_is_not_an_address_has_no_name() -> None:
    assert asyncio.run(confirmed_name("?")) == ""


def test_an_answer_is_kept_and_an_ipv4_mapped_address_is_its_ipv4_client(zone: Zone) -> None:
    zone.add("10.113.0.203.in-addr.arpa. 0 IN PTR kept.example.")  # TTL 0: no resolver keeps it
    zone.add("kept.example. 0 IN A 203.0.113.10")
    assert asyncio.run(confirmed_name("::ffff:203.0.113.10")) == "kept.example"
    zone.records.clear()  # the zone is gone, as in a DNS outage: the answer given a moment ago still holds
    assert asyncio.run(confirmed_name("::ffff:203.0.113.10")) == "kept.example"


def test_sessions_of_one_client_share_one_lookup(zone: Zone, monkeypatch: pytest.MonkeyPatch) -> None:
    zone.add("11.113.0.203.in-addr.arpa. 0 IN PTR shared.example.")
    zone.add("shared.example. 0 IN A 203.0.113.11")
    looked_up: list[str] = []
    look_up = reverse_dns._look_up

    async def counted(client_ip: str) -> str:
        looked_up.append(client_ip)
        return await look_up(client_ip)

    monkeypatch.setattr(reverse_dns, "_look_up", counted)

    async def together() -> list[str]:
        return list(await asyncio.gather(*(confirmed_name("203.0.113.11") for _ in range(10))))

    assert asyncio.run(together()) == ["shared.example"] * 10
    assert looked_up == ["203.0.113.11"]  # one lookup for the ten sessions
    assert reverse_dns._asking == {}  # and none left under way
