"""DIR/backup/state.json: what the backups came to, for the schedule (when the next one is due, across restarts) and
the health check (the ages of the last good backup and verify, the repository's size, the last error).

Written by the daemon's schedule and by `jitaku backup now|verify`, each a read-change-write under a lock of its
own (state.lock), the file replaced whole: a run killed half-way leaves the last state, never part of one.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitaku import files

NAME = "state.json"
LOCK = "state.lock"
WORK_DIR = "backup"  # snapshot.WORK_DIR, which imports restic: this module is read by the health check


@dataclass(frozen=True)
class Backups:
    """Times are Unix seconds, 0: never. A failure is the last one's sentence, kept until the next success of the
    same kind (a backup's failure until a backup succeeds, a verify's until one passes)."""

    first_backup: float = 0.0  # the oldest good backup known here: a never verified repository's age
    last_backup: float = 0.0
    snapshot: str = ""  # the last good backup's
    backup_error: str = ""
    backup_tried: float = 0.0  # the last attempt, good or not: a failed one is tried again after a while
    last_verify: float = 0.0  # the last that passed
    verified: str = ""  # its snapshot
    verify_error: str = ""  # names the snapshot that failed
    verify_tried: float = 0.0
    size: int = 0  # the repository's bytes as restic stored them, after the last good backup and its pruning

    def backed_up(self, snapshot: str, at: float) -> Backups:
        first = self.first_backup or at
        return dataclasses.replace(
            self, first_backup=first, last_backup=at, snapshot=snapshot, backup_error="", backup_tried=at
        )

    def backup_failed(self, error: str, at: float) -> Backups:
        return dataclasses.replace(self, backup_error=error, backup_tried=at)

    def verify_passed(self, snapshot: str, at: float) -> Backups:
        return dataclasses.replace(self, last_verify=at, verified=snapshot, verify_error="", verify_tried=at)

    def verify_failed(self, error: str, at: float) -> Backups:
        return dataclasses.replace(self, verify_error=error, verify_tried=at)


def path(data_dir: Path) -> Path:
    return data_dir / WORK_DIR / NAME


def read(data_dir: Path) -> Backups:
    """The state; an empty one when there is none or it does not read (the schedule then asks restic)."""
    try:
        data = json.loads(path(data_dir).read_text(encoding="utf-8"))
        known = {field.name for field in dataclasses.fields(Backups)}
        return Backups(**{key: value for key, value in data.items() if key in known})
    except (OSError, ValueError, TypeError):
        return Backups()


def update(data_dir: Path, change: Any) -> Backups:
    """The state with CHANGE (a function of the old one) applied, written; the new state."""
    work = data_dir / WORK_DIR
    work.mkdir(mode=0o700, exist_ok=True)
    descriptor = os.open(work / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        new: Backups = change(read(data_dir))
        text = json.dumps(dataclasses.asdict(new), ensure_ascii=False, indent=1) + "\n"
        files.replace(path(data_dir), text.encode(), 0o600)
        return new
    finally:
        os.close(descriptor)
