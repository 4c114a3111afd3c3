"""The [backup] settings and what `jitaku backup` refuses before it runs restic (tests/integration/test_backup.py
drives restic itself)."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pytest

from jitaku.backup import restic as restic_module
from jitaku.backup.restic import Restic, _read
from jitaku.backup.snapshot import sqlite_file
from jitaku.config import Config, ConfigError, parse
from jitaku.errors import BackupError
from jitaku.provision import TEMPLATE

PATH = Path("/srv/jitaku/jitaku.toml")
DOMAINS = 'domains = ["example.org"]\n'


def test_backups_are_off_until_a_target_is_set_and_the_template_shows_every_key_at_its_default() -> None:
    default = parse(DOMAINS, PATH).backup
    assert not default.enabled and default.password_file == "backup.secret"
    block = re.search(r"^# \[backup\].*?\n\n", TEMPLATE, re.M | re.S)
    assert block is not None
    uncommented = re.sub(r"^# ?", "", block.group(0), flags=re.M)
    shown = parse(DOMAINS + uncommented, PATH).backup
    assert shown.enabled and shown.model_dump(exclude={"target"}) == default.model_dump(exclude={"target"})
    assert (shown.every, shown.verify_every, shown.keep_daily, shown.keep_weekly, shown.keep_monthly) == (
        86400,
        7 * 86400,
        7,
        4,
        12,
    )


def test_a_negative_schedule_is_refused_with_its_line() -> None:
    with pytest.raises(ConfigError, match=r"jitaku.toml:3: \[backup\] every"):
        parse(DOMAINS + '[backup]\nevery = -1\ntarget = "/mnt/b"\n', PATH)


def test_a_store_on_postgresql_is_refused_in_one_line() -> None:
    settings = parse(DOMAINS + '[database]\nurl = "postgresql://jitaku@db.example.org/jitaku"\n', PATH)
    with pytest.raises(BackupError, match=r"^backup on PostgreSQL comes later"):
        sqlite_file(Config(settings, PATH.parent))


def test_a_repository_path_and_the_password_file_are_the_data_dirs_wherever_the_command_runs() -> None:
    here = Path("relative/jitaku")
    settings = parse(DOMAINS + '[backup]\ntarget = "../second-disk/repo"\n', PATH)
    restic = Restic.of(Config(settings, here))
    assert restic.target == os.path.abspath("relative/second-disk/repo")
    assert restic.password_file == Path(os.path.abspath("relative/jitaku/backup.secret"))
    remote = parse(DOMAINS + '[backup]\ntarget = "sftp:backup@nas.lan:/srv/jitaku"\n', PATH)
    assert Restic.of(Config(remote, here)).target == "sftp:backup@nas.lan:/srv/jitaku"


def test_a_repository_inside_the_data_dir_is_refused() -> None:
    settings = parse(DOMAINS + '[backup]\ntarget = "repo"\n', PATH)
    with pytest.raises(BackupError, match=r"^the backup target /srv/jitaku/repo is inside the data directory"):
        Restic.of(Config(settings, PATH.parent))


def test_backups_off_say_which_key_turns_them_on() -> None:
    with pytest.raises(BackupError, match=r"^backups are off: set \[backup\] target in /srv/jitaku/jitaku.toml"):
        Restic.of(Config(parse(DOMAINS, PATH), PATH.parent))


def test_restics_status_lines_are_passed_on_and_dropped_and_its_output_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    status = b'{"message_type":"status","percent_done":0.5,"total_bytes":10,"bytes_done":5}\n'
    summary = b'{"message_type":"summary","snapshot_id":"0123abcd"}\n'
    seen: list[dict[str, object]] = []
    output, overflow = _read(io.BytesIO(status * 1000 + b"created restic repository\n" + summary), seen.append)
    assert not overflow and len(seen) == 1000 and seen[0]["percent_done"] == 0.5
    assert output.documents == [json.loads(summary)] and output.text == ["created restic repository"]
    monkeypatch.setattr(restic_module, "MAX_OUTPUT", 100)
    _, overflow = _read(io.BytesIO(b"x" * 60 + b"\n" + b"y" * 60 + b"\n"), None)
    assert overflow


def test_a_restic_that_does_not_finish_is_stopped_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(restic_module, "PROGRAM", "sleep")  # a child that takes its time, as a hung restic would
    hung = Restic("/srv/backup", Path("/srv/jitaku/backup.secret"), Path("/srv/jitaku/backup/cache"))
    began = time.monotonic()
    with pytest.raises(BackupError, match=r"^restic 60 did not finish within 1 s, and was stopped$"):
        hung.run("60", timeout=1)
    assert time.monotonic() - began < 30
