"""Health rows: results for graphs, each check's alerting state, and the alerts sent.

Kept as plain values (a state is its number: 0 ok, 1 warning, 2 critical): the store serves the health
package and must not import it. `health/history.py` reads them back as the checks' own types.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

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


_RESULT = "SELECT at, check_name, state, sentence, metrics, detail FROM health_results"
_STATUS = "check_name, state, detail, sentence, since, alerted_at, unsent_kind, unsent"
_ALERT = "at, check_name, kind, state, title, body, delivered"


def record(target: Connection | Tx, result: Recordable, now: float) -> None:
    tx_of(target).run(
        "INSERT INTO health_results (check_name, at, state, sentence, metrics, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (result.check, now, int(result.state), result.sentence, json.dumps(result.metrics), result.detail),
    )


def prune(target: Connection | Tx, now: float) -> None:
    tx = tx_of(target)
    tx.run("DELETE FROM health_results WHERE at < ?", (now - KEEP_RESULTS,))
    tx.run("DELETE FROM health_alerts WHERE at < ?", (now - 10 * KEEP_RESULTS,))


def _reading(row: Any) -> tuple[float, Reading]:
    at, check, state, sentence, metrics, detail = row
    return at, Reading(check, state, sentence, json.loads(metrics), detail)


def latest(source: Connection | Statements) -> dict[str, tuple[float, Reading]]:
    """Each check's newest result and when it came."""
    rows = statements_of(source).run(
        f"{_RESULT} JOIN (SELECT check_name AS newest_check, max(id) AS newest_id FROM health_results"
        " GROUP BY check_name) AS newest ON newest.newest_id = health_results.id"
    )
    return {reading.check: (at, reading) for at, reading in map(_reading, rows)}


def within(
    source: Connection | Statements, check: str, windows: list[tuple[float, float]]
) -> list[tuple[float, Reading]]:
    """CHECK's results inside any of WINDOWS (start, end): the same hour on earlier days, say. The windows are
    few (a week of days) and each a pair of values in one statement of as many."""
    if not windows:
        return []
    inside = " OR ".join("at BETWEEN ? AND ?" for _ in windows)
    rows = statements_of(source).run(
        f"{_RESULT} WHERE check_name = ? AND ({inside}) ORDER BY at",
        (check, *(bound for window in windows for bound in window)),
    )
    return [_reading(row) for row in rows]


def series(source: Connection | Statements, check: str, since: float) -> list[tuple[float, dict[str, float]]]:
    """CHECK's metrics since SINCE, oldest first: the dashboard's graphs."""
    rows = statements_of(source).run(
        "SELECT at, metrics FROM health_results WHERE check_name = ? AND at >= ? ORDER BY at", (check, since)
    )
    return [(at, json.loads(metrics)) for at, metrics in rows]


def statuses(source: Connection | Statements) -> dict[str, Status]:
    rows = statements_of(source).run(f"SELECT {_STATUS} FROM health_status")
    return {
        check: Status(
            check,
            state,
            detail,
            sentence,
            since,
            alerted_at,
            unsent_kind,
            frozenset(int(number) for number in unsent.split(",") if number),
        )
        for check, state, detail, sentence, since, alerted_at, unsent_kind, unsent in rows
    }


def save_status(target: Connection | Tx, status: Status) -> None:
    tx_of(target).run(
        f"INSERT INTO health_status ({_STATUS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (check_name) DO UPDATE SET"
        " state = excluded.state, detail = excluded.detail, sentence = excluded.sentence, since = excluded.since,"
        " alerted_at = excluded.alerted_at, unsent_kind = excluded.unsent_kind, unsent = excluded.unsent",
        (
            status.check,
            int(status.state),
            status.detail,
            status.sentence,
            status.since,
            status.alerted_at,
            status.unsent_kind,
            ",".join(str(number) for number in sorted(status.unsent)),
        ),
    )


def add_alert(target: Connection | Tx, alert: Alert) -> None:
    tx_of(target).run(
        f"INSERT INTO health_alerts ({_ALERT}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (alert.at, alert.check, alert.kind, int(alert.state), alert.title, alert.body, alert.delivered),
    )


def recent_alerts(source: Connection | Statements, limit: int = 50) -> list[Alert]:
    rows = statements_of(source).run(f"SELECT {_ALERT} FROM health_alerts ORDER BY at DESC LIMIT ?", (limit,))
    return [
        Alert(at, check, kind, state, title, body, bool(delivered))  # SQLite's delivered is 0 or 1
        for at, check, kind, state, title, body, delivered in rows
    ]
