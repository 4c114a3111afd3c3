"""The DNS resolver every lookup goes through, so `[dns] nameservers` (and tests) steer them all.

dkimpy and pyspf call dnspython's module-level default resolver; the delivery
code uses the async one. `configure` points both at the same servers.

The synchronous one, which SPF, DKIM and DMARC checks use, answers from its own small cache
(`CachingResolver`): a hit costs a dict lookup rather than dnspython's whole resolution, and
`cached_only` lets a check run on the event loop, falling back to a thread only when it must wait
for the network.
"""

from __future__ import annotations

import collections
import copy
import ipaddress
import re
import threading
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import dns.asyncresolver
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.resolver

R = TypeVar("R", bound=dns.resolver.BaseResolver)


@dataclass(frozen=True)
class Nameserver:
    address: str
    port: int = 53


def parse_nameserver(value: str) -> Nameserver:
    """Parse "ip", "ip:port", "v6" or "[v6]:port" (the one parser for every nameserver key)."""
    value = value.strip()
    bracketed = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", value)
    if bracketed:
        address, port = bracketed.group(1), bracketed.group(2)
    elif value.count(":") == 1:
        address, port = value.split(":")
    else:
        address, port = value, None
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise ValueError(f'expected "ip" or "ip:port", got {value!r}') from None
    number = int(port) if port and port.isdigit() else 53
    if port is not None and (not port.isdigit() or not 0 < number < 65536):
        raise ValueError(f"expected a port 1-65535 in {value!r}")
    return Nameserver(address, number)


class NotCached(BaseException):
    """A lookup under `cached_only` that would have to ask the network. A BaseException, so the checks'
    own `except Exception` clauses do not turn it into a verdict (`Attempt.missed` says so regardless)."""


class Attempt:
    """One piece of work under `cached_only`: whether it needed a lookup the cache could not answer. It is
    its own context manager: contextlib's generator-based one was a hundredth of a signed message's CPU."""

    __slots__ = ("missed",)

    def __init__(self) -> None:
        self.missed = False

    def __enter__(self) -> Attempt:
        _local.attempt = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        _local.attempt = None


_local = threading.local()


def cached_only() -> Attempt:
    """Lookups in this thread, while inside (`with cached_only() as attempt`), answer from the cache or raise
    NotCached: work that must not wait for the network (on the event loop) tries this first and, if
    ATTEMPT.missed, is redone where it may wait."""
    return Attempt()


def missed() -> bool:
    """Whether this thread is inside `cached_only` and a lookup has missed the cache."""
    attempt: Attempt | None = getattr(_local, "attempt", None)
    return attempt is not None and attempt.missed


# What one cached name holds: when it expires, and the answer or the NXDOMAIN raised.
_Entry = tuple[float, "dns.resolver.Answer | dns.resolver.NXDOMAIN"]


class CachingResolver(dns.resolver.Resolver):
    """dnspython's resolver behind a small cache of whole answers, keyed by what was asked.

    Positive answers and NODATA live as long as dnspython's Answer says (the records' TTL, or the SOA
    minimum); NXDOMAIN as long as the SOA of its authority section says (RFC 2308: the lesser of its
    TTL and its minimum), not at all without one. At most MAX_ENTRIES names, the least recently used
    going first. Errors (timeouts, SERVFAIL) are not cached: the next message asks again.
    """

    MAX_ENTRIES = 2048

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._entries: collections.OrderedDict[tuple[Any, ...], _Entry] = collections.OrderedDict()
        self._lock = threading.Lock()
        self._keys: dict[tuple[Any, ...], tuple[Any, ...]] = {}

    def resolve(
        self,
        qname: dns.name.Name | str,
        rdtype: dns.rdatatype.RdataType | str = dns.rdatatype.A,
        rdclass: dns.rdataclass.RdataClass | str = dns.rdataclass.IN,
        tcp: bool = False,
        source: str | None = None,
        raise_on_no_answer: bool = True,
        source_port: int = 0,
        lifetime: float | None = None,
        search: bool | None = None,
    ) -> dns.resolver.Answer:
        asked = (qname, rdtype, rdclass, search)
        key = self._keys.get(asked)
        if key is None:
            key = self._key(asked)
        # the cache's hit, here rather than in a method of its own: three lookups a message on the MX
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                if entry[0] <= time.time():
                    del self._entries[key]
                    entry = None
                else:
                    self._entries.move_to_end(key)
        if entry is None:
            attempt: Attempt | None = getattr(_local, "attempt", None)
            if attempt is not None:
                attempt.missed = True
                raise NotCached(key[0])
            entry = self._ask(key, tcp, source, source_port, lifetime)
        found = entry[1]
        if isinstance(found, dns.resolver.NXDOMAIN):
            # a copy, each with its own traceback; cheaper than a new one, which formats its names (an
            # unsigned message meets several NXDOMAINs, and making them was an eighth of its checks)
            raise copy.copy(found)
        if found.rrset is None and raise_on_no_answer:
            raise dns.resolver.NoAnswer(response=found.response)  # type: ignore[no-untyped-call]
        return found

    def _key(self, asked: tuple[Any, ...]) -> tuple[Any, ...]:
        """The cache key for the arguments ASKED, remembered: spelling names and types out afresh
        (`str` of a name, `RdataType.make` of "TXT") for every lookup of every message was most of the
        cache's cost, and a mail server asks the same few questions again and again."""
        qname, rdtype, rdclass, search = asked
        key = (
            str(qname).lower(),
            dns.rdatatype.RdataType.make(rdtype),
            dns.rdataclass.RdataClass.make(rdclass),
            search,
        )
        with self._lock:
            if len(self._keys) >= self.MAX_ENTRIES:
                self._keys.clear()
            self._keys[asked] = key
        return key

    def _ask(
        self, key: tuple[Any, ...], tcp: bool, source: str | None, source_port: int, lifetime: float | None
    ) -> _Entry:
        qname, rdtype, rdclass, search = key
        try:
            answer = super().resolve(qname, rdtype, rdclass, tcp, source, False, source_port, lifetime, search)
        except dns.resolver.NXDOMAIN as error:
            response = next(iter(error.responses().values()), None)  # type: ignore[no-untyped-call]
            ttl = None if response is None else _negative_ttl(response)
            if response is None or ttl is None:
                raise
            entry: _Entry = (time.time() + ttl, error.with_traceback(None))
        else:
            entry = (answer.expiration, answer)
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.MAX_ENTRIES:
                self._entries.popitem(last=False)
        return entry


def _negative_ttl(response: dns.message.Message) -> float | None:
    """How long an NXDOMAIN may be remembered (RFC 2308 §5): the SOA's TTL, capped by its minimum."""
    for rrset in response.authority:
        if rrset.rdtype == dns.rdatatype.SOA and len(rrset):
            return float(min(rrset.ttl, rrset[0].minimum))
    return None


def configure(nameservers: tuple[Nameserver, ...]) -> None:
    """Make every lookup in this process (ours, dkimpy's, pyspf's) ask these servers."""
    dns.resolver.default_resolver = _build(CachingResolver, nameservers)
    dns.resolver.default_resolver.cache = None  # its own cache stands in front
    dns.asyncresolver.default_resolver = _build(dns.asyncresolver.Resolver, nameservers)  # type: ignore[assignment]


def _build(kind: type[R], nameservers: tuple[Nameserver, ...]) -> R:
    try:
        resolver = kind(configure=not nameservers)
    except dns.resolver.NoResolverConfiguration:
        resolver = kind(configure=False)
        resolver.nameservers = ["127.0.0.1"]
    resolver.cache = dns.resolver.LRUCache()
    resolver.lifetime = 10.0
    if nameservers:
        resolver.nameservers = [ns.address for ns in nameservers]
        resolver.nameserver_ports = {ns.address: ns.port for ns in nameservers}
        resolver.port = nameservers[0].port
    return resolver


def uncached_async_resolver() -> dns.asyncresolver.Resolver:
    """The configured servers without our cache: a record the owner has just published shows at once, and
    one just deleted no longer does."""
    resolver = copy.copy(dns.asyncresolver.get_default_resolver())
    resolver.cache = None
    return resolver
