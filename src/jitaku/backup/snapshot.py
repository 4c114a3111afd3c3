"""`jitaku backup now`: one snapshot in restic of everything a data directory needs to start again, taken while
mail keeps arriving.

The snapshot is a data directory as it should come back: the database's consistent copy (store/backup.py) named
jitaku.db, or on PostgreSQL pg_dump's named postgres.dump (backup/postgres.py), the directory's own files beside it
(config, DKIM and TLS keys, ACME account, web secret, DDNS and SMART state, the replication secret), and
backup.json, the counts of what the copy holds, which `verify` checks a restore against. What is left out is what
a running daemon makes for itself or what would be wrong on another box: the live database and its -wal/-shm
(copied whole above instead), the locks, ports.json, ha/'s role, fence and re-join state, the managed cluster
(a live cluster's files are not whole: the dump stands for it) and its locks, and DIR/backup, where the copy is
staged.

The copy is made in DIR/backup/staging, sent as restic's "." from there (so the snapshot's root is the data
directory), and removed; a run killed half-way leaves the staging directory, which the next run removes, and
in restic no snapshot: restic writes a snapshot's record after every piece of its data, so a snapshot that is
listed is whole.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from jitaku import __version__, log
from jitaku.backup import postgres
from jitaku.backup.restic import LONG, Progress, Restic
from jitaku.backup.restic import Busy as Busy  # running's, and restic's lock: snapshot.Busy to the schedule
from jitaku.config import Config
from jitaku.errors import BackupError
from jitaku.store.backup import Counts, copy_sqlite
from jitaku.store.driver import sqlite_path

WORK_DIR = "backup"  # DIR/backup: the staging and verify directories, and the lock that keeps one run at a time
STAGING = "staging"
LOCK = "lock"
RECORD = "backup.json"  # in the snapshot's root: what it holds
DATABASE = "jitaku.db"  # the copy's name in the snapshot: where a data dir without [database] url keeps it
TAG = "jitaku"  # every snapshot of ours carries it; `list` shows only these
# the data directory's own names left out; ha/ keeps only its secret (HA_KEPT)
LEFT_OUT = frozenset(
    {
        "jitaku.db",
        "jitaku.db-wal",
        "jitaku.db-shm",
        "jitaku.db-journal",
        "postgres",
        "postgres.part",  # a cluster initdb is making
        "postgres.password",  # initdb's password file, there while it runs
        "postgres.users",
        "postgres.lock",
        postgres.DUMP,  # a restore's, left for a person to load: the snapshot's is pg_dump's own, made fresh
        RECORD,  # the snapshot's own, written fresh
        WORK_DIR,
        "serve.lock",
        "ddns.lock",
        "ports.json",
    }
)
HA_KEPT = ("replication.secret",)
VERIFYING = "verify-"  # DIR/backup/verify-*: where verify restores a snapshot
ACME_LOCK = Path("acme") / "lock"  # acme/issue.py's LOCK_NAME, held while it orders and writes tls/
RENEWED = ("tls", "acme")  # what a renewal writes


@dataclass(frozen=True)
class Taken:
    """A snapshot made: restic's short id, when, and what it holds."""

    id: str
    time: float
    counts: Counts


def take(config: Config, progress: Progress | None = None) -> Taken:
    """One snapshot of CONFIG's data directory in its repository; BackupError with one sentence otherwise.
    PROGRESS is given restic's status as it sends."""
    restic = Restic.of(config)
    source = sqlite_file(config)
    with running(config) as work:
        staging = work / STAGING
        try:
            began = time.time()
            counts = _staged(config, source, staging, began)
            options = tag_options(counts)
            output = restic.run("backup", "--json", *options, ".", cwd=staging, timeout=LONG, progress=progress)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    summaries = [d for d in output.documents if isinstance(d, dict) and d.get("message_type") == "summary"]
    if not summaries or not summaries[-1].get("snapshot_id"):
        raise BackupError(f"restic backup to {restic.shown} ended without naming its snapshot: none is kept")
    taken = Taken(str(summaries[-1]["snapshot_id"]), began, counts)
    log.event("backup_taken", snapshot=taken.id, messages=counts.messages, newest=counts.newest)
    return taken


def _staged(config: Config, source: Path | None, staging: Path, began: float) -> Counts:
    """The copy to send made in STAGING, with its record (RECORD); what it holds. A disk that refuses it (full,
    say) is BackupError with one sentence, which the backup check alerts on like restic's failures."""
    try:
        staging.mkdir(mode=0o700)
        if source is None:
            counts = postgres.dump(config, staging / postgres.DUMP)
            stage_files(config.data_dir, staging)
        else:
            counts = stage(config.data_dir, source, staging)
        record = {"jitaku": __version__, "time": began, "counts": counts.as_json()}
        (staging / RECORD).write_text(json.dumps(record, ensure_ascii=False, indent=1) + "\n")
    except OSError as error:
        raise _not_staged(staging, error) from None
    return counts


def stage(data_dir: Path, source: Path, staging: Path) -> Counts:
    """The copy to send, made in STAGING: the SQLite database at SOURCE and DATA_DIR's files; what the copy holds."""
    try:
        counts = copy_sqlite(source, staging / DATABASE)
    except sqlite3.Error as error:
        raise BackupError(f"cannot copy the database {source}: {error}") from None
    except OSError as error:
        raise _not_staged(staging, error) from None
    stage_files(data_dir, staging)
    return counts


def stage_files(data_dir: Path, staging: Path) -> None:
    """DATA_DIR's files copied into STAGING (copy_files), or BackupError with one sentence."""
    try:
        copy_files(data_dir, staging)
    except OSError as error:
        raise _not_staged(staging, error) from None


def _not_staged(staging: Path, error: OSError) -> BackupError:
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(staging) else ""
    why = error.strerror or type(error).__name__
    return BackupError(f"cannot make the copy to send in {staging}{where}: {why}")


def sqlite_file(config: Config) -> Path | None:
    """The SQLite file CONFIG's store is in; None for a store on PostgreSQL."""
    path = sqlite_path(config.database_url)
    if path is None:
        return None
    found = Path(path)
    if not found.is_file():
        raise BackupError(f"no database at {found}: nothing to back up")
    return found


@contextmanager
def running(config: Config) -> Iterator[Path]:
    """DIR/backup, held by this run alone (a lock the kernel drops with its holder, killed or not), and cleared of
    what killed runs left: the staging copy and verify's restores are plaintext copies of every key, and only a
    run holding the lock may own them."""
    work = config.data_dir / WORK_DIR
    work.mkdir(mode=0o700, exist_ok=True)
    descriptor = os.open(work / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Busy(f"another backup or verify of {config.data_dir} runs now: try again when it ends") from None
        for left in [work / STAGING, *work.glob(f"{VERIFYING}*")]:
            if postgres.stop_left(config, left):
                shutil.rmtree(left, ignore_errors=True)
        yield work
    finally:
        os.close(descriptor)


def copy_files(data_dir: Path, staging: Path) -> None:
    """DATA_DIR's files into STAGING, modes kept, but for those LEFT_OUT; links copied as links. A file the daemon
    removes or renames meanwhile is skipped, as are its half-written `.NAME.PID.new` (files.replace), and the TLS
    key and certificate are copied while no renewal can replace them, so that they are a pair."""
    for entry in sorted(data_dir.iterdir()):
        if entry.name in LEFT_OUT or _passing(entry.name):
            continue
        if entry.name == "ha" and entry.is_dir() and not entry.is_symlink():
            kept = [entry / name for name in HA_KEPT if (entry / name).is_file()]
            if kept:
                (staging / "ha").mkdir(mode=0o700)
                for path in kept:
                    _copy(path, staging / "ha" / path.name)
        elif entry.name in RENEWED:
            with _renewals_held(data_dir):
                _copy(entry, staging / entry.name)
        else:
            _copy(entry, staging / entry.name)


def _copy(source: Path, target: Path) -> None:
    """SOURCE (a file, a link or a directory, whole) as TARGET, modes and times kept; nothing if it is gone."""
    try:
        if source.is_dir() and not source.is_symlink():
            target.mkdir()
            for entry in sorted(source.iterdir()):
                if not _passing(entry.name):
                    _copy(entry, target / entry.name)
            shutil.copystat(source, target)
        elif source.is_file() or source.is_symlink():
            shutil.copy2(source, target, follow_symlinks=False)
    except FileNotFoundError as error:
        if error.filename is not None and Path(error.filename) != source:
            raise  # not the source's absence, but the copy's place
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)


def _passing(name: str) -> bool:
    """A file files.replace is writing, renamed into place in a moment: its final name is copied instead."""
    return name.startswith(".") and name.endswith(".new")


@contextmanager
def _renewals_held(data_dir: Path) -> Iterator[None]:
    """No ACME renewal writing tls/ meanwhile: its lock held (acme/issue.py's, an flock), when ACME is in use."""
    if not (data_dir / ACME_LOCK).parent.is_dir():
        yield
        return
    with open(data_dir / ACME_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def tag_options(counts: Counts) -> list[str]:
    """The tags `list` reads a snapshot's counts from, without opening it."""
    tags = [
        TAG,
        f"messages={counts.messages}",
        f"newest={counts.newest}",
        f"posts={counts.posts}",
        f"comments={counts.comments}",
        f"members={counts.members}",
    ]
    return [option for tag in tags for option in ("--tag", tag)]
