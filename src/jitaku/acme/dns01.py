"""DNS-01 through Cloudflare: the TXT record _acme-challenge.NAME set with the API token of the `[[ddns]]` table
whose zone holds NAME, and deleted once the order is over, whatever came of it.

Cloudflare alone among our DDNS providers can: MyDNS's DIRECTEDIT API sets TXT records only through its own
script's login, per domain, not as a record of ours, and DynDNS2 sets an address and nothing else. With those,
HTTP-01 (port 80 reachable from the Internet) is the way.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

import httpx

from jitaku import log
from jitaku.config import Config, DdnsRecord
from jitaku.ddns import verify
from jitaku.ddns.providers.cloudflare import ApiError, Cloudflare
from jitaku.ddns.records import secret
from jitaku.domains import organizational_domain
from jitaku.resolver import Nameserver

TIMEOUT = 30.0  # seconds for each request to Cloudflare
WAIT = 120.0  # seconds for the records to be served, at most (lego's default; certbot-dns-cloudflare sleeps 10 s)
POLL = 2.0


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
class _Txt:
    provider: Cloudflare
    table: DdnsRecord
    name: str  # _acme-challenge.NAME
    value: str
    record_id: str | None = None  # None: Cloudflare's answer to the POST never came, or said no


@dataclass
class TxtRecords:
    """The TXT records set for one order, deleted together by `clear`."""

    config: Config
    made: list[_Txt] = field(default_factory=list)

    def set(self, name: str, value: str) -> None:
        table = table_for(self.config, name)
        provider = Cloudflare(table.name, _zone(table), secret(table, self.config.data_dir), table.endpoint)
        made = _Txt(provider, table, record_name(name), value)
        self.made.append(made)  # before the POST: one whose answer is lost may be in the zone all the same
        made.record_id = asyncio.run(_set(provider, made.name, value))

    def wait_served(self, wait: float = WAIT) -> None:
        """Back once the zone's authoritative servers (or the table's verify_nameservers) serve every record set, or
        after WAIT seconds: the CA asks those servers the moment it is told to, and a record Cloudflare has taken
        but not yet spread would fail the name. One never seen is left to the CA to judge."""
        missing = asyncio.run(_until_served(self.made, wait))
        if missing:
            log.event("acme_txt_not_served", level=logging.WARNING, names=",".join(missing), waited=wait)

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


async def _until_served(made: list[_Txt], wait: float) -> list[str]:
    """The names of MADE's records not served by the end of WAIT seconds; one whose servers cannot be found is
    logged and not waited for."""
    clock = asyncio.get_running_loop().time
    deadline = clock() + wait
    servers: dict[str, list[Nameserver]] = {}
    waiting = []
    for txt in made:
        try:
            servers[txt.name] = list(txt.table.verify_nameservers) or await verify.authoritative_servers(txt.name)
        except verify.Unverifiable as error:
            log.event("acme_txt_unverifiable", level=logging.WARNING, record=txt.name, error=str(error))
            continue
        waiting.append(txt)
    while waiting:
        served = await asyncio.gather(*(_served(txt, servers[txt.name]) for txt in waiting))
        waiting = [txt for txt, seen in zip(waiting, served, strict=True) if not seen]
        if not waiting or clock() >= deadline:
            break
        await asyncio.sleep(min(POLL, deadline - clock()))
    return [txt.name for txt in waiting]


async def _served(txt: _Txt, servers: list[Nameserver]) -> bool:
    """Whether every server of SERVERS that answers serves TXT's value, and one at least does."""
    answers = await asyncio.gather(*(verify.texts(txt.name, server) for server in servers), return_exceptions=True)
    answered = [answer for answer in answers if isinstance(answer, frozenset)]
    return bool(answered) and all(txt.value in answer for answer in answered)


async def _delete(made: list[_Txt]) -> list[str]:
    errors = []
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        for txt in made:
            try:
                ids = [txt.record_id] if txt.record_id else await txt.provider.find_txt(client, txt.name, txt.value)
                for record_id in ids:
                    await txt.provider.delete_txt(client, record_id)
            except ApiError as error:
                errors.append(error.answer.message)
    return errors
