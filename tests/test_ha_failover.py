"""The parts of `jitaku failover` and `jitaku switchover` that need no pair: whether a daemon runs, where this
box's MX is reached, the address the old primary is told to re-join, and the refusals before any cluster."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitaku import ports, serve_lock
from jitaku.config import Config, Listen, parse
from jitaku.ha import failover


def configured(tmp_path: Path, extra: str = "") -> Config:
    text = 'domains = ["example.org"]\n[smtp]\nlisten = ["0.0.0.0:25"]\n' + extra
    return Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)


def test_a_daemon_runs_while_its_serve_lock_is_held(tmp_path: Path) -> None:
    assert not serve_lock.running(tmp_path)  # no lock file yet
    with serve_lock.held(tmp_path):
        assert serve_lock.running(tmp_path)
    assert not serve_lock.running(tmp_path)
    assert (tmp_path / serve_lock.LOCK_NAME).read_text().strip().isdigit()  # the probe wrote nothing there


def test_the_mx_is_reached_where_the_running_daemon_listens(tmp_path: Path) -> None:
    config = configured(tmp_path)
    assert failover.mail_address(config) == ("127.0.0.1", 25)  # a wildcard, reached on loopback
    ports.record(tmp_path, {"mx": (Listen("::", 2525),)})
    assert failover.mail_address(config) == ("::1", 2525)


def test_the_old_primary_rejoins_our_cluster_where_it_can_reach_it(tmp_path: Path) -> None:
    listen = '[database]\nlisten = ["127.0.0.1:5433", "192.168.1.11:5433"]\n'
    config = configured(tmp_path, listen)
    assert failover._our_address(config, "127.0.0.1") == "127.0.0.1:5433"
    assert failover._our_address(config, "192.168.1.10") == "192.168.1.11:5433"  # not loopback for another box
    wildcard = configured(tmp_path, '[database]\nlisten = ["0.0.0.0:5433"]\n')
    assert failover._our_address(wildcard, "127.0.0.1") == "127.0.0.1:5433"
    # the address this box routes to the primary from (loopback's own, here)
    assert failover._our_address(wildcard, "127.0.0.2") == "127.0.0.1:5433"


def test_a_store_that_is_not_a_managed_cluster_is_refused(tmp_path: Path) -> None:
    with pytest.raises(failover.FailoverError, match="not a PostgreSQL cluster of jitaku's own"):
        failover.ready(configured(tmp_path))


def test_a_managed_cluster_without_its_daemon_is_refused(tmp_path: Path) -> None:
    config = configured(tmp_path, "[database]\nmanaged = true\n")
    with pytest.raises(failover.FailoverError, match=r"jitaku serve is not running on .*: start jitaku serve first"):
        failover.ready(config)
    with serve_lock.held(tmp_path):
        failover.ready(config)
