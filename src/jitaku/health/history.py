"""The checks' results and alerts as the store keeps them, read back as the health package's own types.

The store keeps plain values so that it need not import the services it serves; this is the one place
where a stored state number becomes a `State` again.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from jitaku import store
from jitaku.health.result import Result, State
from jitaku.store.statements import Statements

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def _result(reading: store.health.Reading) -> Result:
    return Result(reading.check, State(reading.state), reading.sentence, reading.metrics, reading.detail)


def latest(source: Connection | Statements) -> dict[str, tuple[float, Result]]:
    """Each check's newest result and when it came."""
    return {check: (at, _result(reading)) for check, (at, reading) in store.health.latest(source).items()}


def within(
    source: Connection | Statements, check: str, windows: list[tuple[float, float]]
) -> list[tuple[float, Result]]:
    """CHECK's results inside any of WINDOWS (start, end): the same hour on earlier days, say."""
    return [(at, _result(reading)) for at, reading in store.health.within(source, check, windows)]


def alert_as_json(alert: store.health.Alert) -> dict[str, Any]:
    return {**asdict(alert), "state": str(State(alert.state))}
