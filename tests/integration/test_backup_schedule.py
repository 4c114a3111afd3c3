"""The daemon's backup schedule against real restic (issue 26): a primary with `[backup] every = 5` takes backups
by itself while it runs, prunes them to the retention, passes its restore drill, and the backup check is ok; after
a restart an hour's schedule takes no backup at once, and a damaged pack makes the scheduled drill fail and the
monitor alert naming the snapshot."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import READER, Jitaku
from tests.integration.test_health import Hook
from tests.peers import wait_until
from tests.postgres import on_postgresql


@pytest.fixture
def hook(stand_in: Any) -> Hook:
    return Hook(stand_in)


def _done(server: Jitaku) -> list[str]:
    """The snapshots the daemon's log says it took, in order."""
    return re.findall(r"event=backup_done snapshot=(\w+)", server.log())


def _listed(server: Jitaku) -> list[str]:
    """`backup list`'s ids."""
    return [item["id"] for item in json.loads(server.cli("backup", "list", "--json").stdout)]


def test_the_daemon_backs_up_by_itself_and_alerts_when_its_drill_finds_a_damaged_pack(
    jitaku_factory: Any, tmp_path: Path, hook: Hook
) -> None:
    if on_postgresql():
        pytest.skip("backup on PostgreSQL comes later (issue 26)")
    repository = tmp_path / "repo"
    server: Jitaku = jitaku_factory()
    server.settings["backup"] = {"target": str(repository), "every": 5, "verify_every": 5}
    server.settings["health"] = {"interval": 1.0}
    server.settings["alerts"] = {"urls": [hook.url]}
    server.write_config()
    server.init(READER)
    server.cli("backup", "init", "--same-disk")  # tmp_path: the data dir's disk
    server.start()

    # backups by itself, each but the newest of the day forgotten (keep_daily), and a drill that passed
    wait_until(
        lambda: "event=verify_done" in server.log() and "event=backup_pruned forgotten=1" in server.log(),
        timeout=40,
        interval=0.2,
    )
    # what it did, read with the daemon stopped: its next backup and drill would race the reads below for the
    # repository (and the CPU), and a backup taken but not yet pruned would list two
    server.stop()
    assert len(_done(server)) >= 2
    listed = _listed(server)
    assert len(listed) == 1 and listed[0] in _done(server)
    checked = json.loads(server.cli("check", "backup", "--json", check=False).stdout)
    [result] = [item for item in checked if item["check"] == "backup"]
    assert result["state"] == "ok", result
    assert re.search(
        r"the last backup, \w+, was taken \d+ minutes? ago; the last restore drill passed", result["sentence"]
    )
    assert result["metrics"]["repository_bytes"] > 0

    newest = json.loads((server.dir / "backup" / "state.json").read_text())["snapshot"]
    for pack in (repository / "data").rglob("*"):
        if pack.is_file():
            pack.chmod(0o600)
            with open(pack, "r+b") as opened:
                opened.seek(pack.stat().st_size // 2)
                opened.write(b"\xff" * 64)
    server.settings["backup"]["every"] = 3600  # a backup a moment ago: none at the restart
    server.write_config()
    taken = len(_done(server))
    server.start()
    _at, alert = wait_until(lambda: hook.first("critical: backup"), timeout=40, interval=0.5)
    assert alert["message"].startswith(f"snapshot {newest} failed verification: "), alert
    assert "event=verify_failed" in server.log()
    assert len(_done(server)) == taken
