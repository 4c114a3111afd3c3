"""The DDNS updater: every `[public_ip] interval`, find our address, compare it with what the zone's
authoritative servers publish, and tell the provider when it changed, when the record is wrong, or when
the provider's keepalive is due (and at once on start, so after a power cut DNS is right within a minute).

A refusal that retrying cannot mend (bad login, unknown host) stops updates for that record until its
credentials change or `jitaku ddns update --force`; other failures back off.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import httpx

from jitaku import interfaces, log, store
from jitaku.config import DdnsRecord, Settings
from jitaku.ddns import lock, public_address, verify
from jitaku.ddns.records import provider, secret
from jitaku.interfaces import Address
from jitaku.store import Database
from jitaku.store.ddns import State

BACKOFF_MIN = 60.0
BACKOFF_MAX = 3600.0


def config_key(record: DdnsRecord, password: str) -> str:
    """Changes whenever what we log in with changes, without keeping the password itself."""
    material = "\0".join([record.provider, record.username, password, record.endpoint, record.zone])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def backoff(attempts: int) -> float:
    return float(min(BACKOFF_MAX, BACKOFF_MIN * 2 ** min(attempts, 10)))


class Updater:
    def __init__(self, settings: Settings, data_dir: Path, database: Database) -> None:
        self._settings = settings
        self._data_dir = data_dir
        self._database = database

    async def run(self) -> None:
        while True:
            try:
                await self.round()
            except lock.Busy:
                pass  # `jitaku ddns update` is at it; our turn comes next interval
            except Exception as error:  # a bug must not stop the daemon's mail
                log.event("ddns_error", error=repr(error))
            await asyncio.sleep(self._settings.public_ip.interval)

    async def round(self, force: bool = False, wait: float = 0.0) -> list[State]:
        """One check of every record; FORCE updates even when nothing looks wrong."""
        with lock.held(self._data_dir, wait):
            records = self._settings.ddns
            async with httpx.AsyncClient(timeout=10.0) as client:
                v4 = (
                    await public_address.discover(client, list(self._settings.public_ip.sources))
                    if any(r.ipv4 for r in records)
                    else None
                )
                v6 = interfaces.global_ipv6() if any(r.ipv6 for r in records) else None
                states = []
                for record in records:
                    for family, address in ((4, v4), (6, v6)):
                        if record.ipv4 if family == 4 else record.ipv6:
                            states.append(await self._check(client, record, family, address, force))
                return states

    async def _check(
        self, client: httpx.AsyncClient, record: DdnsRecord, family: int, address: Address | None, force: bool
    ) -> State:
        password = secret(record, self._data_dir)
        key = config_key(record, password)
        state = await self._database.query(lambda s: store.ddns.get(s, record.name, family), snapshot=False)
        if state is None or state.config_key != key:
            state = State(record.name, family, record.provider, key)
        now = time.time()
        if address is None and family == 6:
            # not unknown but absent (no NAT for IPv6: our address is an interface's): say so, and what the
            # world is still shown, instead of "not checked yet" or the address we held before
            state.address, state.address_at = None, now
            published = await self._published(record, family, state, now)
            state.error = "this host has no global IPv6 address (only loopback, link-local or unique-local ones)"
            if published is not None and published.addresses:
                state.error += f"; DNS still answers {state.published}"
        elif address is None:
            state.error = "our public address is unknown: the sources gave no majority, or none answered"
        else:
            state.address, state.address_at = str(address), now
            published = await self._published(record, family, state, now)
            wrong = published is not None and published.addresses != {address}
            due = state.sent_address != str(address) or now >= state.next_keepalive or wrong
            if force or (due and not state.fatal and now >= state.retry_at):
                await self._update(client, record, family, address, state, password)
            elif published is not None and not due and not state.fatal:
                state.error = None  # the world sees us right and nothing waits: what went wrong before is past
        await self._database.transact(lambda tx: store.ddns.save(tx, state))
        return state

    async def _published(self, record: DdnsRecord, family: int, state: State, now: float) -> verify.Published | None:
        try:
            servers = list(record.verify_nameservers) or await verify.authoritative_servers(record.name)
            found = await verify.published(record.name, family, servers)
        except verify.Unverifiable as error:
            state.error = str(error)
            return None
        state.published = ",".join(sorted(str(a) for a in found.addresses))
        state.published_at = now
        return found

    async def _update(
        self, client: httpx.AsyncClient, record: DdnsRecord, family: int, address: Address, state: State, password: str
    ) -> None:
        updater = provider(record, password)
        answer = await updater.update(client, address)
        now = time.time()
        state.sent_at, state.result = now, answer.message
        if not answer.ok:
            state.fatal = answer.fatal
            state.error = answer.message
            state.retry_at = now + (answer.retry_after or backoff(state.attempts))
            state.attempts += 1
            log.event("ddns_failed", record=record.name, family=family, provider=record.provider, result=answer.message)
            return
        state.fatal = False
        state.sent_address = str(address)
        state.next_keepalive = now + (record.keepalive or updater.keepalive)
        published = await self._published(record, family, state, now)
        if published is not None and published.addresses != {address}:
            # the provider said yes, the world still sees something else: look again once the TTL has passed
            state.error = (
                f"{record.provider} answered {answer.message!r} but the authoritative servers still answer "
                f"{state.published or 'nothing'}"
            )
            state.retry_at = now + max(float(published.ttl), backoff(state.attempts))
            state.attempts += 1
            log.event("ddns_mismatch", record=record.name, family=family, sent=str(address), published=state.published)
            return
        state.error, state.attempts, state.retry_at = None, 0, 0.0
        log.event("ddns_updated", record=record.name, family=family, provider=record.provider, address=str(address))
