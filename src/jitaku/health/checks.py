"""Every check by name, each fed what it needs: the daemon's monitor runs them on their intervals,
`jitaku check` runs them once."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from jitaku import log, store
from jitaku.acme import state as acme_state
from jitaku.backup import state as backup_state
from jitaku.config import Config
from jitaku.ddns import public_address
from jitaku.health import (
    backup,
    buddy,
    certs,
    diskage,
    disks,
    dns,
    filters,
    history,
    mailflow,
    raid,
    relay,
    replication,
    services,
    smart,
    smart_readings,
    smartctl,
    traffic,
)
from jitaku.health import ddns as ddns_check
from jitaku.health import queue as queue_check
from jitaku.health.result import Result, State, not_watching
from jitaku.store import Database
from jitaku.store.statements import Statements

TIMEOUT = 120.0


@dataclass
class Context:
    config: Config
    database: Database
    previous: dict[str, Result] = field(default_factory=dict)  # each check's last result
    standby: bool = False  # this box's database is a standby's: the checks of a box that serves mail do not apply
    waiting: bool = False  # a primary waiting for its peer after a cold start (jitaku.ha.mode): it serves nothing


# What a standby does not do, so is not checked there: serve mail (services, certs as served, the probe through
# our MX, the filters' engines, traffic that follows mail), keep a queue or DDNS (the primary's, replayed, would be
# judged twice, and wrongly after a failover), take backups (its schedule waits until it is promoted).
PRIMARY_ONLY = frozenset({"queue", "certs", "services", "mailflow", "traffic", "ddns", "relay", "filters", "backup"})
# Nor, on a box waiting for its peer after a cold start, whether the pair's services answer from outside: nothing
# serves them yet, and a critical alert at every cold start, never cleared by this box, would say nothing.
NOT_WHILE_WAITING = PRIMARY_ONLY | {"reachability"}


async def _raid(context: Context) -> Result:
    return await asyncio.to_thread(raid.check, context.config.settings.health.raid)


async def _readings(context: Context) -> smart_readings.Readings | None:
    """As root, smartctl's own readings (one serves the smart and diskage checks of a round: smartctl wakes
    sleeping disks); otherwise what `jitaku smart collect` last wrote, None before it first has."""
    health = context.config.settings.health
    if os.geteuid() == 0:
        max_age = min(health.interval_of("smart"), health.interval_of("diskage")) / 2
        return await asyncio.to_thread(smart_readings.take, health.smart, max_age)
    return await asyncio.to_thread(smart_readings.read, context.config.data_dir)


async def _smart(context: Context) -> Result:
    settings = context.config.settings.health.smart
    try:
        readings = await _readings(context)
    except smart_readings.BrokenReadings as broken:
        return Result("smart", State.WARNING, f"{broken}.", {"watching": False}, ja=f"{broken.ja}。")
    if readings is None:
        return smart_readings.not_collected("smart")
    if readings.missing:
        present = list(settings.devices) or disks.with_smart(await asyncio.to_thread(disks.read, settings.lsblk))
        result = smart.without_smartctl(smartctl.SmartctlMissing(readings.missing), present)
    else:
        previous = context.previous.get("smart")
        result = smart.check(settings, readings.drives, previous.metrics if previous else {})
    age = time.time() - readings.taken
    if age > smart_readings.stale_after(context.config.settings.health.interval_of("smart")):
        return smart_readings.aged(result, age)
    return result


async def _diskage(context: Context) -> Result:
    try:
        readings = await _readings(context)
    except smart_readings.BrokenReadings as broken:  # the smart check warns
        return not_watching("diskage", str(broken), broken.ja)
    if readings is None:
        return smart_readings.not_collected("diskage")
    if readings.missing:  # the smart check warns, when there are disks to read
        missing = smartctl.SmartctlMissing(readings.missing)
        return not_watching("diskage", str(missing), missing.ja)
    return diskage.check(context.config.settings.health.diskage, readings.drives, time.time())


async def _queue(context: Context) -> Result | None:
    backlog = await context.database.query(store.queue.backlog)
    return queue_check.check(context.config.settings.health.queue, backlog, time.time())


async def _certs(context: Context) -> Result | None:
    settings = context.config.settings
    serving = await certs.served(settings)
    data_dir = context.config.data_dir
    renewals = certs.Renewals(settings.acme_names, acme_state.read(data_dir)) if settings.acme.enabled else None
    return certs.check(settings.health.certs, context.config.tls_dir / "cert.pem", time.time(), serving, renewals)


async def _backup(context: Context) -> Result | None:
    settings = context.config.settings
    backups = await asyncio.to_thread(backup_state.read, context.config.data_dir)
    return backup.check(settings.health.backup, settings.backup, backups, time.time())


async def _services(context: Context) -> Result | None:
    return await services.check(context.config.settings)


async def _mailflow(context: Context) -> Result | None:
    return await mailflow.check(context.config.settings, context.database)


async def _traffic(context: Context) -> Result | None:
    settings = context.config.settings.health.traffic
    now = time.time()
    windows = traffic.same_hour(now)
    earlier = await context.database.query(
        lambda statements: history.within(statements, "traffic", windows), snapshot=False
    )
    try:
        received, sent = await asyncio.to_thread(traffic.counters, settings.interface)
    except LookupError as missing:
        ja = f"インターフェース {settings.interface} がありません。[health.traffic] interface を直してください。"
        return Result("traffic", State.WARNING, f"{missing}; mend [health.traffic] interface.", ja=ja)
    mail = await context.database.query(functools.partial(_mail_in_the_hour, since=now - 3600))
    return traffic.check(settings, received, sent, mail, now, context.previous.get("traffic"), earlier)


def _mail_in_the_hour(statements: Statements, since: float) -> traffic.Mail:
    return traffic.Mail(*(store.tallies.total(statements, kind, since) for kind in store.tallies.KINDS))


async def _ddns(context: Context) -> Result | None:
    states = await context.database.query(store.ddns.all_states, snapshot=False)
    return ddns_check.check(context.config.settings, states, time.time())


async def _dns(context: Context) -> Result | None:
    if not context.config.settings.health.dns.resolvers:
        return None
    states = await context.database.query(store.ddns.all_states, snapshot=False)
    ours = dns.public_addresses([(state.family, state.address) for state in states])
    if not ours:  # no DDNS updater keeps it: ask the echo services ourselves
        import httpx  # httpx (~16 MB with the CLI it loads) only in a daemon that uses it

        async with httpx.AsyncClient(timeout=10.0) as client:
            found = await public_address.discover(client, list(context.config.settings.public_ip.sources))
        # an echo service reached over IPv6 names our IPv6 address; only the IPv4 answer stands for the A record
        ours = dns.public_addresses([(4, str(found))] if found and found.version == 4 else [])
    return await dns.check(context.config.settings, ours)


async def _buddy(context: Context) -> Result | None:
    return await buddy.watch(context.config.settings.health.buddy)


async def _reachability(context: Context) -> Result | None:
    return await buddy.seen_from_buddy(context.config.settings.health.buddy)


async def _relay(context: Context) -> Result | None:
    states = await context.database.query(store.ddns.all_states, snapshot=False)
    return relay.check(context.config.settings, states)


async def _replication_from_primary(context: Context) -> Result | None:
    if not context.config.settings.database.managed:
        return None  # SQLite, or a PostgreSQL server of someone else's: no standby of ours to watch
    from jitaku.ha import sync

    facts = await asyncio.to_thread(sync.look_once, context.config)
    lost_at = replication.carried_lost_at(context.previous.get(replication.CHECK))
    return replication.check(facts, context.config.settings.ha.sync_timeout, time.time(), lost_at)


async def _replication(context: Context) -> Result | None:
    """On a standby: whether it receives the primary's WAL, and how far behind it is. On a primary: whether
    replication to its standby is synchronous (jitaku.ha.sync). Nothing on a primary's cluster that serves as a
    standby does (fenced, or waiting for its peer after a cold start): it receives nothing, and nothing is written
    there for a standby to receive."""
    if not context.standby:
        return await _replication_from_primary(context)
    from jitaku.ha import role, standby, status

    found = await asyncio.to_thread(status.status, context.config)
    if found["role"] == role.PRIMARY:
        return None
    return replication.on_standby(found, standby.secret_path(context.config).exists())


async def _filters(context: Context) -> list[Result]:
    since = time.time() - filters.DAY
    counts = await context.database.query(
        lambda statements: {kind: store.tallies.total(statements, kind, since) for kind in filters.COUNTED}
    )
    return await filters.check(context.config.settings.filters, counts)


# A check gives one result, none (nothing of it here), or several: the filters' one for each engine
CHECKS: dict[str, Callable[[Context], Awaitable[Result | list[Result] | None]]] = {
    "raid": _raid,
    "smart": _smart,
    "diskage": _diskage,
    "queue": _queue,
    "certs": _certs,
    "backup": _backup,
    "services": _services,
    "mailflow": _mailflow,
    "traffic": _traffic,
    "ddns": _ddns,
    "dns": _dns,
    "buddy": _buddy,
    "reachability": _reachability,
    "relay": _relay,
    "filters": _filters,
    "replication": _replication,
}


def timeout(name: str, context: Context) -> float:
    """How long a check may take: a smartctl stuck on a dying disk must not silence the check for good."""
    health = context.config.settings.health
    return max(TIMEOUT, health.mailflow.deadline + TIMEOUT) if name == "mailflow" else TIMEOUT


async def run(name: str, context: Context) -> list[Result]:
    """One check's results; a check that breaks or hangs is itself a warning, never the monitor's end."""
    if (context.standby and name in PRIMARY_ONLY) or (context.waiting and name in NOT_WHILE_WAITING):
        return []
    try:
        async with asyncio.timeout(timeout(name, context)):  # not wait_for: in 3.11 it can lose a cancellation
            found = await CHECKS[name](context)
        return found if isinstance(found, list) else [] if found is None else [found]
    except TimeoutError:
        log.event("check_error", check=name, error="timeout")
        seconds = timeout(name, context)
        ja = f"{name} のチェックが {seconds:.0f} 秒たっても終わりませんでした。"
        return [Result(name, State.WARNING, f"the {name} check did not finish in {seconds:.0f} s.", ja=ja)]
    except Exception as error:
        log.event("check_error", check=name, error=repr(error))
        ja = f"{name} のチェック自体が失敗しました: {error!r}。"
        return [Result(name, State.WARNING, f"the {name} check itself failed: {error!r}.", ja=ja)]


async def run_all(context: Context, names: list[str] | None = None) -> list[Result]:
    results = await asyncio.gather(*(run(name, context) for name in names or CHECKS))
    return [result for found in results for result in found]
