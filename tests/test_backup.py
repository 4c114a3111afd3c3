"""The [backup] settings and what `jitaku backup` refuses before it runs restic (tests/integration/test_backup.py
drives restic itself)."""

from __future__ import annotations

import fcntl
import io
import json
import os
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jitaku.backup import repository, restore, snapshot
from jitaku.backup import restic as restic_module
from jitaku.backup.restic import Busy, NoRepository, Output, Restic, _read, redacted
from jitaku.backup.snapshot import copy_files, running, stage
from jitaku.config import Config, ConfigError, parse
from jitaku.errors import BackupError
from jitaku.provision import TEMPLATE
from jitaku.store.backup import Counts

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


def _restic() -> Restic:
    return Restic("/mnt/backup/repo", Path("/srv/jitaku/backup.secret"), Path("/srv/jitaku/backup/cache"))


def test_only_a_missing_config_file_means_no_repository_and_a_lock_means_busy() -> None:
    where = "Is there a repository at the following location?\n/mnt/backup/repo\n"
    missing = "Fatal: unable to open config file: stat /mnt/backup/repo/config: no such file or directory\n" + where
    assert isinstance(_restic().failure("snapshots", missing), NoRepository)
    for said, why in (
        ("Fatal: unable to open config file: stat /mnt/backup/repo/config: permission denied\n", "permission denied"),
        ("Fatal: unable to open config file: Stat: dial tcp 10.0.0.9:443: connect: connection refused\n", "refused"),
    ):
        failure = _restic().failure("init", said + where)
        assert not isinstance(failure, NoRepository) and "run `jitaku backup init`" not in str(failure)
        assert str(failure).startswith("cannot reach the restic repository at /mnt/backup/repo: ") and why in str(
            failure
        )
    locked = "Fatal: unable to create lock in backend: repository is already locked exclusively by PID 12 on box\n"
    assert isinstance(_restic().failure("check", locked), Busy)


def test_a_targets_password_is_left_out_of_every_sentence() -> None:
    target = "rest:https://jitaku:s3cret-word@nas.lan:8000/jitaku"
    assert redacted(target) == "rest:https://jitaku:***@nas.lan:8000/jitaku"
    restic = Restic(target, Path("/srv/jitaku/backup.secret"), Path("/srv/jitaku/backup/cache"))
    failure = restic.failure("backup", f"Fatal: unable to save snapshot: Post {target}/data/x: EOF\n")
    assert "s3cret-word" not in str(failure) and "jitaku:***@nas.lan" in str(failure)


def _local(tmp_path: Path, target: Path) -> Config:
    data_dir = tmp_path / "jitaku"
    data_dir.mkdir(exist_ok=True)
    return Config(parse(DOMAINS + f'[backup]\ntarget = "{target}"\n', data_dir / "jitaku.toml"), data_dir)


def test_init_refuses_a_repository_on_the_data_dirs_own_disk_unless_told(tmp_path: Path) -> None:
    # what an unmounted second disk looks like: its mount point is a directory on the root disk
    config = _local(tmp_path, tmp_path / "mnt" / "backup" / "repo")
    with pytest.raises(BackupError) as refused:
        repository.init(config)
    assert str(refused.value) == (
        f"the backup target {tmp_path / 'mnt/backup/repo'} is on the same disk as the data directory "
        f"{tmp_path / 'jitaku'}: is the backup disk mounted? A backup there goes with this disk; "
        "`jitaku backup init --same-disk` makes it anyway"
    )
    assert not (tmp_path / "mnt").exists()
    assert repository.init(config, same_disk=True) and (tmp_path / "mnt/backup/repo/config").is_file()
    assert not repository.init(config)  # there now: opened, wherever it is


def test_a_password_file_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _local(tmp_path, Path("/nonexistent/repo"))

    def killed(descriptor: int, data: bytes) -> int:
        raise KeyboardInterrupt  # as a kill between making the file and writing it

    monkeypatch.setattr(repository.os, "write", killed)
    with pytest.raises(KeyboardInterrupt):
        repository._password_file(Restic.of(config))
    assert sorted(path.name for path in config.data_dir.iterdir()) == []
    monkeypatch.undo()
    repository._password_file(Restic.of(config))
    written = config.data_dir / "backup.secret"
    assert len(written.read_text().strip()) >= 40 and written.stat().st_mode & 0o777 == 0o600


def test_a_snapshot_id_is_never_passed_to_restic_as_an_option(tmp_path: Path) -> None:
    config = _local(tmp_path, tmp_path / "repo")
    for given in ("--dry-run", "-h", "latest; rm", ""):
        with pytest.raises(BackupError, match=r"is no snapshot id: `jitaku backup list` shows them$"):
            restore.restore(Restic.of(config), given, tmp_path / "to")
        with pytest.raises(BackupError, match=r"is no snapshot id"):
            restore.verify(config, given)
    assert not (tmp_path / "to").exists()


def test_what_killed_runs_left_in_the_work_directory_goes_when_the_next_run_holds_it(tmp_path: Path) -> None:
    config = _local(tmp_path, tmp_path / "repo")
    for left in ("backup/verify-x1y2/jitaku.db", "backup/verify-x1y2/dkim/key.pem", "backup/staging/web.secret"):
        (config.data_dir / left).parent.mkdir(parents=True, exist_ok=True)
        (config.data_dir / left).write_text("a secret\n")
    with running(config) as work:
        assert sorted(path.name for path in work.iterdir()) == ["lock"]


def test_verify_checks_the_repository_while_it_holds_the_backup_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _local(tmp_path, tmp_path / "repo")
    held: dict[str, bool] = {}

    def run(self: Restic, *args: str, **options: Any) -> Output:
        with open(config.data_dir / "backup" / "lock") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held[args[0]] = False  # a `backup now` could start now
            except BlockingIOError:
                held[args[0]] = True
        if args[0] == "check":
            raise BackupError("restic check failed on x: the repository is already locked")  # sentence not the point
        return Output([], [])

    monkeypatch.setattr(Restic, "run", run)
    monkeypatch.setattr(restore, "_record", lambda directory: Counts())
    monkeypatch.setattr(restore, "_checked", lambda path, recorded: Counts())
    with pytest.raises(BackupError):
        restore.verify(config, "0123abcd")
    assert held == {"restore": True, "unlock": True, "check": True}


def test_verify_says_busy_not_damaged_when_another_restic_holds_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _local(tmp_path, tmp_path / "repo")

    def run(self: Restic, *args: str, **options: Any) -> Output:
        if args[0] == "check":
            raise self.failure(
                "check", "Fatal: unable to create lock in backend: repository is already locked by PID 7\n"
            )
        return Output([], [])

    monkeypatch.setattr(Restic, "run", run)
    monkeypatch.setattr(restore, "_record", lambda directory: Counts())
    monkeypatch.setattr(restore, "_checked", lambda path, recorded: Counts())
    with pytest.raises(Busy) as busy:
        restore.verify(config, "0123abcd")
    assert "failed verification" not in str(busy.value) and "try again when it ends" in str(busy.value)


def _data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    for name, text in {
        "jitaku.toml": "domains = []\n",
        "dkim/one.key": "1",
        "dkim/two.key": "2",
        "acme/state.json": "{}",
        "acme/.state.json.123.new": "{",
        "tls/key.pem": "old key",
        "tls/cert.pem": "old cert",
    }.items():
        (data_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (data_dir / name).write_text(text)
    staging = tmp_path / "staging"
    staging.mkdir()
    return data_dir


def test_a_file_the_daemon_removes_or_renames_meanwhile_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = _data_dir(tmp_path)
    copy2 = shutil.copy2

    def racing(source: Any, target: Any, **options: Any) -> Any:
        if Path(source).name == "two.key":
            Path(source).unlink()  # gone between the directory's listing and its copy
        return copy2(source, target, **options)

    monkeypatch.setattr(shutil, "copy2", racing)
    copy_files(data_dir, tmp_path / "staging")
    copied = sorted(str(path.relative_to(tmp_path / "staging")) for path in (tmp_path / "staging").rglob("*"))
    assert copied == [
        "acme",
        "acme/lock",
        "acme/state.json",
        "dkim",
        "dkim/one.key",
        "jitaku.toml",
        "tls",
        "tls/cert.pem",
        "tls/key.pem",
    ]


def test_a_copy_that_fails_is_one_sentence_never_a_python_list(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = _data_dir(tmp_path)
    monkeypatch.setattr(snapshot, "copy_sqlite", lambda source, target: Counts())

    def failing(source: Any, target: Any, **options: Any) -> Any:
        raise shutil.Error([(str(source), str(target), "[Errno 5] Input/output error")])

    monkeypatch.setattr(shutil, "copy2", failing)
    with pytest.raises(BackupError) as failed:
        stage(data_dir, data_dir / "jitaku.db", tmp_path / "staging")
    assert str(failed.value).startswith(f"cannot make the copy to send in {tmp_path / 'staging'}")
    assert "[(" not in str(failed.value) and "Errno" not in str(failed.value)


def test_the_tls_key_and_certificate_are_copied_as_a_pair_while_a_renewal_writes_them(tmp_path: Path) -> None:
    data_dir = _data_dir(tmp_path)
    with open(data_dir / "acme" / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a renewal under way, as acme/issue.py holds it
        copying = threading.Thread(target=copy_files, args=(data_dir, tmp_path / "staging"))
        copying.start()
        time.sleep(0.5)  # the copy reaches tls/ meanwhile; a slower one reaches it later, and the test holds
        (data_dir / "tls" / "key.pem").write_text("new key")
        (data_dir / "tls" / "cert.pem").write_text("new cert")
    copying.join(timeout=60)
    staged = tmp_path / "staging" / "tls"
    assert ((staged / "key.pem").read_text(), (staged / "cert.pem").read_text()) == ("new key", "new cert")
