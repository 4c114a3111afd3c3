"""The cache in front of the resolver SPF, DKIM and DMARC checks use: what it remembers, for how long,
how many names; and that a check whose records are cached runs without a thread hand-off."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from typing import Any

import dns.asyncresolver
import dns.resolver
import pytest
from dnslib import DNSRecord

from jitaku import resolver
from jitaku.mail import authcheck
from tests.peers import TEST_SOA as SOA
from tests.peers import Clock, Zone


class CountingZone(Zone):
    def __init__(self) -> None:
        super().__init__()
        self.asked: collections.Counter[str] = collections.Counter()

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        self.asked[str(request.q.qname).rstrip(".")] += 1
        return super().resolve(request, handler)


@pytest.fixture
def zone(dns_zone: tuple[Zone, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingZone]:
    served, port = dns_zone
    counting = CountingZone()
    monkeypatch.setattr(served, "resolve", counting.resolve)
    counting.add(SOA)
    counting.add('remote.test. 60 IN TXT "v=spf1 ip4:192.0.2.7 -all"')
    counting.add("mx.remote.test. 60 IN A 192.0.2.7")
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    resolver.configure((resolver.Nameserver("127.0.0.1", port),))
    yield counting


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(resolver, "time", clock)
    return clock


def txt(name: str) -> list[bytes]:
    return [b"".join(r.strings) for r in dns.resolver.resolve(name, "TXT")]


def test_an_answer_is_remembered_for_its_ttl(zone: CountingZone, clock: Clock) -> None:
    assert txt("remote.test") == [b"v=spf1 ip4:192.0.2.7 -all"]
    clock.ahead = 55
    assert txt("remote.test") == [b"v=spf1 ip4:192.0.2.7 -all"]
    assert zone.asked["remote.test"] == 1
    clock.ahead = 65
    assert txt("remote.test") == [b"v=spf1 ip4:192.0.2.7 -all"]
    assert zone.asked["remote.test"] == 2


def test_a_name_that_does_not_exist_is_remembered_for_the_soa_minimum(zone: CountingZone, clock: Clock) -> None:
    for ahead in (0, 25):
        clock.ahead = ahead
        with pytest.raises(dns.resolver.NXDOMAIN):
            txt("_dmarc.remote.test")
    assert zone.asked["_dmarc.remote.test"] == 1
    clock.ahead = 35  # the SOA's minimum (30), not its TTL (300)
    with pytest.raises(dns.resolver.NXDOMAIN):
        txt("_dmarc.remote.test")
    assert zone.asked["_dmarc.remote.test"] == 2


def test_no_record_of_that_type_is_remembered_too(zone: CountingZone) -> None:
    for _ in range(2):
        with pytest.raises(dns.resolver.NoAnswer):
            txt("mx.remote.test")
        answer = dns.resolver.resolve("mx.remote.test", "TXT", raise_on_no_answer=False)
        assert answer.rrset is None
    assert zone.asked["mx.remote.test"] == 1


def test_without_an_soa_no_is_not_remembered(zone: CountingZone) -> None:
    zone.records = [record for record in zone.records if record.rtype != 6]  # SOA
    for _ in range(2):
        with pytest.raises(dns.resolver.NXDOMAIN):
            txt("nowhere.example")
    assert zone.asked["nowhere.example"] == 2


def test_the_cache_holds_a_bounded_number_of_names(zone: CountingZone, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resolver.CachingResolver, "MAX_ENTRIES", 3)
    names = [f"n{number}.remote.test" for number in range(4)]
    for name in names:
        zone.add(f'{name}. 60 IN TXT "{name}"')
        txt(name)
    txt(names[3])  # the most recent stays
    txt(names[0])  # the least recently used went
    assert zone.asked[names[3]] == 1
    assert zone.asked[names[0]] == 2


def test_cached_only_answers_from_the_cache_or_says_it_missed(zone: CountingZone) -> None:
    with resolver.cached_only() as attempt, pytest.raises(resolver.NotCached):
        txt("remote.test")
    assert attempt.missed and zone.asked["remote.test"] == 0
    txt("remote.test")
    with resolver.cached_only() as attempt:
        assert txt("remote.test") == [b"v=spf1 ip4:192.0.2.7 -all"]
    assert not attempt.missed


def test_a_check_with_its_records_cached_stays_on_the_event_loop(
    zone: CountingZone, monkeypatch: pytest.MonkeyPatch
) -> None:
    handed_off: list[str] = []
    to_thread = asyncio.to_thread

    async def counting_to_thread(function: Any, *args: Any) -> Any:
        handed_off.append(function.__name__)
        return await to_thread(function, *args)

    monkeypatch.setattr(authcheck.asyncio, "to_thread", counting_to_thread)
    message = b"From: Carol <carol@remote.test>\r\nSubject: hello\r\n\r\nhi\r\n"

    def check() -> bytes:
        return asyncio.run(
            authcheck.authentication_results(message, "mx.example.test", "192.0.2.7", "carol@remote.test", "mx")
        )

    first = check()  # nothing cached: the lookups wait in a thread
    assert b"spf=pass" in first and len(handed_off) == 1
    assert check() == first  # every record cached: no hand-off
    assert len(handed_off) == 1
