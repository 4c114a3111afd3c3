"""The old box is gone with its disk: on a new one, with nothing but the repository and the copy of the password
file kept elsewhere, `jitaku backup list` and `backup restore` read the snapshots (issue 26)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
from pathlib import Path

from tests.integration.harness import JITAKU, Jitaku
from tests.integration.test_backup import SNAPSHOT, box  # noqa: F401 - the fixture, shared

__all__ = ["box"]


def test_a_new_box_restores_from_the_repository_and_the_password_file_alone(box: Jitaku, tmp_path: Path) -> None:
    snapshot = box.cli("backup", "now").stdout.split(":")[0].removeprefix(SNAPSHOT)
    kept = tmp_path / "kept-elsewhere.secret"
    shutil.copy(box.dir / "backup.secret", kept)
    new_box = tmp_path / "new-box"
    new_box.mkdir()
    nothing = new_box / "jitaku"  # the default data directory: none on this box yet

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [*JITAKU, "backup", *args, "--dir", str(nothing)]
        return subprocess.run(command, capture_output=True, text=True, cwd=new_box, timeout=120)

    repository = ["--target", str(tmp_path / "repo"), "--password-file", str(kept)]
    listed = run("list", "--json", *repository)
    assert listed.returncode == 0, listed.stderr
    assert [item["id"] for item in json.loads(listed.stdout)] == [snapshot]
    restored = run("restore", snapshot, "--to", str(nothing), *repository)
    assert restored.returncode == 0, restored.stderr
    assert f"restored snapshot {snapshot} into {nothing}" in restored.stdout
    assert (nothing / "jitaku.toml").read_text() == (box.dir / "jitaku.toml").read_text()
    with sqlite3.connect(nothing / "jitaku.db") as database:
        assert database.execute("SELECT count(*) FROM users").fetchone() == (2,)
    assert not list(new_box.glob(".*")), "no cache or half-restored directory left behind"

    alone = run("list", "--target", str(tmp_path / "repo"))
    assert alone.returncode == 1 and alone.stderr.count("\n") == 1 and "--password-file" in alone.stderr
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not the password\n")
    refused = run("list", "--target", str(tmp_path / "repo"), "--password-file", str(wrong))
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
