"""DNS-01 through Cloudflare: the TXT record _acme-challenge.NAME set with the API token of the `[[ddns]]` table
whose zone holds NAME, and deleted once the order is over, whatever came of it.

Cloudflare alone among our DDNS providers can: MyDNS's DIRECTEDIT API sets TXT records only through its own
script's login, per domain, not as a record of ours, and DynDNS2 sets an address and nothing else. With those,
HTTP-01 (port 80 reachable from the Internet) is the way.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import httpx

from jitaku.config import Config, DdnsRecord
from jitaku.ddns.providers.cloudflare import ApiError, Cloudflare
from jitaku.ddns.records import secret
from jitaku.domains import organizational_domain

TIMEOUT = 30.0  # seconds for each request to Cloudflare


class DnsError(Exception):
    """One sentence: what Cloudflare answered, or that no table can set NAME's records."""


def record_name(name: str) -> str:
    return f"_acme-challenge.{name}"


def _zone(record: DdnsRecord) -> str:
    return record.zone or organizational_domain(record.name)


def table_for(config: Config, name: str) -> DdnsRecord:
    """The cloudflare [[ddns]] table whose zone holds NAME, the zone nearest NAME if several do."""
    holding = [
        record
        for record in config.settings.ddns
        if record.provider == "cloudflare" and (name == _zone(record) or name.endswith("." + _zone(record)))
    ]
    if not holding:
        raise DnsError(f"no cloudflare [[ddns]] table has a zone holding {name}, so DNS-01 cannot prove it")
    return max(holding, key=lambda record: len(_zone(record)))


@dataclass
class TxtRecords:
    """The TXT records set for one order, deleted together by `clear`."""

    config: Config
    made: list[tuple[Cloudflare, str]] = field(default_factory=list)

    def set(self, name: str, value: str) -> None:
        table = table_for(self.config, name)
        provider = Cloudflare(table.name, _zone(table), secret(table, self.config.data_dir), table.endpoint)
        record_id = asyncio.run(_set(provider, record_name(name), value))
        self.made.append((provider, record_id))

    def clear(self) -> list[str]:
        """Delete every record set; why each that could not be was not (a record left behind only clutters the
        zone: the next order's is another value beside it)."""
        errors = asyncio.run(_delete(self.made))
        self.made.clear()
        return errors


async def _set(provider: Cloudflare, name: str, value: str) -> str:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        try:
            return await provider.set_txt(client, name, value)
        except ApiError as error:
            raise DnsError(f"cannot set the TXT record {name}: {error.answer.message}") from None


async def _delete(made: list[tuple[Cloudflare, str]]) -> list[str]:
    errors = []
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for provider, record_id in made:
            try:
                await provider.delete_txt(client, record_id)
            except ApiError as error:
                errors.append(error.answer.message)
    return errors
