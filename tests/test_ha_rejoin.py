"""The switchover's re-join (jitaku.ha.rejoin), its order and when it gives the fence up, with the cluster's
commands replaced: the integration tests (test_failover.py) run it for real."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import Any

import pytest

from jitaku.config import Config, parse
from jitaku.ha import cluster, fence, rejoin, role, standby

SECRET = "the-pair-secret-0123456789abcdefghij"


@pytest.fixture
def config(tmp_path: Path) -> Config:
    text = 'domains = ["example.org"]\n[database]\nmanaged = true\nlisten = ["127.0.0.1:5433"]\n'
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    (tmp_path / "ha").mkdir(mode=0o700)
    standby.secret_path(config).write_text(SECRET + "\n")
    (tmp_path / "postgres").mkdir()
    fence.write(config, fence.Fence("switchover", "the-other-box", 1.0, rejoin="192.0.2.2:5433"))
    return config


@pytest.fixture
def commands(config: Config, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What was done to the cluster, in order; the cluster down once stopped."""
    done: list[str] = []
    up = [True]
    monkeypatch.setattr(cluster, "control", lambda _config: contextlib.nullcontext())
    monkeypatch.setattr(cluster, "running", lambda _config: 4242 if up[0] else None)
    monkeypatch.setattr(cluster, "account", lambda _config: None)
    monkeypatch.setattr(cluster, "stop", lambda _config: (done.append("stop"), up.__setitem__(0, False)))
    monkeypatch.setattr(cluster, "start", lambda _config: (done.append("start"), up.__setitem__(0, True)))
    control = {"Database cluster state": "shut down", "Latest checkpoint location": "0/3000028"}
    monkeypatch.setattr(cluster, "control_data", lambda _config: {**control, "Latest checkpoint's TimeLineID": "1"})

    def follow(*_args: Any) -> None:
        found = fence.read(config)
        done.append(f"follow (fence says {found.cluster if found else None})")
        (config.postgres_dir / "standby.signal").touch()

    monkeypatch.setattr(standby, "follow", follow)
    monkeypatch.setattr(rejoin, "_wait_promoted", lambda *_args: True)
    monkeypatch.setattr(rejoin, "_wait_in_recovery", lambda _config: None)
    return done


def test_the_cluster_is_made_a_standby_before_the_fence_says_it_stopped(config: Config, commands: list[str]) -> None:
    stopping = threading.Event()
    stopping.set()  # the daemon stops while it waits for the new primary to stream: the fence stays
    assert rejoin.rejoin(config, stopping) is False
    assert commands == ["stop", "follow (fence says running)", "start"]
    found = fence.read(config)
    assert found is not None and (found.cluster, found.checkpoint) == ("stopped", "0/3000028")


def test_a_standby_that_does_not_stream_from_the_new_primary_stays_fenced_and_says_why(
    config: Config, commands: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(_config: Config) -> Any:
        raise OSError("connection refused")

    monkeypatch.setattr(rejoin, "STREAM_WAIT", 0.0)
    monkeypatch.setattr(role, "connect", refused)
    with pytest.raises(rejoin.RejoinError, match="stays fenced"):
        rejoin.rejoin(config, threading.Event())
    assert fence.read(config) is not None  # never cleared after a mere timeout
    assert "stays fenced" in (rejoin.failure(config) or "")
    assert commands[-1] == "start"


def test_the_fence_goes_once_the_standby_streams_on_the_new_timeline(
    config: Config, commands: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Connection:
        def __enter__(self) -> Connection:
            return self

        def __exit__(self, *_args: object) -> None:
            return None

        def execute(self, _query: str, _params: Any) -> Any:
            class Row:
                def fetchone(self) -> tuple[str, int, bool]:
                    return ("streaming", 2, True)

            return Row()

    monkeypatch.setattr(role, "connect", lambda _config: Connection())
    (config.data_dir / "ha" / rejoin.FAILURE_NAME).write_text("an earlier try failed\n")
    assert rejoin.rejoin(config, threading.Event()) is True
    assert fence.read(config) is None and rejoin.failure(config) is None


def test_a_new_primary_never_promoted_leaves_the_cluster_stopped_a_primary_still(
    config: Config, commands: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rejoin, "_wait_promoted", lambda *_args: False)  # the switchover failed after its fence
    with pytest.raises(rejoin.Unpromoted, match="was not promoted within 120 s"):
        rejoin.rejoin(config, threading.Event())
    assert commands == ["stop", "follow (fence says running)"]  # never started: it would follow nobody
    assert not (config.postgres_dir / "standby.signal").exists()  # a primary still, for `jitaku failover --force`
    found = fence.read(config)
    assert found is not None and (found.cluster, found.checkpoint) == ("stopped", "0/3000028")
    assert "`jitaku failover --force` here" in (rejoin.failure(config) or "")


def test_a_rejoin_taken_back_meanwhile_does_nothing(config: Config, commands: list[str]) -> None:
    fence.clear(config)
    assert rejoin.rejoin(config, threading.Event()) is False
    assert commands == []
