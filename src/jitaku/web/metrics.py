"""`/metrics`: what the dashboard knows, as Prometheus text for outside tools (Prometheus, Grafana Agent,
VictoriaMetrics): the queue, mail in and out, deliveries by outcome, each check's state, DDNS, disks.

Prometheus cannot log in, so a scrape carries `Authorization: Bearer` with `[web] metrics_token`; without
a token configured there is no /metrics. Every figure is read from the store in one go at scrape time,
so every process answers the same, and counters are totals the store keeps across restarts.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from jitaku import store
from jitaku.config import Settings
from jitaku.health import history
from jitaku.health.result import Result
from jitaku.store.database import Database
from jitaku.store.statements import Statements

# Figures the disk and RAID checks keep per device as "DEVICE.FIGURE": (check, figure, metric, label, help, scale)
DEVICE_FIGURES = (
    ("smart", "temperature", "jitaku_disk_temperature_celsius", "disk", "The disk's temperature.", 1.0),
    ("smart", "reallocated", "jitaku_disk_reallocated_sectors", "disk", "SMART 5: sectors the disk replaced.", 1.0),
    ("smart", "pending", "jitaku_disk_pending_sectors", "disk", "SMART 197: unreadable sectors to replace.", 1.0),
    (
        "smart",
        "offline_uncorrectable",
        "jitaku_disk_offline_uncorrectable_sectors",
        "disk",
        "SMART 198: sectors the disk's own scan could not read.",
        1.0,
    ),
    ("smart", "crc_errors", "jitaku_disk_crc_errors", "disk", "SMART 199: transfer errors, usually the cable.", 1.0),
    ("smart", "media_errors", "jitaku_disk_media_errors", "disk", "NVMe media and data integrity errors.", 1.0),
    ("diskage", "hours", "jitaku_disk_power_on_seconds", "disk", "How long the disk has run in its life.", 3600.0),
    ("raid", "working", "jitaku_raid_members_working", "array", "Members of the md array that work.", 1.0),
    ("raid", "wanted", "jitaku_raid_members_wanted", "array", "Members the md array is made of.", 1.0),
    ("raid", "progress", "jitaku_raid_sync_ratio", "array", "How far the running rebuild or check is, 0 to 1.", 0.01),
)


@dataclass(frozen=True)
class Figures:
    """What one scrape reports, read in one transaction so that the figures agree with each other."""

    backlog: store.queue.Backlog
    totals: dict[str, int]
    checks: dict[str, tuple[float, Result]]
    ddns: list[store.ddns.State]


def read(statements: Statements) -> Figures:
    return Figures(
        store.queue.backlog(statements),
        store.tallies.totals(statements),
        history.latest(statements),
        store.ddns.all_states(statements),
    )


class Exposition:
    """A prometheus_client collector over one reading of FIGURES."""

    def __init__(self, figures: Figures, now: float) -> None:
        self._figures = figures
        self._now = now

    def collect(self) -> Iterator[Metric]:
        yield from self._mail()
        yield from self._queue()
        yield from self._checks()
        yield from self._devices()
        yield from self._ddns()

    def _mail(self) -> Iterator[Metric]:
        totals = self._figures.totals
        for name, kind, help_text in (
            (
                "jitaku_smtp_sessions_total",
                store.tallies.SMTP_SESSIONS,
                "SMTP sessions on the MX listener that greeted.",
            ),
            ("jitaku_messages_received_total", store.tallies.MAIL_IN, "Messages accepted on the MX listener."),
        ):
            yield CounterMetricFamily(name, help_text, value=totals.get(kind, 0))
        deliveries = CounterMetricFamily(
            "jitaku_deliveries_total",
            "Outbound delivery attempts per recipient, by outcome: delivered (to a remote server or the relay), "
            "bounced (refused for good or given up on), deferred (to be tried again).",
            labels=["outcome"],
        )
        for outcome, kind in (
            ("delivered", store.tallies.MAIL_OUT),
            ("bounced", store.tallies.BOUNCED),
            ("deferred", store.tallies.DEFERRED),
        ):
            deliveries.add_metric([outcome], totals.get(kind, 0))
        yield deliveries

    def _queue(self) -> Iterator[Metric]:
        backlog = self._figures.backlog
        yield GaugeMetricFamily("jitaku_queue_messages", "Messages waiting in the outbound queue.", value=backlog.size)
        age = self._now - backlog.oldest_at if backlog.oldest_at is not None else 0.0
        yield GaugeMetricFamily(
            "jitaku_queue_oldest_age_seconds", "How long the oldest queued message has waited; 0 when none.", value=age
        )

    def _checks(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "jitaku_check_state", "Each health check's last state: 0 ok, 1 warning, 2 critical.", labels=["check"]
        )
        watching = GaugeMetricFamily(
            "jitaku_check_watching",
            "1 while the check has something to watch; 0 when it watches nothing (no md arrays here, no smartctl).",
            labels=["check"],
        )
        at = GaugeMetricFamily(
            "jitaku_check_timestamp_seconds",
            "When each health check last ran, in seconds since the epoch.",
            labels=["check"],
        )
        for name, (when, result) in sorted(self._figures.checks.items()):
            state.add_metric([name], int(result.state))
            watching.add_metric([name], 1 if result.watching else 0)
            at.add_metric([name], when)
        yield from (state, watching, at)

    def _devices(self) -> Iterator[Metric]:
        for check, figure, name, label, help_text, scale in DEVICE_FIGURES:
            family = GaugeMetricFamily(name, help_text, labels=[label])
            found = self._figures.checks.get(check)
            for key, value in sorted(found[1].metrics.items() if found else ()):
                device, _dot, which = key.rpartition(".")
                if device and which == figure:
                    family.add_metric([device], value * scale)
            yield family

    def _ddns(self) -> Iterator[Metric]:
        labels = ["name", "family"]
        right = GaugeMetricFamily(
            "jitaku_ddns_published_right",
            "1 when the zone's authoritative servers answer the address we are at, 0 when not; absent while unknown.",
            labels=labels,
        )
        failing = GaugeMetricFamily(
            "jitaku_ddns_update_failing", "1 when the last update of the record failed.", labels=labels
        )
        checked = GaugeMetricFamily(
            "jitaku_ddns_checked_timestamp_seconds", "When the updater last learned our public address.", labels=labels
        )
        for record in self._figures.ddns:
            which = [record.name, f"ipv{record.family}"]
            if record.seen_right is not None:
                right.add_metric(which, 1 if record.seen_right else 0)
            failing.add_metric(which, 1 if record.error else 0)
            if record.address_at is not None:
                checked.add_metric(which, record.address_at)
        yield from (right, failing, checked)


def routes(settings: Settings, database: Database) -> list[Route]:
    token = settings.web.metrics_token.encode()
    if not token:  # nothing may read it: there is no such page
        return []

    async def scrape(request: Request) -> Response:
        scheme, _space, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            challenge = 'Bearer realm="jitaku"' + (', error="invalid_token"' if given else "")
            return PlainTextResponse(
                "/metrics needs Authorization: Bearer with [web] metrics_token\n",
                status_code=401,
                headers={"WWW-Authenticate": challenge},
            )
        figures = await database.query(read)
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(Exposition(figures, time.time())), media_type=content_type)

    return [Route("/metrics", scrape)]
