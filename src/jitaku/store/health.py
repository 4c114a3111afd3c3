"""Health rows: results for graphs, each check's alerting state, and the alerts sent.

Kept as plain values (a state is its number: 0 ok, 1 warning, 2 critical): the store serves the health
package and must not import it. `health/history.py` reads them back as the checks' own types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import delete, desc, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from jitaku.store.schema import health_alerts, health_results, health_status

KEEP_RESULTS = 8 * 86400.0  # a week of graphs, and a day to spare


class Recordable(Protocol):
    """What `record` keeps of a check's result (the health package's Result has it)."""

    @property
    def check(self) -> str: ...
    @property
    def state(self) -> int: ...
    @property
    def sentence(self) -> str: ...
    @property
    def metrics(self) -> dict[str, float]: ...
    @property
    def detail(self) -> str: ...


@dataclass(frozen=True)
class Reading:
    """A result as it was recorded."""

    check: str
    state: int
    sentence: str
    metrics: dict[str, float]
    detail: str


@dataclass
class Status:
    check: str
    state: int
    detail: str
    sentence: str
    since: float
    alerted_at: float
    unsent_kind: str = ""  # the last alert's kind, while some targets have not taken it
    unsent: frozenset[int] = frozenset()  # those targets' numbers in [alerts] urls


@dataclass(frozen=True)
class Alert:
    at: float
    check: str
    kind: str
    state: int
    title: str
    body: str
    delivered: bool


def record(connection: Connection, result: Recordable, now: float) -> None:
    connection.execute(
        insert(health_results).values(
            check_name=result.check,
            at=now,
            state=int(result.state),
            sentence=result.sentence,
            metrics=json.dumps(result.metrics),
            detail=result.detail,
        )
    )


def prune(connection: Connection, now: float) -> None:
    connection.execute(delete(health_results).where(health_results.c.at < now - KEEP_RESULTS))
    connection.execute(delete(health_alerts).where(health_alerts.c.at < now - 10 * KEEP_RESULTS))


def _reading(row: Any) -> Reading:
    return Reading(row.check_name, row.state, row.sentence, json.loads(row.metrics), row.detail)


def latest(connection: Connection) -> dict[str, tuple[float, Reading]]:
    """Each check's newest result and when it came."""
    newest = (
        select(health_results.c.check_name, func.max(health_results.c.id).label("id"))
        .group_by(health_results.c.check_name)
        .subquery()
    )
    rows = connection.execute(select(health_results).join(newest, newest.c.id == health_results.c.id))
    return {row.check_name: (row.at, _reading(row)) for row in rows}


def within(connection: Connection, check: str, windows: list[tuple[float, float]]) -> list[tuple[float, Reading]]:
    """CHECK's results inside any of WINDOWS (start, end): the same hour on earlier days, say."""
    if not windows:
        return []
    inside = or_(*(health_results.c.at.between(start, end) for start, end in windows))
    rows = connection.execute(
        select(health_results).where(health_results.c.check_name == check, inside).order_by(health_results.c.at)
    )
    return [(row.at, _reading(row)) for row in rows]


def series(connection: Connection, check: str, since: float) -> list[tuple[float, dict[str, float]]]:
    """CHECK's metrics since SINCE, oldest first: the dashboard's graphs."""
    rows = connection.execute(
        select(health_results.c.at, health_results.c.metrics)
        .where(health_results.c.check_name == check, health_results.c.at >= since)
        .order_by(health_results.c.at)
    )
    return [(row.at, json.loads(row.metrics)) for row in rows]


def statuses(connection: Connection) -> dict[str, Status]:
    rows = connection.execute(select(health_status))
    return {
        row.check_name: Status(
            row.check_name,
            row.state,
            row.detail,
            row.sentence,
            row.since,
            row.alerted_at,
            row.unsent_kind,
            frozenset(int(number) for number in row.unsent.split(",") if number),
        )
        for row in rows
    }


def save_status(connection: Connection, status: Status) -> None:
    values = {
        "state": int(status.state),
        "detail": status.detail,
        "sentence": status.sentence,
        "since": status.since,
        "alerted_at": status.alerted_at,
        "unsent_kind": status.unsent_kind,
        "unsent": ",".join(str(number) for number in sorted(status.unsent)),
    }
    found = connection.execute(update(health_status).where(health_status.c.check_name == status.check).values(**values))
    if found.rowcount == 0:
        connection.execute(insert(health_status).values(check_name=status.check, **values))


def add_alert(connection: Connection, alert: Alert) -> None:
    connection.execute(
        insert(health_alerts).values(
            at=alert.at,
            check_name=alert.check,
            kind=alert.kind,
            state=int(alert.state),
            title=alert.title,
            body=alert.body,
            delivered=alert.delivered,
        )
    )


def recent_alerts(connection: Connection, limit: int = 50) -> list[Alert]:
    rows = connection.execute(select(health_alerts).order_by(desc(health_alerts.c.at)).limit(limit))
    return [Alert(row.at, row.check_name, row.kind, row.state, row.title, row.body, row.delivered) for row in rows]
