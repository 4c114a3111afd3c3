"""SPF and DMARC verdicts the MX remembers (mail/spf_check.py, mail/dmarc.py): the same as pyspf's and
authheaders' own, reused only while the DNS answers behind them are the cached ones, and a record that
changes is read again once the cache lets its old answer go."""

from __future__ import annotations

from collections.abc import Iterator

import authheaders
import dns.asyncresolver
import dns.resolver
import pytest
import spf

from jitaku import resolver
from jitaku.mail import spf_check
from jitaku.mail.dmarc import check as dmarc_check
from tests.peers import TEST_SOA as SOA
from tests.peers import Clock, Zone


@pytest.fixture
def zone(dns_zone: tuple[Zone, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[Zone]:
    served, port = dns_zone
    served.add(SOA)
    served.add('remote.test. 60 IN TXT "v=spf1 include:_spf.remote.test a:mx.remote.test ~all"')
    served.add('_spf.remote.test. 60 IN TXT "v=spf1 ip4:198.51.100.0/24 -all"')
    served.add("mx.remote.test. 60 IN A 192.0.2.7")
    served.add('timed.test. 60 IN TXT "v=spf1 exists:%{t}.timed.test ~all"')
    served.add('_dmarc.remote.test. 60 IN TXT "v=DMARC1; p=reject"')
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    monkeypatch.setattr(spf_check, "_verdicts", {})
    resolver.configure((resolver.Nameserver("127.0.0.1", port),))
    yield served


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(resolver, "time", clock)
    return clock


@pytest.fixture
def pyspf_runs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    runs: list[str] = []
    check2 = spf.check2

    def counting(ip: str, mail_from: str, helo: str) -> tuple[str, str]:
        runs.append(mail_from)
        return check2(ip, mail_from, helo)  # type: ignore[no-any-return]

    monkeypatch.setattr(spf, "check2", counting)
    return runs


CASES = [
    ("192.0.2.7", "carol@remote.test"),  # a:
    ("198.51.100.9", "carol@remote.test"),  # include:
    ("203.0.113.1", "carol@remote.test"),  # ~all
    ("203.0.113.1", "carol@nowhere.test"),  # no record
    ("203.0.113.1", ""),  # the null sender: HELO's record
]


@pytest.mark.parametrize(("ip", "mail_from"), CASES)
def test_the_verdict_is_pyspfs_the_first_time_and_after(zone: Zone, ip: str, mail_from: str) -> None:
    expected = str(authheaders.check_spf(ip, mail_from, "mx.remote.test"))
    assert spf_check.check(ip, mail_from, "mx.remote.test").clause() == expected
    assert spf_check.check(ip, mail_from, "mx.remote.test").clause() == expected


def test_a_sender_writing_again_is_not_evaluated_again(zone: Zone, pyspf_runs: list[str]) -> None:
    for _ in range(3):
        assert spf_check.check("198.51.100.9", "carol@remote.test", "mx.remote.test").result == "pass"
    assert pyspf_runs == ["carol@remote.test"]
    spf_check.check("198.51.100.9", "dave@remote.test", "mx.remote.test")
    assert pyspf_runs == ["carol@remote.test", "dave@remote.test"]


def test_a_changed_record_counts_once_its_old_answer_expires(zone: Zone, clock: Clock) -> None:
    assert spf_check.check("198.51.100.9", "carol@remote.test", "mx.remote.test").result == "pass"
    zone.records = [record for record in zone.records if str(record.rname) != "_spf.remote.test."]
    zone.add('_spf.remote.test. 60 IN TXT "v=spf1 -all"')
    assert spf_check.check("198.51.100.9", "carol@remote.test", "mx.remote.test").result == "pass"
    clock.ahead = 61
    assert spf_check.check("198.51.100.9", "carol@remote.test", "mx.remote.test").result == "softfail"


def test_a_record_that_reads_the_clock_is_evaluated_every_time(zone: Zone, pyspf_runs: list[str]) -> None:
    for _ in range(2):
        spf_check.check("203.0.113.1", "carol@timed.test", "mx.remote.test")
    assert len(pyspf_runs) == 2


def test_a_changed_dmarc_record_counts_once_its_old_answer_expires(zone: Zone, clock: Clock) -> None:
    pairs = [(b"From", b" Carol <carol@remote.test>\r\n")]
    assert "policy.dmarc=reject" in str(dmarc_check(pairs, None, None))
    zone.records = [record for record in zone.records if str(record.rname) != "_dmarc.remote.test."]
    zone.add('_dmarc.remote.test. 60 IN TXT "v=DMARC1; p=none"')
    assert "policy.dmarc=reject" in str(dmarc_check(pairs, None, None))
    clock.ahead = 61
    assert "policy.dmarc=none" in str(dmarc_check(pairs, None, None))
