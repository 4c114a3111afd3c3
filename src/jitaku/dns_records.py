"""The DNS records this server needs, in one list that `jitaku init`, `jitaku dns records` and the dashboard
share: which they are, as zone-file text a DNS server loads, and what DNS serves for each.

Zone-file text because that is what DNS software and most providers' import forms take, and what a person
can check by eye; a record a zone parser refuses (one 410-octet TXT string, a "<your address>" placeholder)
gets pasted anyway and breaks at the first parser it meets."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import dns.asyncresolver
import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.reversename
from dns.rdtypes.ANY.TXT import TXT

from jitaku import interfaces
from jitaku.config import Config, Settings
from jitaku.mail import dkim as dkim_keys
from jitaku.terminal import visible

TTL = 3600
ADDRESS_TTL = 300  # a home's address changes: strangers should follow it within minutes, not an hour
TXT_STRING = 255  # RFC 1035 §3.3: a <character-string> is a length octet and at most 255 octets
LOOKUP_TIME = 5.0
FAMILIES = {"A": "IPv4", "AAAA": "IPv6"}
ASK_ISP = "ask your ISP to set this: the reverse zone is theirs"
OPEN_IPV6 = "let inbound IPv6 through your router first: many block it by default"
NOT_KNOWN = "not known yet: write it in, or let a [[ddns]] table in jitaku.toml keep it"

# What DNS serves against what we expect
OK, MISSING, WRONG, UNKNOWN = "ok", "missing", "wrong", "unknown"


@dataclass(frozen=True)
class Record:
    """One record to publish. NAME (of a PTR) or VALUE (of an A) is None while our public address is unknown.

    VALUE is the record's data as a zone file writes it, but a TXT's text is whole and unquoted: it is split
    into strings only on the way out."""

    name: str | None
    type: str
    value: str | None
    note: str = ""

    @property
    def ttl(self) -> int:
        return ADDRESS_TTL if self.type in FAMILIES else TTL

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "value": self.value, "note": self.note}


@dataclass(frozen=True)
class Seen:
    """A record beside what DNS serves for it: TXT texts whole, other data as a zone file writes it."""

    record: Record
    served: tuple[str, ...]
    state: str  # OK, MISSING, WRONG, or UNKNOWN: nothing to compare with, or no answer (ERROR says why)
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.state in (MISSING, WRONG) or self.error is not None

    def sentence(self) -> str:
        """What DNS serves, for a person; the served data spelled safe, since anyone may publish anything."""
        shown = ", ".join(visible(f'"{value}"' if self.record.type == "TXT" else value) for value in self.served)
        if self.error:
            return f"not checked: {self.error}"
        if self.record.name is None:
            return "not checked: the name is our public address's, not known yet"
        if self.state == OK:
            return "ok: DNS serves this"
        if self.state == MISSING:
            return f"missing: DNS serves no {self.record.type} for {self.record.name}"
        if self.state == WRONG:
            return f"wrong: DNS serves {shown}"
        return f"DNS serves {shown or 'nothing'}; ours is not known yet"

    def as_json(self) -> dict[str, Any]:
        return {**self.record.as_json(), "served": list(self.served), "state": self.state, "error": self.error}


def dkim(config: Config, domain: str | None = None) -> list[Record]:
    """The DKIM key records of DOMAIN (default: every domain), from the keys in the data directory."""
    settings = config.settings
    return [
        Record(key.record_name, "TXT", key.record_value())
        for name in ([domain] if domain else settings.domains)
        for key in dkim_keys.load_keys(config.dkim_dir, name, settings.dkim.selector, settings.dkim.ed25519)
    ]


def our_addresses(settings: Settings, learned: dict[str, str]) -> dict[str, str]:
    """Our public addresses by record type: what the DDNS updater LEARNED and, when it has no IPv6 one while
    the MX listens on IPv6 or mail leaves over IPv6 (`[delivery] ipv6`, from this same address), the global
    IPv6 address on our interface (IPv6 has no NAT: the world sees that one). Its AAAA is what `mx` in the SPF
    record covers, and its PTR what receivers ask of an IPv6 sender. Otherwise no AAAA, which would send
    strangers where nobody answers."""
    on_ipv6 = settings.delivery.ipv6 or any(_on_ipv6(address.host) for address in settings.smtp.listen)
    if "AAAA" in learned or not on_ipv6:
        return learned
    found = interfaces.global_ipv6()
    return {**learned, "AAAA": str(found)} if found else learned


def _on_ipv6(host: str) -> bool:
    """Whether a listener on HOST takes connections from the IPv6 Internet: the wildcard or a public address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.version == 6 and (address.is_unspecified or interfaces.is_public(address))


def needed(settings: Settings, dkim_records: Sequence[Record], ours: dict[str, str]) -> list[Record]:
    """Every record to publish: the host's address, each [[ddns]] name's and each other name's of our certificate,
    each domain's MX, SPF, DKIM and DMARC, the CAA of our certificate's names, and the PTR of our address. OURS:
    our public addresses by type ("A", "AAAA"), as far as known."""
    host = settings.mail_hostname
    records = [Record(host, "A", ours.get("A"), "" if "A" in ours else NOT_KNOWN)]
    if "AAAA" in ours:
        records.append(Record(host, "AAAA", ours["AAAA"], OPEN_IPV6))
    for kept in settings.ddns:
        for kind, wanted in (("A", kept.ipv4), ("AAAA", kept.ipv6)):
            if wanted and (kept.name, kind) not in {(r.name, r.type) for r in records}:
                records.append(Record(kept.name, kind, ours.get(kind), "" if kind in ours else NOT_KNOWN))
    records.extend(_certified(settings, ours, {(r.name, r.type) for r in records}))
    for domain in settings.domains:
        records.append(Record(domain, "MX", f"10 {host}."))
        records.append(Record(domain, "TXT", "v=spf1 mx -all"))
        records.extend(r for r in dkim_records if r.name and r.name.partition("._domainkey.")[2] == domain)
        records.append(Record(f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"))
    records.extend(_caa(settings))
    for _kind, address in sorted(ours.items()):
        reverse = dns.reversename.from_address(address).to_text(omit_final_dot=True)
        records.append(Record(reverse, "PTR", f"{host}.", ASK_ISP))
    if "A" not in ours:
        records.append(Record(None, "PTR", f"{host}.", ASK_ISP))
    return records


def _certified(settings: Settings, ours: dict[str, str], listed: set[tuple[str | None, str]]) -> list[Record]:
    """With ACME on, the address of each name our certificate is to carry beside those LISTED (mta-sts.DOMAIN, the
    web URL's host): without one the CA cannot validate the name, fails it at every renewal (Let's Encrypt pauses a
    name that keeps failing) and the certificate goes without it."""
    if not settings.acme.enabled:
        return []
    note = "a name on our certificate, served from here"
    records = []
    for name in _certificate_names(settings):
        if (name, "A") not in listed:
            records.append(Record(name, "A", ours.get("A"), note if "A" in ours else NOT_KNOWN))
        if "AAAA" in ours and (name, "AAAA") not in listed:
            records.append(Record(name, "AAAA", ours["AAAA"], OPEN_IPV6))
    return records


def _caa(settings: Settings) -> list[Record]:
    """With ACME on: at each of our certificate's names, a CAA record that lets our CA issue and refuses the others.
    A CA looks for CAA from the name up and stops at the first it finds (RFC 8659 §3), so one at the name binds that
    name alone: the domain's other hosts (a www on a hosted service, a name behind Cloudflare's proxy) keep theirs.
    Only `issue`: an `issuewild` would be needless (we ask for no wildcard), an `iodef` an address to watch."""
    issuer = settings.acme.caa_domain
    if not settings.acme.enabled or not issuer:
        return []
    note = f"only {issuer} may issue certificates for this name"
    return [Record(name, "CAA", f'0 issue "{issuer}"', note) for name in _certificate_names(settings)]


def _certificate_names(settings: Settings) -> list[str]:
    """ACME's names that are DNS names of their own (an address literal has no records to publish)."""
    names = []
    for name in settings.acme_names:
        try:
            ipaddress.ip_address(name)
        except ValueError:
            names.append(name.lower())
    return list(dict.fromkeys(names))


def _data(record: Record) -> str:
    assert record.value is not None
    if record.type != "TXT":
        return record.value
    raw = record.value.encode()
    strings = [raw[start : start + TXT_STRING] for start in range(0, len(raw), TXT_STRING)] or [b""]
    # dnspython quotes each string and escapes `"`, `\` and non-ASCII octets as zone files need
    return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings).to_text()


def zone_line(record: Record) -> str:
    """RECORD as one zone-file line (whatever its length: a line cut or wrapped is a different record); one
    that waits for our public address is a comment saying what is missing."""
    note = f"\t; {record.note}" if record.note else ""
    if record.name is None or record.value is None:
        name = f"{record.name}." if record.name else "(the reverse name of our public IPv4 address)"
        value = record.value or f"(our public {FAMILIES[record.type]} address)"
        return f"; {name}\t{record.ttl}\tIN\t{record.type}\t{value}{note}"
    return f"{record.name}.\t{record.ttl}\tIN\t{record.type}\t{_data(record)}{note}"


def zone_text(records: Iterable[Record]) -> str:
    return "".join(zone_line(record) + "\n" for record in records)


def checked_text(seen: Iterable[Seen]) -> str:
    """Zone-file text still: what DNS serves follows each record as a comment."""
    return "".join(f"{zone_line(one.record)}\n;   {one.sentence()}\n" for one in seen)


async def look_up(records: Sequence[Record], resolver: dns.asyncresolver.Resolver) -> list[Seen]:
    """What RESOLVER answers for each record, all asked at once."""
    return list(await asyncio.gather(*(_look_up(record, resolver) for record in records)))


async def _look_up(record: Record, resolver: dns.asyncresolver.Resolver) -> Seen:
    if record.name is None:
        return Seen(record, (), UNKNOWN)
    try:
        answer = await resolver.resolve(
            dns.name.from_text(record.name), record.type, raise_on_no_answer=False, lifetime=LOOKUP_TIME
        )
        served = list(answer.rrset or [])
    except dns.resolver.NXDOMAIN:
        served = []
    except dns.exception.DNSException as error:
        return Seen(record, (), UNKNOWN, _why(error))
    if record.type == "TXT" and (record.value or "").startswith("v=spf1"):
        # a domain's own TXT records hold other things too (site verifications); RFC 7208 §4.5 picks the
        # SPF record among them by its version tag, and so do we
        served = [rdata for rdata in served if _text(rdata).lower().split(" ")[0] == "v=spf1"]
    shown = tuple(_text(rdata) for rdata in served)
    if record.value is None:
        return Seen(record, shown, UNKNOWN)
    matching = [rdata for rdata in served if _same(record, rdata)]
    if not served:
        state = MISSING
    elif matching and (record.type != "TXT" or len(served) == 1):
        # a backup MX or a second address beside ours is the owner's choice, but two SPF or DMARC records
        # make receivers use neither (RFC 7208 §4.5, RFC 7489 §6.6.3)
        state = OK
    else:
        state = WRONG
    return Seen(record, shown, state)


def _why(error: dns.exception.DNSException) -> str:
    if isinstance(error, dns.exception.Timeout):
        return f"DNS gave no answer within {LOOKUP_TIME:.0f} s"
    if isinstance(error, dns.resolver.NoNameservers):
        return "every DNS server failed or refused the question"
    return str(error) or error.__class__.__name__


def _text(rdata: dns.rdata.Rdata) -> str:
    if isinstance(rdata, TXT):
        return b"".join(rdata.strings).decode("utf-8", "replace")
    return rdata.to_text()


def _same(record: Record, rdata: dns.rdata.Rdata) -> bool:
    """Whether RDATA is RECORD's data: a TXT by its whole text, however split; the rest as DNS compares
    them (names without regard to case)."""
    assert record.value is not None
    if record.type == "TXT":
        return _text(rdata) == record.value
    return bool(rdata == dns.rdata.from_text(dns.rdataclass.IN, record.type, record.value))
