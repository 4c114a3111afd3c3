"""Which address is ours as the world sees it: asked of several echo services, decided by majority.

An answer that cannot be a public address (`interfaces.is_public`) is refused: a router that
answers for itself, or an ISP's carrier-grade NAT, must never be published.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections import Counter
from typing import TYPE_CHECKING

from jitaku.interfaces import Address, is_public

if TYPE_CHECKING:
    import httpx


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
    import httpx  # loaded already by whoever made CLIENT; not at import, for the health checks that import us

    try:
        response = await client.get(url)
    except httpx.HTTPError:
        return None
    return parse_answer(response.text) if response.status_code == 200 else None


async def discover(client: httpx.AsyncClient, sources: list[str]) -> Address | None:
    """Our public address by majority of SOURCES, asked at once; None when they do not agree."""
    return majority(list(await asyncio.gather(*(ask(client, url) for url in sources))))
