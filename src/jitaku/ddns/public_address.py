"""Which address is ours as the world sees it: asked of several echo services, decided by majority.

An answer that cannot be a public address (RFC 1918, loopback, link-local,
CGNAT 100.64.0.0/10, unique-local IPv6 ...) is refused: a router that answers
for itself, or an ISP's carrier-grade NAT, must never be published. The
documentation ranges (RFC 5737, RFC 3849) count as public, as data only, so
tests can use them.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter

import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_NOT_PUBLIC = [
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "224.0.0.0/3",
        "::/127",
        "::ffff:0:0/96",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
]


def is_public(address: Address) -> bool:
    return not any(address.version == net.version and address in net for net in _NOT_PUBLIC)


def parse_answer(text: str) -> Address | None:
    """An echo service's answer: the address alone, perhaps with whitespace around it."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    return address if is_public(address) else None


def majority(answers: list[Address | None]) -> Address | None:
    """The address more than half of the sources that answered agree on; None when there is none."""
    counted = Counter(answer for answer in answers if answer is not None)
    if not counted:
        return None
    address, votes = counted.most_common(1)[0]
    return address if votes * 2 > sum(counted.values()) else None


async def ask(client: httpx.AsyncClient, url: str) -> Address | None:
    try:
        response = await client.get(url)
    except httpx.HTTPError:
        return None
    return parse_answer(response.text) if response.status_code == 200 else None


async def discover(client: httpx.AsyncClient, sources: list[str]) -> Address | None:
    """Our public address by majority of SOURCES, asked at once; None when they do not agree."""
    return majority(list(await asyncio.gather(*(ask(client, url) for url in sources))))
