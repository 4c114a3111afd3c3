"""The dashboard at /admin/health, on the admin's layout: each check's state and sentence, graphs over 24 hours
and 7 days, recent alerts, and every DNS record we need beside what DNS serves; the same data as JSON under
/api/."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jitaku import dns_records, resolver, store
from jitaku.config import Settings
from jitaku.health import history
from jitaku.health.dns import public_addresses
from jitaku.store import Database
from jitaku.web import graphs
from jitaku.web.admin.page import AdminPages

RANGES = {"24h": 86400.0, "7d": 7 * 86400.0}
# (title, check, metric: a name, or ".suffix" for one line per disk, scale)
GRAPHS = (
    ("Traffic in, KiB/s", "traffic", "rx_rate", 1 / 1024),
    ("Traffic out, KiB/s", "traffic", "tx_rate", 1 / 1024),
    ("Queue, messages", "queue", "size", 1.0),
    ("Mail-flow probe, seconds", "mailflow", "seconds", 1.0),
    ("Disk temperature, °C", "smart", ".temperature", 1.0),
    ("Reallocated sectors", "smart", ".reallocated", 1.0),
    ("Pending sectors", "smart", ".pending", 1.0),
)
# the graph of tallies per hour: (label, kind)
MAIL_LINES = (
    ("in", store.tallies.MAIL_IN),
    ("out", store.tallies.MAIL_OUT),
    ("SMTP sessions", store.tallies.SMTP_SESSIONS),
)


def _when(timestamp: float) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(timestamp))


def _lines(samples: list[tuple[float, dict[str, float]]], metric: str, scale: float) -> dict[str, graphs.Points]:
    lines: dict[str, graphs.Points] = {}
    for at, metrics in samples:
        for name, value in metrics.items():
            if name == metric or (metric.startswith(".") and name.endswith(metric)):
                lines.setdefault(name.removesuffix(metric) if metric.startswith(".") else metric, []).append(
                    (at, value * scale)
                )
    return lines


class Dashboard:
    def __init__(
        self,
        settings: Settings,
        database: Database,
        admin: AdminPages,
        dkim: list[dns_records.Record],
        kept: Path | None = None,
    ) -> None:
        self._settings = settings
        self._kept = kept  # a standby's own health file: its database holds the primary's results
        self._dkim = dkim  # read from the key files once: a new key needs a restart to sign anyway
        self._database = database
        self._admin = admin

    def routes(self) -> list[Route]:
        protect = self._admin.gate.protect
        return [
            Route("/admin/health", protect(self._page)),
            Route("/api/health", protect(self._health_json, api=True)),
            Route("/api/graphs", protect(self._graphs_json, api=True)),
        ]

    async def _health(self) -> dict[str, Any]:
        if self._kept is not None:
            from jitaku.health import standby_file

            latest, alerts = standby_file.read(self._kept)
            alerts = alerts[:20]
        else:
            latest = await self._database.query(history.latest, snapshot=False)
            alerts = await self._database.query(
                lambda statements: store.health.recent_alerts(statements, 20), snapshot=False
            )
        states = await self._database.query(store.ddns.all_states, snapshot=False)
        learned = public_addresses([(state.family, state.address) for state in states])
        ours = dns_records.our_addresses(self._settings, learned)
        wanted = dns_records.needed(self._settings, self._dkim, ours)
        checks = [
            {**result.as_json(), "at": _when(at)}
            for at, result in sorted(latest.values(), key=lambda item: (-int(item[1].state), item[1].check))
        ]
        dns = [one.as_json() for one in await dns_records.look_up(wanted, resolver.uncached_async_resolver())]
        return {
            "hostname": self._settings.mail_hostname,
            "checks": checks,
            "alerts": [{**history.alert_as_json(alert), "at": _when(alert.at)} for alert in alerts],
            "dns": dns,
        }

    async def _series(self, span: str) -> tuple[float, float, list[tuple[str, dict[str, graphs.Points]]]]:
        """Each graph's title and lines over SPAN, averaged into buckets that fit the width."""
        end = time.time()
        start = end - RANGES[span]
        samples: dict[str, list[tuple[float, dict[str, float]]]] = {}
        found = []
        for title, check, metric, scale in GRAPHS:
            if check not in samples:
                samples[check] = await self._database.query(
                    functools.partial(store.health.series, check=check, since=start), snapshot=False
                )
            lines = _lines(samples[check], metric, scale)
            found.append((title, {label: graphs.bucket(points, start, end) for label, points in lines.items()}))
        mail: dict[str, graphs.Points] = {}
        for label, kind in MAIL_LINES:
            hours = await self._database.query(
                functools.partial(store.tallies.per_hour, kind=kind, since=start), snapshot=False
            )
            mail[label] = [(hour + 1800, float(count)) for hour, count in sorted(hours.items())]
        found.append(("Mail per hour: messages in, recipients out, SMTP sessions", mail))
        return start, end, found

    async def _page(self, request: Request) -> Response:
        span = request.query_params.get("range", "24h")
        span = span if span in RANGES else "24h"
        start, end, found = await self._series(span)
        drawn = [graphs.draw(title, lines, start, end) for title, lines in found]
        context = {
            **await self._health(),
            "graphs": drawn,
            "range": span,
            "ranges": list(RANGES),
            "dot": graphs.DOT,
        }
        return await self._admin.render(request, "health.html", "/admin/health", context)

    async def _health_json(self, request: Request) -> Response:
        return JSONResponse(await self._health())

    async def _graphs_json(self, request: Request) -> Response:
        span = request.query_params.get("range", "24h")
        if span not in RANGES:
            return JSONResponse({"error": f"range must be one of {', '.join(RANGES)}"}, status_code=400)
        _start, _end, found = await self._series(span)
        return JSONResponse(
            [
                {"title": title, "lines": [{"label": label, "points": points} for label, points in lines.items()]}
                for title, lines in found
            ]
        )
