"""The client's forward-confirmed reverse DNS name (FCrDNS, RFC 8601 §3's "iprev"): a PTR name of its address
whose own A or AAAA records lead back to that address, or "" when there is none.

Why: the spam engines weigh it (rspamd's Hostname, without which every message scores HFILTER_HOSTNAME_UNKNOWN;
SpamAssassin reads it from our Received header, RDNS_NONE otherwise), and a name that is not confirmed is
anyone's to claim: a PTR alone is set by whoever owns the address block. Asked only while a spam engine is on,
and only of strangers (our users' mail is not scored); bounded in names tried and in time, and any failure is ""
(the engines then score the client as nameless, which is what it is to them). The answer, failures included, is
kept for REMEMBER seconds, and the sessions of one client wait for one lookup: a server whose reverse zone
times out costs its first messages one wait, not every message of every session a wait of its own."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import re
import time

import dns.asyncresolver
import dns.exception
import dns.resolver
import dns.reversename

MAX_NAMES = 4  # PTR names tried at most: a client with more is not one that needs them all tried
TIMEOUT = 3.0  # seconds for the PTR and the forward lookups together
REMEMBER = 300.0  # seconds an answer is kept
REMEMBERED = 4096  # addresses at most, the least recently asked forgotten first
# A label of a host name (RFC 1123, and the "_" some PTRs have): a PTR may hold any bytes, and the name goes into
# a header and a comment
_LABEL = re.compile(r"[a-z0-9_-]{1,63}", re.IGNORECASE)


_answers: collections.OrderedDict[str, tuple[str, float]] = collections.OrderedDict()
_asking: dict[str, asyncio.Task[str]] = {}  # lookups under way, which the sessions of one client share


async def confirmed_name(client_ip: str) -> str:
    known = _answers.get(client_ip)
    if known is not None and time.monotonic() - known[1] < REMEMBER:
        _answers.move_to_end(client_ip)
        return known[0]
    asking = _asking.get(client_ip)
    if asking is None:
        asking = _asking[client_ip] = asyncio.ensure_future(_look_up(client_ip))
        asking.add_done_callback(lambda done: _remember(client_ip, done))
    return await asyncio.shield(asking)  # a session that goes away leaves the lookup to the others


def _remember(client_ip: str, done: asyncio.Task[str]) -> None:
    _asking.pop(client_ip, None)
    if done.cancelled():
        return
    _answers[client_ip] = (done.result(), time.monotonic())
    _answers.move_to_end(client_ip)
    while len(_answers) > REMEMBERED:
        _answers.popitem(last=False)


async def _look_up(client_ip: str) -> str:
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:192.0.2.1 on a dual-stack socket: the IPv4 client it is
    resolver = dns.asyncresolver.get_default_resolver()
    kind = "AAAA" if address.version == 6 else "A"
    try:
        async with asyncio.timeout(TIMEOUT):
            pointers = await resolver.resolve(dns.reversename.from_address(str(address)), "PTR", lifetime=TIMEOUT)
            for pointer in list(pointers)[:MAX_NAMES]:
                name: str = pointer.target.to_text(omit_final_dot=True)
                if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in name.split(".")):
                    continue
                try:
                    forward = await resolver.resolve(pointer.target, kind, lifetime=TIMEOUT)
                except (dns.exception.DNSException, ValueError):
                    continue
                if any(ipaddress.ip_address(record.address) == address for record in forward):
                    return name.lower()
    except (TimeoutError, dns.exception.DNSException, ValueError):
        return ""
    return ""
