"""The health monitor of a standby's daemon. Its database is the primary's, replayed and read-only, so what the
monitor would write there (each check's result and state, the alerts it sent) goes to DIR/ha/health.json instead:
one small file, rewritten whole after each judgement, read back at start so that a restart does not alert again
about what was already said. The checks of a box that serves mail are left out (jitaku.health.checks.PRIMARY_ONLY)
and the standby's own (replication) is added."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from jitaku import log
from jitaku.config import Config
from jitaku.ha import cluster
from jitaku.health.monitor import Monitor
from jitaku.health.result import Result, State
from jitaku.store import Database
from jitaku.store.health import Alert, Status

FILE_NAME = "health.json"
KEEP_ALERTS = 50  # the latest alerts kept in the file, for a person reading it


def health_file(config: Config) -> Path:
    return config.data_dir / "ha" / FILE_NAME


def read(path: Path) -> tuple[dict[str, tuple[float, Result]], list[Alert]]:
    """Each check's latest result and when it came, and the latest alerts (newest first), as the file holds them:
    what a standby's dashboard and buddy show, its database's being the primary's. Nothing yet: nothing."""
    try:
        kept = json.loads(path.read_text(encoding="utf-8"))
        latest = {name: (float(found["at"]), _result(name, found)) for name, found in kept["results"].items()}
        alerts = [Alert(**alert) for alert in reversed(kept["alerts"])]
    except FileNotFoundError:
        return {}, []
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.event("health_file_unreadable", path=str(path), error=repr(error))
        return {}, []
    return latest, alerts


def _result(name: str, found: dict[str, Any]) -> Result:
    return Result(name, State(found["state"]), found["sentence"], found["metrics"], found["detail"])


class LocalMonitor(Monitor):
    def __init__(self, config: Config, database: Database, waiting: bool = False) -> None:
        """WAITING: a primary waiting for its peer after a cold start, which serves nothing (checks.Context)."""
        super().__init__(config, database)
        self._context.standby = True
        self._context.waiting = waiting
        self._path = health_file(config)
        self._results: dict[str, dict[str, Any]] = {}
        self._alerts: list[dict[str, Any]] = []

    async def load(self) -> None:
        try:
            kept = json.loads(self._path.read_text(encoding="utf-8"))
            self._statuses = {
                name: Status(**{**status, "unsent": frozenset(status["unsent"])})
                for name, status in kept["statuses"].items()
            }
            self._results, self._alerts = kept["results"], kept["alerts"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.event("health_file_unreadable", path=str(self._path), error=repr(error))
            return
        self._context.previous = {name: _result(name, found) for name, found in self._results.items()}

    async def keep(self, result: Result, status: Status, alert: Alert | None, now: float) -> None:
        self._results[result.check] = {
            "at": now,
            "state": int(result.state),
            "sentence": result.sentence,
            "metrics": result.metrics,
            "detail": result.detail,
        }
        if alert is not None:
            await self.keep_alert(alert)
        else:
            self._write()

    async def keep_alert(self, alert: Alert) -> None:
        self._alerts = [*self._alerts, asdict(alert)][-KEEP_ALERTS:]
        self._write()

    async def prune(self) -> None:
        """Nothing grows in the file: one result per check, the latest alerts."""

    def _write(self) -> None:
        statuses = {
            name: {**asdict(status), "unsent": sorted(status.unsent)} for name, status in self._statuses.items()
        }
        text = json.dumps({"statuses": statuses, "results": self._results, "alerts": self._alerts}, indent=1)
        try:
            self._path.parent.mkdir(mode=0o700, exist_ok=True)
            cluster.write_private(self._path, text + "\n", None)  # 0600 from its first byte, fsynced
        except OSError as error:  # a full disk must not stop the monitor; the next judgement writes again
            log.event("health_file_unwritable", path=str(self._path), error=repr(error))
