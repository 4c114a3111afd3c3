"""Which mode the daemon serves in (jitaku.ha.mode), and the main process's loop over its services' outcomes
(jitaku.app.run): each outcome but "stopped" makes it decide again and serve again, in the same process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jitaku import app, services
from jitaku.config import Config, parse
from jitaku.ha import fence, mode


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(parse('domains = ["example.org"]\n', tmp_path / "jitaku.toml"), tmp_path)


def test_a_box_alone_without_a_fence_is_the_primary(config: Config) -> None:
    assert mode.decide(config) == "primary"
    assert mode.newer_primary(config) is None  # no pair: nobody to ask


def test_a_fence_file_makes_the_box_fenced_whatever_its_database(config: Config) -> None:
    fence.write(config, fence.Fence("failover", "http://192.0.2.2:8080", 1.0))
    assert mode.decide(config) == "fenced"
    (config.data_dir / "ha" / "fenced").write_text("not json")
    assert mode.decide(config) == "fenced"  # fail safe
    fence.clear(config)
    assert mode.decide(config) == "primary"


def test_the_main_process_serves_again_after_each_change_of_part(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes = iter(["standby", "primary", "fenced"])
    outcomes = iter(["promoted", "fenced", "stopped"])
    served: list[tuple[str, Any]] = []

    async def serve(_config: Config, serving: str, *_args: Any, after: Any = None) -> str:
        served.append((serving, after))
        return next(outcomes)

    monkeypatch.setattr(mode, "decide", lambda _config: next(modes))
    monkeypatch.setattr(services, "serve", serve)
    app.run(config, app.Sockets([], [], []))
    assert served == [("standby", None), ("primary", "promoted"), ("fenced", "fenced")]
    assert not (config.data_dir / "ports.json").exists()  # forgotten once it stopped, as before


def test_ports_are_recorded_once_for_every_run_of_the_services(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[str] = []
    outcomes = iter(["promoted", "stopped"])

    async def serve(*_args: Any, **_kwargs: Any) -> str:
        recorded.append(json.loads((config.data_dir / "ports.json").read_text())["web"])
        return next(outcomes)

    monkeypatch.setattr(mode, "decide", lambda _config: "primary")
    monkeypatch.setattr(services, "serve", serve)
    app.run(config, app.Sockets([], [], []))
    assert recorded == [[], []]
