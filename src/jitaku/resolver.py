"""The DNS resolver every lookup goes through, so `[dns] nameservers` (and tests) steer them all.

dkimpy and pyspf call dnspython's module-level default resolver; the delivery
code uses the async one. `configure` points both at the same servers.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from dataclasses import dataclass
from typing import TypeVar

import dns.asyncresolver
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


def configure(nameservers: tuple[Nameserver, ...]) -> None:
    """Make every lookup in this process (ours, dkimpy's, pyspf's) ask these servers."""
    dns.resolver.default_resolver = _build(dns.resolver.Resolver, nameservers)
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
