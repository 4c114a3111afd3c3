"""Where the data directory is without --dir: ./jitaku-data when it exists, else the service's directory when
it holds a config, else ./jitaku-data; --dir and $JITAKU_DIR are taken as given."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitaku import data_dir
from jitaku.cli.commands import app
from jitaku.config import ConfigError


@pytest.fixture
def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The service's directory (SERVICE_DIR pointed into tmp_path), and a working directory without a data dir."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    monkeypatch.delenv("JITAKU_DIR", raising=False)
    monkeypatch.setattr(data_dir, "SERVICE_DIR", tmp_path / "var-lib-jitaku")
    return tmp_path / "var-lib-jitaku"


def test_without_any_data_dir_it_is_the_local_one_for_init_to_make(service: Path) -> None:
    assert data_dir.find() == Path("jitaku-data")
    service.mkdir()  # the service's directory without a config is nobody's data
    assert data_dir.find() == Path("jitaku-data")


def test_the_services_dir_is_found_when_it_holds_a_config(service: Path) -> None:
    service.mkdir()
    (service / "jitaku.toml").write_text('domains = ["example.test"]\n')
    assert data_dir.find() == service


def test_a_local_data_dir_comes_before_the_services(service: Path) -> None:
    service.mkdir()
    (service / "jitaku.toml").write_text('domains = ["example.test"]\n')
    Path("jitaku-data").mkdir()
    assert data_dir.find() == Path("jitaku-data")


def run(*args: str) -> str:
    """What `jitaku ARGS` says is wrong with the config it read: the data directory it chose is named in it."""
    with pytest.raises(ConfigError) as refused:
        app([*args], prog_name="jitaku", standalone_mode=False)
    return str(refused.value)


def test_commands_use_the_dir_found_unless_told_one(service: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    service.mkdir()
    (service / "jitaku.toml").write_text("domains = 3\n")  # refused, naming its path, before anything is opened
    assert run("queue", "list").startswith(f"{service / 'jitaku.toml'}:")
    assert run("queue", "list", "--dir", "jitaku-data").startswith("jitaku-data/jitaku.toml: no config here")
    monkeypatch.setenv("JITAKU_DIR", "elsewhere")
    assert run("queue", "list").startswith("elsewhere/jitaku.toml: no config here")
