"""The DNS records we need: zone-file text that dnspython's zone parser (and dnslib's) loads whole, and what a
DNS server (dnslib here) serves beside each record."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

import dns.asyncresolver
import dns.rdataset
import dns.rdatatype
import dns.zone
import pytest
from dnslib import QTYPE, RR, TXT

from jitaku import dns_records, interfaces
from jitaku.config import Config, Settings, parse
from jitaku.dns_records import Record, Seen, needed, zone_line, zone_text
from jitaku.mail import dkim
from tests.peers import free_port

BASE = 'hostname = "mail.example.test"\ndomains = ["example.test", "example.org"]\n'
DDNS = '[[ddns]]\nprovider = "dyndns2"\nname = "{name}"\nusername = "u"\npassword = "p"\nipv6 = true\n'
OURS = {"A": "203.0.113.7", "AAAA": "2001:db8::7"}
KEY = "v=DKIM1; k=rsa; p=" + "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA" * 9  # as long as a 2048-bit key's
DKIM = [Record("jitaku._domainkey.example.test", "TXT", KEY)]


def settings(extra: str = "") -> Settings:
    return parse(BASE + extra, Path("jitaku.toml"))


def loaded(text: str) -> dict[tuple[str, str], dns.rdataset.Rdataset]:
    """TEXT as a zone file: dnspython refuses a TXT string over 255 octets and a line that is no record."""
    zone = dns.zone.from_text(text, origin=".", check_origin=False, relativize=False)
    return {
        (name.to_text(omit_final_dot=True), dns.rdatatype.to_text(rdataset.rdtype)): rdataset
        for name, rdataset in zone.iterate_rdatasets()
    }


def test_a_dkim_key_prints_on_one_line_as_strings_of_at_most_255_octets_that_join_to_the_key(
    tmp_path: Path,
) -> None:
    config = Config(settings("[dkim]\ned25519 = true\n"), tmp_path)
    dkim.ensure_keys(config.dkim_dir, "example.test", "jitaku", True)
    rsa, ed25519 = dns_records.dkim(config, "example.test")
    assert len(rsa.value or "") == 410  # RFC 1035 allows 255 octets to one string
    text = zone_text([rsa, ed25519])
    assert len(text.splitlines()) == 2
    zone = loaded(text)
    (rdata,) = zone["jitaku._domainkey.example.test", "TXT"]
    assert [len(string) for string in rdata.strings] == [255, 155]
    assert b"".join(rdata.strings).decode() == rsa.value
    (short,) = zone["jitakue._domainkey.example.test", "TXT"]
    assert b"".join(short.strings).decode() == ed25519.value and ed25519.value.startswith("v=DKIM1; k=ed25519; p=")
    assert len(RR.fromZone(text)) == 2  # dnslib reads it too


def test_every_record_we_need_loads_and_the_ptr_is_one_for_each_reverse_name() -> None:
    text = zone_text(
        needed(settings(DDNS.format(name="example.org") + DDNS.format(name="mail.example.test")), DKIM, OURS)
    )
    zone = loaded(text)
    assert sorted(zone) == [
        ("7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa", "PTR"),
        ("7.113.0.203.in-addr.arpa", "PTR"),
        ("_dmarc.example.org", "TXT"),
        ("_dmarc.example.test", "TXT"),
        ("example.org", "A"),  # a [[ddns]] name is ours to keep too
        ("example.org", "AAAA"),
        ("example.org", "MX"),
        ("example.org", "TXT"),
        ("example.test", "MX"),
        ("example.test", "TXT"),
        ("jitaku._domainkey.example.test", "TXT"),
        ("mail.example.test", "A"),  # once, though a [[ddns]] name too
        ("mail.example.test", "AAAA"),
    ]
    assert zone["mail.example.test", "A"].ttl == 300 and zone["example.test", "MX"].ttl == 3600
    assert {rdata.to_text() for rdata in zone["7.113.0.203.in-addr.arpa", "PTR"]} == {"mail.example.test."}
    assert {rdata.to_text() for rdata in zone["example.org", "MX"]} == {"10 mail.example.test."}
    assert "7.113.0.203.in-addr.arpa.\t3600\tIN\tPTR\tmail.example.test.\t; ask your ISP to set this" in text
    assert '"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.org"' in text
    assert len(RR.fromZone(text)) == 13  # dnslib reads the same text the same way


def test_without_our_address_the_a_and_ptr_records_are_comments_that_say_what_is_missing() -> None:
    text = zone_text(needed(settings(), [], {}))
    assert ("mail.example.test", "A") not in loaded(text) and len(loaded(text)) == 6
    assert text.startswith(
        "; mail.example.test.\t300\tIN\tA\t(our public IPv4 address)\t; not known yet: write it in, or let a [[ddns]]"
    )
    assert text.endswith(
        "; (the reverse name of our public IPv4 address)\t3600\tIN\tPTR\tmail.example.test.\t; ask your ISP to set"
        " this: the reverse zone is theirs\n"
    )


@pytest.mark.parametrize(
    ("listen", "learned", "wanted"),
    [
        ('["0.0.0.0:25", "[::]:25"]', {"A": "203.0.113.7"}, {"A": "203.0.113.7", "AAAA": "2001:db8::7"}),
        ('["[2001:db8::7]:25"]', {}, {"AAAA": "2001:db8::7"}),
        ('["0.0.0.0:25"]', {}, {}),  # an AAAA would send strangers' servers where nothing listens
        ('["[::1]:25", "[fd00::1]:25"]', {}, {}),  # no one outside reaches these
        ('["[::]:25"]', {"AAAA": "2001:db8::99"}, {"AAAA": "2001:db8::99"}),  # the DDNS updater's word first
        # mail leaves from it: receivers look up its PTR, and SPF's `mx` covers it through the host's AAAA
        ('["0.0.0.0:25"]\n[delivery]\nipv6 = true', {}, {"AAAA": "2001:db8::7"}),
    ],
)
def test_our_ipv6_address_is_the_interfaces_when_the_mx_listens_or_sends_on_ipv6(
    listen: str, learned: dict[str, str], wanted: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(interfaces, "global_ipv6", lambda: ipaddress.ip_address("2001:db8::7"))
    assert dns_records.our_addresses(settings(f"[smtp]\nlisten = {listen}\n"), learned) == wanted


def test_with_only_an_ipv6_address_its_records_are_there_and_ipv4s_wait_as_comments() -> None:
    text = zone_text(needed(settings(), [], {"AAAA": "2001:db8::7"}))
    zone = loaded(text)
    assert {rdata.to_text() for rdata in zone["mail.example.test", "AAAA"]} == {"2001:db8::7"}
    reverse = "7.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
    assert {rdata.to_text() for rdata in zone[reverse, "PTR"]} == {"mail.example.test."}
    assert {rdata.to_text() for rdata in zone["example.test", "TXT"]} == {'"v=spf1 mx -all"'}  # mx: AAAA too
    assert "\tAAAA\t2001:db8::7\t; let inbound IPv6 through your router first" in text
    assert "; mail.example.test.\t300\tIN\tA\t(our public IPv4 address)" in text
    assert "; (the reverse name of our public IPv4 address)\t3600\tIN\tPTR" in text


def test_txt_text_with_quotes_backslashes_and_non_ascii_loads_back_as_it_was() -> None:
    value = 'v=spf1 "quoted" \\ 日本 ' + "x" * 300
    (rdata,) = loaded(zone_line(Record("example.test", "TXT", value)) + "\n")["example.test", "TXT"]
    assert b"".join(rdata.strings) == value.encode() and max(map(len, rdata.strings)) == 255


def resolver(port: int) -> dns.asyncresolver.Resolver:
    asking = dns.asyncresolver.Resolver(configure=False)
    asking.nameservers = ["127.0.0.1"]
    asking.port = port
    return asking


def look_up(records: list[Record], port: int) -> dict[tuple[str | None, str], Seen]:
    return {
        (one.record.name, one.record.type): one for one in asyncio.run(dns_records.look_up(records, resolver(port)))
    }


def test_what_dns_serves_is_ok_missing_or_wrong_for_each_record(dns_zone) -> None:
    zone, port = dns_zone
    records = needed(settings(), DKIM, {"A": "203.0.113.7"})
    zone.add("".join(zone_line(r) + "\n" for r in records if r.name and r.name.endswith("example.test")))
    zone.records = [r for r in zone.records if str(r.rname) != "_dmarc.example.test."]
    zone.add('_dmarc.example.test. 60 IN TXT "v=DMARC1; p=none"')
    zone.add("example.test. 60 IN MX 20 backup.example.net.")  # a backup MX is the owner's choice
    zone.add('example.test. 60 IN TXT "google-site-verification=abc"')  # not SPF: not ours to judge
    zone.add("7.113.0.203.in-addr.arpa. 60 IN PTR old.isp.test.")
    zone.records.append(RR("_dmarc.example.org", QTYPE.TXT, rdata=TXT("v=DMARC1; \x1b]0;pwned\x07"), ttl=60))
    seen = look_up(records, port)
    right = [("mail.example.test", "A"), ("example.test", "MX"), ("example.test", "TXT")]
    right.append(("jitaku._domainkey.example.test", "TXT"))
    assert all(seen[key].state == "ok" and not seen[key].failed for key in right), seen
    assert seen["example.test", "TXT"].served == ("v=spf1 mx -all",)
    assert seen["jitaku._domainkey.example.test", "TXT"].sentence() == "ok: DNS serves this"
    dmarc = seen["_dmarc.example.test", "TXT"]
    assert (dmarc.state, dmarc.failed, dmarc.sentence()) == ("wrong", True, 'wrong: DNS serves "v=DMARC1; p=none"')
    missing = seen["example.org", "MX"]
    assert (missing.state, missing.served, missing.failed) == ("missing", (), True)
    assert missing.sentence() == "missing: DNS serves no MX for example.org"
    assert seen["7.113.0.203.in-addr.arpa", "PTR"].sentence() == "wrong: DNS serves old.isp.test."
    assert seen["_dmarc.example.org", "TXT"].sentence() == 'wrong: DNS serves "v=DMARC1; \\x1b]0;pwned\\x07"'
    assert seen["_dmarc.example.org", "TXT"].as_json()["served"] == ["v=DMARC1; \x1b]0;pwned\x07"]
    zone.add('example.test. 60 IN TXT "v=spf1 a -all"')  # two SPF records: receivers use neither
    assert look_up(records, port)["example.test", "TXT"].state == "wrong"


def test_a_record_that_waits_for_our_address_is_shown_but_not_judged(dns_zone) -> None:
    zone, port = dns_zone
    zone.add("mail.example.test. 60 IN A 198.51.100.9")
    seen = look_up(needed(settings(), [], {}), port)
    address = seen["mail.example.test", "A"]
    assert (address.state, address.served, address.failed) == ("unknown", ("198.51.100.9",), False)
    assert address.sentence() == "DNS serves 198.51.100.9; ours is not known yet"
    reverse = seen[None, "PTR"]
    assert (reverse.state, reverse.failed) == ("unknown", False)
    assert reverse.sentence() == "not checked: the name is our public address's, not known yet"
    text = dns_records.checked_text(seen.values())
    assert "\n;   missing: DNS serves no MX for example.test\n" in text and len(loaded(text)) == 6


def test_a_dns_server_that_does_not_answer_is_said_in_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dns_records, "LOOKUP_TIME", 1.0)
    seen = look_up([Record("example.test", "MX", "10 mail.example.test.")], free_port())
    (silent,) = seen.values()
    assert (silent.state, silent.failed) == ("unknown", True)
    assert silent.sentence() == "not checked: DNS gave no answer within 1 s"


ACME = '[acme]\nemail = "owner@example.test"\n'


def test_with_acme_on_each_of_the_certificates_names_gets_a_caa_record_for_lets_encrypt_and_no_other() -> None:
    """At the names, not the domain: a CAA at example.org would refuse every other CA for all its hosts (a www on a
    hosted service, a name behind Cloudflare's proxy), and a CA stops at the first CAA from the name up."""
    records = needed(settings('[web]\nurl = "https://blog.example.org/"\n' + ACME), [], OURS)
    caa = [(r.name, r.value) for r in records if r.type == "CAA"]
    issue = '0 issue "letsencrypt.org"'
    assert caa == [("mail.example.test", issue), ("blog.example.org", issue), ("mta-sts.example.test", issue)]
    text = zone_text(records)
    assert 'mail.example.test.\t3600\tIN\tCAA\t0 issue "letsencrypt.org"\t; only letsencrypt.org may issue' in text
    zone = loaded(text)
    assert {rdata.to_text() for rdata in zone["blog.example.org", "CAA"]} == {issue}
    assert ("example.org", "CAA") not in zone and ("example.test", "CAA") not in zone
    staging = needed(settings(ACME + 'directory = "letsencrypt-staging"\nnames = ["mail.example.test"]\n'), [], {})
    assert [(r.name, r.value) for r in staging if r.type == "CAA"] == [("mail.example.test", issue)]


def test_with_acme_on_each_of_the_certificates_names_gets_our_address() -> None:
    """Else the CA cannot validate mta-sts.DOMAIN or the web host, and fails it at every renewal."""
    records = needed(settings('[web]\nurl = "https://blog.example.org/"\n' + ACME), [], OURS)
    addresses = [(r.name, r.type, r.value) for r in records if r.type in ("A", "AAAA")]
    assert addresses == [
        ("mail.example.test", "A", "203.0.113.7"),
        ("mail.example.test", "AAAA", "2001:db8::7"),
        ("blog.example.org", "A", "203.0.113.7"),
        ("blog.example.org", "AAAA", "2001:db8::7"),
        ("mta-sts.example.test", "A", "203.0.113.7"),
        ("mta-sts.example.test", "AAAA", "2001:db8::7"),
    ]
    zone = loaded(zone_text(records))
    assert {rdata.to_text() for rdata in zone["mta-sts.example.test", "A"]} == {"203.0.113.7"}
    unknown = zone_text(needed(settings(ACME), [], {}))
    assert "; mta-sts.example.test.\t300\tIN\tA\t(our public IPv4 address)\t; not known yet" in unknown
    assert not [r for r in needed(settings(), [], OURS) if r.name == "mta-sts.example.test"]  # ACME off


@pytest.mark.parametrize(
    "extra",
    ["", ACME + 'directory = "https://acme.example.net/directory"\n'],  # off; a CA whose CAA domain we cannot know
)
def test_without_acme_or_a_known_ca_there_is_no_caa_record(extra: str) -> None:
    assert not [r for r in needed(settings(extra), [], OURS) if r.type == "CAA"]


def test_a_caa_record_is_checked_as_dns_serves_it(dns_zone) -> None:
    zone, port = dns_zone
    records = [r for r in needed(settings(ACME + 'caa = "pki.example.net"\n'), [], {}) if r.type == "CAA"]
    assert [r.value for r in records if r.name == "mail.example.test"] == ['0 issue "pki.example.net"']
    assert look_up(records, port)["mail.example.test", "CAA"].state == "missing"
    zone.add('mail.example.test. 60 IN CAA 0 issue "letsencrypt.org"')
    wrong = look_up(records, port)["mail.example.test", "CAA"]
    assert (wrong.state, wrong.sentence()) == ("wrong", 'wrong: DNS serves 0 issue "letsencrypt.org"')
    zone.add('mail.example.test. 60 IN CAA 0 issue "pki.example.net"')  # another CA beside ours: the owner's choice
    assert look_up(records, port)["mail.example.test", "CAA"].sentence() == "ok: DNS serves this"
