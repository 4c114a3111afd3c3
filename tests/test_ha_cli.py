"""The pair's guards on the command line, without a cluster: a fenced box allows no standby, a command that cannot
tell whether its peer was promoted meanwhile does nothing, a fenced box's database is never migrated by a read,
and where an old primary's fence would be delivered."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitaku.cli import common
from jitaku.cli import ha as cli_ha
from jitaku.cli.errors import CliError
from jitaku.config import Config, parse
from jitaku.errors import SchemaSkew
from jitaku.ha import alive, fence, mode, peer, role
from jitaku.store import Database
from jitaku.store.revision import SCHEMA_REVISION


def managed(tmp_path: Path) -> Config:
    return Config(parse('domains = ["example.org"]\n[database]\nmanaged = true\n', tmp_path / "jitaku.toml"), tmp_path)


def test_a_fenced_box_allows_no_standby_and_remembers_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = managed(tmp_path)
    fence.write(config, fence.Fence("failover", "http://192.0.2.1:8080", 1.0))
    monkeypatch.setattr(cli_ha, "_managed", lambda _dir: config)
    started: list[Config] = []
    monkeypatch.setattr(cli_ha, "hold_cluster", started.append)
    with pytest.raises(CliError, match=r"^this box is fenced \(failover, by http://192.0.2.1:8080\): run `jitaku"):
        cli_ha.allow("192.0.2.2", tmp_path)
    assert started == [] and not peer.peer_host_path(config).exists()


def test_a_command_that_cannot_ask_whether_its_peer_was_promoted_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = managed(tmp_path)
    monkeypatch.setattr(role, "current", lambda _config: role.PRIMARY)

    def broken(_config: Config) -> str | None:
        raise OSError("connection to server on socket failed\nsecond line")

    monkeypatch.setattr(mode, "newer_primary", broken)
    with pytest.raises(CliError, match=r"whether the peer was promoted .* \(connection to server on socket failed\)"):
        common._fence_if_superseded(config)
    assert fence.read(config) is None
    monkeypatch.setattr(mode, "newer_primary", lambda _config: "http://192.0.2.2:8080")
    common._fence_if_superseded(config)
    fenced = fence.read(config)
    assert fenced is not None and (fenced.purpose, fenced.by) == ("split-brain", "http://192.0.2.2:8080")


def test_a_database_opened_read_only_at_an_older_revision_is_refused_not_migrated(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'j.db'}"
    Database(url).close()
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0001'"))
    engine.dispose()
    with pytest.raises(SchemaSkew, match=rf"revision 0001, this jitaku's is {SCHEMA_REVISION}, .*opened read-only"):
        Database(url, read_only=True)
    engine = create_engine(url)
    with engine.begin() as connection:  # nothing tried
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
    engine.dispose()


def test_an_old_primary_s_fence_goes_to_its_web_port(tmp_path: Path) -> None:
    assert str(alive.web_door("http://192.168.1.10:8080")) == "its web at 192.168.1.10:8080"
    door = alive.web_door("https://[fd00::1]/")
    assert door is not None and (door.host, door.port) == ("fd00::1", 443)
    assert alive.web_door("http://192.168.1.10") == alive.Door("web", "192.168.1.10", 80)
    assert alive.web_door("not a url") is None
