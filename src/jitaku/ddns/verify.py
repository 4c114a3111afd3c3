"""What the world sees: the record as the zone's authoritative servers answer it, asked directly.

A resolver's cache would answer with what it learnt up to a TTL ago and hide
a provider that said "good" but changed nothing; the authoritative servers
cannot.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from jitaku.interfaces import Address
from jitaku.resolver import Nameserver

TIMEOUT = 3.0


@dataclass(frozen=True)
class Published:
    addresses: frozenset[Address]  # empty: the name has no such record
    ttl: int
    server: str  # which server said so


class Unverifiable(Exception):
    """No authoritative server could be asked or none answered."""


async def authoritative_servers(name: str) -> list[Nameserver]:
    """The addresses of the NS of the zone that holds NAME, through the configured resolver."""
    try:
        zone = await dns.asyncresolver.zone_for_name(name)
        answer = await dns.asyncresolver.resolve(zone, "NS")
        servers: list[Nameserver] = []
        for record in answer:
            for kind in ("A", "AAAA"):
                try:
                    found = await dns.asyncresolver.resolve(record.target, kind)
                except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                    continue
                servers.extend(Nameserver(str(item), 53) for item in found)
        return servers
    except dns.exception.DNSException as error:
        raise Unverifiable(f"cannot find the authoritative servers of {name}: {error.__class__.__name__}") from None


async def published(name: str, version: int, servers: list[Nameserver]) -> Published:
    """NAME's A (VERSION 4) or AAAA records as the first of SERVERS that answers has them."""
    kind = dns.rdatatype.A if version == 4 else dns.rdatatype.AAAA
    query = dns.message.make_query(dns.name.from_text(name), kind)
    query.flags &= ~dns.flags.RD  # authoritative data only, nothing recursed for us
    problems: list[str] = []
    for server in servers:
        try:
            response = await dns.asyncquery.udp(query, server.address, timeout=TIMEOUT, port=server.port)
        except (dns.exception.DNSException, OSError) as error:
            problems.append(f"{server.address}: {error.__class__.__name__}")
            continue
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            problems.append(f"{server.address}: {dns.rcode.to_text(response.rcode())}")
            continue
        addresses: set[Address] = set()
        ttl = 0
        for rrset in response.answer:
            if rrset.rdtype == kind:
                ttl = rrset.ttl
                addresses.update(ipaddress.ip_address(item.address) for item in rrset)
        return Published(frozenset(addresses), ttl, server.address)
    raise Unverifiable("no authoritative server answered: " + ("; ".join(problems) or "none known"))


async def texts(name: str, server: Nameserver) -> frozenset[str]:
    """NAME's TXT records as SERVER has them, each whole (its strings joined); Unverifiable when it does not answer."""
    query = dns.message.make_query(dns.name.from_text(name), dns.rdatatype.TXT)
    query.flags &= ~dns.flags.RD
    try:
        response = await dns.asyncquery.udp(query, server.address, timeout=TIMEOUT, port=server.port)
    except (dns.exception.DNSException, OSError) as error:
        raise Unverifiable(f"{server.address}: {error.__class__.__name__}") from None
    if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise Unverifiable(f"{server.address}: {dns.rcode.to_text(response.rcode())}")
    return frozenset(
        b"".join(item.strings).decode("utf-8", "replace")
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.TXT
        for item in rrset
    )
