"""The daemon's start order (jitaku.app.run): the pair's secret files are settled from the table before provision
makes a missing key and before the workers that load the keys fork, at the start and again after each change of
mode (a promotion)."""

from __future__ import annotations

from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from jitaku import app
from jitaku.config import Config, parse
from jitaku.ha import mode as ha_mode


def test_the_secret_files_settle_before_provision_and_the_workers_fork(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = Config(parse('hostname = "mx.example.test"\ndomains = ["example.test"]\n', tmp_path / "j.toml"), tmp_path)
    calls: list[str] = []
    modes = iter([ha_mode.STANDBY, ha_mode.PRIMARY])
    outcomes = iter(["promoted", "stopped"])

    def served(coroutine: Coroutine[Any, Any, Any]) -> str:
        coroutine.close()
        calls.append("serve")
        return next(outcomes)

    monkeypatch.setattr(app.ha_mode, "decide", lambda config, **_: next(modes))
    monkeypatch.setattr(app.secret_files, "settle", lambda config, standby: calls.append(f"settle standby={standby}"))
    monkeypatch.setattr(app.provision, "complete", lambda config: calls.append("provision"))
    monkeypatch.setattr(app, "_fork_workers", lambda *args: calls.append("fork") or [])
    monkeypatch.setattr(app.event_loop, "run", served)
    app.run(config, app.Sockets([], [], []))
    assert calls == [
        *("settle standby=True", "provision", "fork", "serve"),
        *("settle standby=False", "provision", "fork", "serve"),
    ]
