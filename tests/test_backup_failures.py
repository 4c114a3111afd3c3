"""What a failed restic run comes to, without restic (issue 26): a full disk blamed on the right one (the target,
restic's cache, its TMPDIR, a restore's files), a run refused over a lock tried again only when that lock is a
dead restic's of this host, no restic started once the daemon stops, and which of the CLI's failures state.json
records for the backup check. tests/integration/test_backup_full_disk.py runs the full disk against real restic."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from jitaku.backup import child, restore, snapshot, state
from jitaku.backup import restic as restic_module
from jitaku.backup.restic import Busy, Output, Restic, StaleLock
from jitaku.cli import backup as backup_cli
from jitaku.errors import BackupError
from jitaku.store.backup import Counts

SECRET = Path("/srv/my data/backup.secret")
CACHE = Path("/srv/my data/backup/cache")  # a data dir with a space in its name
FULL = "no space left on device"
REMOTE = "sftp:u@nas.lan:/srv/repo"
LOCAL = "/mnt/backup/repo"
BUFFERS = "/var/spool/jitaku-tmp"  # the TMPDIR the tests give restic


@pytest.fixture(autouse=True)
def _tmpdir(monkeypatch: pytest.MonkeyPatch) -> None:
    """A TMPDIR that does not exist, as a full one is to Python: tempfile.gettempdir() would skip it."""
    monkeypatch.setenv("TMPDIR", BUFFERS)


def _target_full(target: str, kept: bool) -> str:
    made = ", and no snapshot was made" if kept else ""
    return (
        f"the backup target {target} is full (no space left on device){made}: free space on it, or point [backup]"
        " target at a disk with room"
    )


def _elsewhere(command: str, path: str) -> str:
    return f"restic {command} could not write {path}: its disk is full (no space left on device); free space there"


@pytest.mark.parametrize(
    ("target", "command", "said", "expected"),
    [
        # the target's own files: the target is full, and a backup says it kept nothing
        (
            LOCAL,
            "backup",
            f"Fatal: unable to save snapshot: write {LOCAL}/data/ab/ab12: {FULL}",
            _target_full(LOCAL, True),
        ),
        (LOCAL, "check", f"Fatal: open {LOCAL}/locks/ab12: {FULL}", _target_full(LOCAL, False)),
        (REMOTE, "backup", f"Fatal: sftp: write /srv/repo/data/ab/ab12: {FULL}", _target_full(REMOTE, True)),
        # restic's cache, in a data dir whose name has a space
        (REMOTE, "backup", f"Save(<data/ab12>) failed: write {CACHE}/0123/data/ab/ab12: {FULL}", None),
        (LOCAL, "backup", f"mkdir {CACHE}/0123/snapshots: {FULL}", None),
        # restic's pack buffers, in TMPDIR
        (REMOTE, "backup", f"Fatal: Write: write {BUFFERS}/restic-temp-pack-123: {FULL}", None),
        (LOCAL, "backup", f"Fatal: Write: write {BUFFERS}/restic-temp-pack-123: {FULL}", None),
        # a restore's files, on this box whatever the target
        (REMOTE, "restore", f"ignoring error for /jitaku.db: write /srv/new/.new.restoring-12/jitaku.db: {FULL}", None),
        (LOCAL, "restore", f"open /srv/new/.new.restoring-12/tls/key.pem: {FULL}", None),
    ],
)
def test_a_full_disk_is_blamed_on_the_disk_restic_could_not_write(
    target: str, command: str, said: str, expected: str | None
) -> None:
    failure = Restic(target, SECRET, CACHE).failure(command, said + "\n")
    path = said.rpartition(f": {FULL}")[0].rpartition(" /")[2]
    assert str(failure) == (expected or _elsewhere(command, f"/{path}"))


def test_restics_tmpdir_is_told_without_writing_to_it_which_a_full_disk_would_refuse(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # no usable temporary directory at all, as on a root filesystem at 100 %: tempfile.gettempdir() would raise
    monkeypatch.setattr(tempfile, "tempdir", None)
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [])
    said = f"Fatal: Write: write {BUFFERS}/restic-temp-pack-1: {FULL}\n"
    assert str(Restic(REMOTE, SECRET, CACHE).failure("backup", said)) == _elsewhere(
        "backup", f"{BUFFERS}/restic-temp-pack-1"
    )
    monkeypatch.delenv("TMPDIR")  # Go's os.TempDir() then: /tmp
    said = f"Fatal: Write: write /tmp/restic-temp-pack-1: {FULL}\n"
    assert str(Restic(REMOTE, SECRET, CACHE).failure("backup", said)) == _elsewhere("backup", "/tmp/restic-temp-pack-1")


def _refused(pid: int, host: str) -> str:
    return (
        f"unable to create lock in backend: repository is already locked exclusively by PID {pid} on {host} by root"
        " (UID 0, GID 0)\nlock was created at 2026-12-07 20:05:45 (3.4s ago)\nstorage ID 2bdc9ee8\n"
        "the `unlock` command can be used to remove stale locks\n"
    )


def _dead_pid() -> int:
    ended = subprocess.Popen(["true"])
    ended.wait()
    return ended.pid


def test_only_the_lock_of_a_dead_restic_of_this_host_is_stale() -> None:
    restic = Restic(LOCAL, SECRET, CACHE)
    here = socket.gethostname()
    stale = restic.failure("backup", _refused(_dead_pid(), here))
    assert isinstance(stale, StaleLock) and "try again when it ends" in str(stale)
    for said in (
        _refused(os.getpid(), here),  # alive: a check or prune going on
        _refused(_dead_pid(), f"{here}-clone"),  # another box's, however old by our clock
        "Fatal: unable to create lock in backend: repository is already locked by PID 7\n",  # no host said
    ):
        failure = restic.failure("backup", said)
        assert isinstance(failure, Busy) and not isinstance(failure, StaleLock), said


class _Runs:
    """Restic._run's stand-in (a staticmethod: no Restic of its own): each call's arguments kept, each answered by the next of ANSWERS (raised when an
    exception)."""

    def __init__(self, *answers: Output | BackupError) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, args: tuple[str, ...], *rest: Any) -> Output:
        self.calls.append(args)
        answer = self.answers.pop(0)
        if isinstance(answer, BackupError):
            raise answer
        return answer


def test_a_run_refused_over_a_stale_lock_unlocks_and_tries_once_more_and_any_other_lock_is_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    done = Output([{"message_type": "summary"}], [])
    runs = _Runs(StaleLock("locked"), Output([], []), done)
    monkeypatch.setattr(Restic, "_run", staticmethod(runs))
    assert Restic(LOCAL, SECRET, CACHE).run("backup", ".") is done
    assert runs.calls == [("backup", "."), ("unlock",), ("backup", ".")]

    runs = _Runs(StaleLock("locked"), Output([], []), StaleLock("locked again"))  # once, not in a loop
    monkeypatch.setattr(Restic, "_run", staticmethod(runs))
    with pytest.raises(StaleLock, match="locked again"):
        Restic(LOCAL, SECRET, CACHE).run("check")
    assert runs.calls == [("check",), ("unlock",), ("check",)]

    runs = _Runs(Busy("locked by a live one"))
    monkeypatch.setattr(Restic, "_run", staticmethod(runs))
    with pytest.raises(Busy, match="locked by a live one"):
        Restic(LOCAL, SECRET, CACHE).run("forget", "--prune")
    assert runs.calls == [("forget", "--prune")]


def _data_dir(tmp_path: Path, backup: str = f'[backup]\ntarget = "{LOCAL}"\nevery = 0\n') -> Path:
    data_dir = tmp_path / "jitaku"
    data_dir.mkdir(parents=True)
    (data_dir / "jitaku.toml").write_text('domains = ["example.org"]\n' + backup)
    (data_dir / "jitaku.db").write_bytes(b"")
    return data_dir


def test_an_unlock_that_fails_is_the_backups_failure_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = _data_dir(tmp_path)
    unreachable = BackupError(f"cannot reach the restic repository at {LOCAL}: permission denied")
    runs = _Runs(StaleLock("locked"), unreachable)
    monkeypatch.setattr(Restic, "_run", staticmethod(runs))
    monkeypatch.setattr(snapshot, "stage", lambda data_dir, source, staging: Counts())
    with pytest.raises(BackupError) as raised:
        backup_cli.backup_now(data_dir=data_dir)
    assert raised.value is unreachable and [call[0] for call in runs.calls] == ["backup", "unlock"]
    assert state.read(data_dir).backup_error == str(unreachable)


def test_no_restic_is_started_once_the_daemon_stops_not_by_a_retry_either(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child, "_stopped", threading.Event())
    started: list[list[str]] = []
    popen = subprocess.Popen

    def counted(arguments: list[str], **options: Any) -> subprocess.Popen[bytes]:
        started.append(arguments)
        return popen(arguments, **options)

    monkeypatch.setattr(child.subprocess, "Popen", counted)
    monkeypatch.setattr(restic_module, "PROGRAM", "false")  # a restic refused over the lock of a dead one
    failure = Restic.failure

    def stopped_meanwhile(self: Restic, command: str, said: str) -> BackupError:
        child.stop_all()  # while the refusal is being read: the daemon's stop finds no restic to kill
        return StaleLock(str(failure(self, command, said)))

    monkeypatch.setattr(Restic, "failure", stopped_meanwhile)
    with pytest.raises(BackupError, match=r"^restic unlock was not started: the daemon stops$"):
        Restic(LOCAL, SECRET, CACHE).run("backup", ".")
    assert [arguments[-2:] for arguments in started] == [["backup", "."]]


def test_a_restic_started_as_the_daemon_stops_is_killed_not_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(child, "_stopped", threading.Event())
    monkeypatch.setattr(restic_module, "PROGRAM", "sleep")  # a restic that runs long: `sleep 60`
    popen = subprocess.Popen

    def racing(arguments: list[str], **options: Any) -> subprocess.Popen[bytes]:
        process = popen(arguments, **options)
        child.stop_all()  # between the look at the stop and the process being there to kill
        return process

    monkeypatch.setattr(child.subprocess, "Popen", racing)
    began = time.monotonic()
    with pytest.raises(BackupError):
        Restic(LOCAL, SECRET, CACHE).run("60", timeout=120)
    assert time.monotonic() - began < 30 and not child._running
    child.resume()  # the schedule started again in this process: restic runs again
    monkeypatch.setattr(child.subprocess, "Popen", popen)
    monkeypatch.setattr(restic_module, "PROGRAM", "true")
    assert Restic(LOCAL, SECRET, CACHE).run("0") == Output([], [])


def test_refusals_of_the_config_or_of_a_snapshot_id_are_not_recorded_as_failed_backups(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = _data_dir(tmp_path, "")
    with pytest.raises(BackupError, match="^backups are off"):
        backup_cli.backup_now(data_dir=off)
    with pytest.raises(BackupError, match="^backups are off"):
        backup_cli.backup_verify(data_dir=off)
    assert not state.path(off).exists()

    data_dir = _data_dir(tmp_path / "on")

    def unknown(config: Any, snapshot: str | None = None) -> Any:
        if snapshot is None:
            raise restore.NothingToVerify(f"no snapshot in {LOCAL} to verify: run `jitaku backup now`")
        raise BackupError(f"{snapshot} is no snapshot in {LOCAL}: `jitaku backup list` shows them")

    monkeypatch.setattr(restore, "verify", unknown)
    for snapshot_id in ("abcd", None):
        with pytest.raises(BackupError):
            backup_cli.backup_verify(snapshot_id, data_dir=data_dir)
    assert state.read(data_dir) == state.Backups()

    def damaged(config: Any, snapshot: str | None = None) -> Any:
        raise BackupError(f"snapshot {snapshot or '0123abcd'} failed verification: restic restore could not read /x")

    monkeypatch.setattr(restore, "verify", damaged)
    with pytest.raises(BackupError):
        backup_cli.backup_verify("0123abcd", data_dir=data_dir)  # a person's look at one snapshot
    assert state.read(data_dir) == state.Backups()
    with pytest.raises(BackupError):
        backup_cli.backup_verify(data_dir=data_dir)  # the drill
    assert state.read(data_dir).verify_error.startswith("snapshot 0123abcd failed verification")


def test_a_data_disk_too_full_to_stage_the_copy_is_one_sentence_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = _data_dir(tmp_path)
    staging = data_dir / "backup" / "staging"
    mkdir = Path.mkdir

    def full(self: Path, *args: Any, **options: Any) -> None:
        if self == staging:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        mkdir(self, *args, **options)

    monkeypatch.setattr(Path, "mkdir", full)
    sentence = f"cannot make the copy to send in {staging}: No space left on device"
    with pytest.raises(BackupError, match=f"^{sentence}$"):
        backup_cli.backup_now(data_dir=data_dir)
    assert state.read(data_dir).backup_error == sentence


def test_a_state_that_cannot_be_written_leaves_the_failures_own_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = _data_dir(tmp_path)
    failed = BackupError(f"the backup target {LOCAL} is full (no space left on device)")

    def take(config: Any, progress: Any = None) -> snapshot.Taken:
        raise failed

    def unwritable(data_dir: Path, change: Any) -> state.Backups:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(state.path(data_dir)))

    monkeypatch.setattr(snapshot, "take", take)
    monkeypatch.setattr(state, "update", unwritable)
    with pytest.raises(BackupError) as raised:
        backup_cli.backup_now(data_dir=data_dir)
    assert raised.value is failed
