"""The monitor inside `jitaku serve`: every check on its own interval, each result kept for the graphs,
and an alert through apprise on every change of state (or news within one, like a counter that grew),
a reminder while critical, and a notice on recovery. Plus the dead man's switch: a ping to an outside
service, which raises the alarm when the pings stop, whether we lost power or only our network."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

from jitaku import log, store
from jitaku.config import Config
from jitaku.health import checks, history
from jitaku.health.alerts import Alerter
from jitaku.health.result import Result, State
from jitaku.store import Database, Tx
from jitaku.store.health import Alert, Status

PRUNE_EVERY = 3600.0
SUMMARY_EVERY = 86400.0


class Monitor:
    def __init__(self, config: Config, database: Database) -> None:
        self._settings = config.settings
        self._database = database
        self._alerter = Alerter(config.settings.alerts, config.settings.hostname)
        self._context = checks.Context(config, database)
        self._statuses: dict[str, Status] = {}
        self._lock = asyncio.Lock()  # one alert decision at a time

    async def load(self) -> None:
        """What was known and said before a restart, so it is not said again."""
        self._statuses = await self._database.query(store.health.statuses, snapshot=False)
        latest = await self._database.query(history.latest, snapshot=False)
        self._context.previous = {name: result for name, (_at, result) in latest.items()}

    async def run(self) -> None:
        await self.load()
        async with asyncio.TaskGroup() as tasks:
            for name in checks.CHECKS:
                tasks.create_task(
                    self._every(self._settings.health.interval_of(name), functools.partial(self._check, name))
                )
            # the dead man's switch says this box serves: one waiting for its peer after a cold start takes no mail
            if self._settings.alerts.heartbeat_url and not self._context.waiting:
                tasks.create_task(self._every(self._settings.alerts.heartbeat_interval, self._heartbeat))
            if self._settings.alerts.daily_summary:
                tasks.create_task(self._every(SUMMARY_EVERY, self.summary, first=SUMMARY_EVERY))
            tasks.create_task(self._every(PRUNE_EVERY, self.prune))

    @staticmethod
    async def _every(interval: float, job: Callable[[], Awaitable[None]], first: float = 0.0) -> None:
        await asyncio.sleep(first)
        while True:
            started = time.monotonic()
            try:
                await job()
            except Exception as error:  # the monitor must outlive any one of its jobs
                log.event("monitor_error", error=repr(error))
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # A cancel the job lost: in 3.11, asyncio.wait_for (aiosmtplib's, in the certs check) drops one that
                # comes with the reply it waits for, and a SIGTERM during a round of checks stopped the daemon never.
                raise asyncio.CancelledError
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _check(self, name: str) -> None:
        for result in await checks.run(name, self._context):
            await self.judge(result, time.time())

    async def judge(self, result: Result, now: float) -> None:
        """Keep RESULT, and alert when it is news: a new state, new detail, or a reminder falls due.
        Targets that did not take an alert get it again next round, even after a restart (the others are
        not told twice)."""
        async with self._lock:
            known = self._statuses.get(result.check)
            sentence = result.said(self._settings.alerts.language)
            status = Status(result.check, result.state, result.detail, sentence, now, 0.0)
            kind, only = None, None
            if known is None:
                kind = "problem" if result.state != State.OK else None
            elif (known.state, known.detail) != (result.state, result.detail):
                kind = "recovery" if result.state == State.OK else "problem"
                status.since = now if known.state != result.state else known.since
                status.alerted_at = known.alerted_at
            else:
                status.since, status.alerted_at = known.since, known.alerted_at
                remind = self._settings.alerts.remind
                if result.state == State.CRITICAL and remind and now - known.alerted_at >= remind:
                    kind = "reminder"
                elif known.unsent:
                    kind, only = known.unsent_kind, set(known.unsent)
            if kind is not None and only is None:
                log.event("health_changed", check=result.check, state=str(result.state), alert=kind)
            alert = None
            if kind is not None:
                alert, missed = await self._alert(kind, result, sentence, now, only)
                status.alerted_at = now
                status.unsent_kind, status.unsent = (kind, missed) if missed else ("", frozenset())
            self._statuses[result.check] = status
            self._context.previous[result.check] = result
            await self.keep(result, status, alert, now)

    async def keep(self, result: Result, status: Status, alert: Alert | None, now: float) -> None:
        """RESULT for the graphs, STATUS for the next judgement, ALERT (if any) for the record: in the database."""

        def write(tx: Tx) -> None:
            store.health.record(tx, result, now)
            store.health.save_status(tx, status)
            if alert is not None:
                store.health.add_alert(tx, alert)

        await self._database.transact(write)

    async def _alert(
        self, kind: str, result: Result, sentence: str, now: float, only: set[int] | None
    ) -> tuple[Alert, frozenset[int]]:
        """The alert as recorded, and the targets that did not take it."""
        title = self._alerter.title(kind, result.check, result.state)
        if not self._alerter.configured:
            return Alert(now, result.check, kind, result.state, title, sentence, False), frozenset()
        deliveries = await self._alerter.send(title, sentence, result.state, only)
        for delivery in deliveries:
            log.event("alert_sent" if delivery.ok else "alert_failed", check=result.check, target=delivery.target)
        missed = frozenset(delivery.number for delivery in deliveries if not delivery.ok)
        return Alert(now, result.check, kind, result.state, title, sentence, not missed), missed

    async def _heartbeat(self) -> None:
        import httpx  # httpx (~16 MB with the CLI it loads) only in a daemon that uses it

        try:
            async with httpx.AsyncClient(timeout=10.0) as client:
                response = await client.get(self._settings.alerts.heartbeat_url)
            if response.status_code >= 400:
                log.event("heartbeat_failed", status=response.status_code)
        except httpx.HTTPError as error:
            log.event("heartbeat_failed", error=error.__class__.__name__)

    async def summary(self) -> None:
        lines = [
            self._alerter.line(status.check, State(status.state), status.sentence) for status in self._statuses.values()
        ]
        title = self._alerter.title("summary", "", State.OK)
        worst = State(max((status.state for status in self._statuses.values()), default=State.OK))
        deliveries = await self._alerter.send(title, "\n".join(lines), worst)
        alert = Alert(time.time(), "", "summary", worst, title, "\n".join(lines), all(d.ok for d in deliveries))
        await self.keep_alert(alert)

    async def announce(self, check: str, state: State, sentence: str, ja: str = "") -> None:
        """A one-off alert that no check's change of state raises (this box became the primary; it could not take
        the floating address): sent at once as a problem of CHECK, and recorded with the others; STATE OK says the
        problem one announced is over (a recovery)."""
        said = ja if self._settings.alerts.language == "ja" and ja else sentence
        kind = "recovery" if state == State.OK else "problem"
        title = self._alerter.title(kind, check, state)
        delivered = False
        if self._alerter.configured:
            deliveries = await self._alerter.send(title, said, state)
            for delivery in deliveries:
                log.event("alert_sent" if delivery.ok else "alert_failed", check=check, target=delivery.target)
            delivered = all(delivery.ok for delivery in deliveries)
        await self.keep_alert(Alert(time.time(), check, kind, state, title, said, delivered))

    async def keep_alert(self, alert: Alert) -> None:
        await self._database.transact(lambda tx: store.health.add_alert(tx, alert))

    async def prune(self) -> None:
        def prune(tx: Tx) -> None:
            now = time.time()
            store.health.prune(tx, now)
            store.tallies.prune(tx, now - store.health.KEEP_RESULTS)

        await self._database.transact(prune)
