"""The providers that publish our address: one module each, behind `Provider` (a new provider is one file)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx

from jitaku.interfaces import Address

USER_AGENT = "jitaku-ddns/1"  # DynDNS2 servers refuse clients that do not name themselves


@dataclass(frozen=True)
class Answer:
    ok: bool  # the provider took the address
    message: str  # what it said, for the log and `ddns status`; never a credential
    retry_after: float | None = None  # seconds the provider asks us to wait; None: the usual backoff
    fatal: bool = False  # retrying cannot help until the configuration changes (bad login, unknown name)


class Provider(Protocol):
    keepalive: float  # seconds between updates when nothing changed (the provider forgets idle records)

    async def update(self, client: httpx.AsyncClient, address: Address) -> Answer: ...
