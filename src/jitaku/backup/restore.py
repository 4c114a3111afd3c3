"""Reading snapshots back: `jitaku backup list`, `restore ID --to DIR` (a data directory `jitaku serve --dir DIR`
starts from) and `verify [ID]`, the restore drill, which proves a snapshot can be read and holds what it says.

A snapshot is listed when restic lists it with our tag: restic writes a snapshot's record only after all of its
data and index, so a backup killed half-way is never listed (its packs are left unreferenced until a prune).
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jitaku import log
from jitaku.backup.restic import LONG, Restic
from jitaku.backup.snapshot import DATABASE, RECORD, TAG, running
from jitaku.config import Config
from jitaku.errors import BackupError, SchemaSkew
from jitaku.store.backup import Counts, integrity
from jitaku.store.errors import StoreError

SUMMED = ("messages", "newest", "posts", "comments", "members")  # the counts a snapshot's tags carry


@dataclass(frozen=True)
class Listed:
    """A snapshot as restic lists it: its short id, its time, and the counts its tags carry."""

    id: str
    time: float
    counts: dict[str, int]


def snapshots(config: Config) -> list[Listed]:
    """Every jitaku snapshot in the repository, oldest first."""
    output = Restic.of(config).run("snapshots", "--json", "--tag", TAG)
    found = []
    for document in output.documents:
        for snapshot in document if isinstance(document, list) else []:
            tags = dict(tag.partition("=")[::2] for tag in snapshot.get("tags") or [])
            counts = {name: int(tags[name]) for name in SUMMED if tags.get(name, "").isdigit()}
            if len(counts) == len(SUMMED):  # a snapshot tagged by hand, not by `backup now`, is not ours
                found.append(Listed(str(snapshot["short_id"]), _seconds(str(snapshot["time"])), counts))
    return sorted(found, key=lambda listed: listed.time)


def restore(config: Config, snapshot: str, to: Path) -> Counts:
    """SNAPSHOT written to TO as a data directory, its database as TO/jitaku.db; what it holds. TO must not exist or
    be empty; a restore that fails leaves it empty again."""
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise BackupError(f"{to} is not an empty directory: restore into a new or empty one; nothing was written")
    restic = Restic.of(config)
    try:
        restic.run("restore", snapshot, "--target", str(to), timeout=LONG)
        try:
            recorded = _record(to)
        except BackupError as error:
            raise BackupError(f"snapshot {snapshot}: {error}") from None
    except BaseException:
        _empty(to)
        raise
    (to / RECORD).unlink()  # the snapshot's, not the directory's: a backup of TO writes its own
    log.event("backup_restored", snapshot=snapshot, to=str(to))
    return recorded


def verify(config: Config, snapshot: str | None = None) -> tuple[str, Counts]:
    """SNAPSHOT (default: the newest) restored into a directory of its own, its database opened and checked by
    SQLite, its counts compared with those recorded when it was taken, then restic's check of the repository;
    the snapshot's id and counts, or BackupError naming the snapshot."""
    restic = Restic.of(config)
    if snapshot is None:
        listed = snapshots(config)
        if not listed:
            raise BackupError(f"no snapshot in {restic.target} to verify: run `jitaku backup now`")
        snapshot = listed[-1].id
    with running(config) as work, tempfile.TemporaryDirectory(prefix="verify-", dir=work) as place:
        target = Path(place)
        try:
            restic.run("restore", snapshot, "--target", str(target), timeout=LONG)
            recorded = _record(target)
            found = _checked(target / DATABASE, recorded)
        except BackupError as error:
            raise _failed(snapshot, str(error)) from None
    try:
        # a backup killed with -9 leaves its lock, which check's exclusive one would be refused over; unlock removes
        # only the locks whose process is gone (on this host) or that are older than 30 minutes
        restic.run("unlock")
        restic.run("check", timeout=LONG)
    except BackupError as error:
        raise _failed(snapshot, str(error)) from None
    log.event("backup_verified", snapshot=snapshot, messages=found.messages, newest=found.newest)
    return snapshot, found


def _failed(snapshot: str, why: str) -> BackupError:
    log.event("backup_verify_failed", snapshot=snapshot, why=why)
    return BackupError(f"snapshot {snapshot} failed verification: {why}")


def _record(directory: Path) -> Counts:
    """The counts backup.json in a restored DIRECTORY says its snapshot holds."""
    try:
        data = json.loads((directory / RECORD).read_text(encoding="utf-8"))
        return Counts.from_json(data["counts"])
    except FileNotFoundError:
        raise BackupError(f"it holds no {RECORD}: it was not made by `jitaku backup now`") from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise BackupError(f"its {RECORD} cannot be read ({error})") from None


def _checked(path: Path, recorded: Counts) -> Counts:
    """The counts of the restored database at PATH, once SQLite finds it whole and they are those RECORDED."""
    try:
        checked = integrity(path)
        if checked != "ok":
            raise BackupError(f"SQLite finds its database damaged: {checked}")
        found = _counts(path)
    except (sqlite3.Error, StoreError, SchemaSkew, OSError) as error:
        raise BackupError(f"its database cannot be opened: {error}") from None
    differences = _differences(recorded, found)
    if differences:
        raise BackupError("it does not hold what was recorded: " + "; ".join(differences))
    return found


def _counts(path: Path) -> Counts:
    """The counts of the database at PATH, opened as jitaku opens its own (its schema checked and brought up)."""
    from jitaku.store import Database
    from jitaku.store.backup import counts

    database = Database(f"sqlite:///{path}")
    try:
        return database.query_now(counts)
    finally:
        database.close()


def _differences(recorded: Counts, found: Counts) -> list[str]:
    said = []
    for name in sorted(set(recorded.mailboxes) | set(found.mailboxes)):
        was, now = recorded.mailboxes.get(name, 0), found.mailboxes.get(name, 0)
        if was != now:
            said.append(f"{name} has {now} messages, {was} recorded")
    for name in ("posts", "comments", "members", "newest"):
        was, now = getattr(recorded, name), getattr(found, name)
        if was != now:
            said.append(f"{name} {now}, {was} recorded")
    return said


def _empty(directory: Path) -> None:
    """DIRECTORY's contents removed (a failed restore's), the directory kept."""
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _seconds(stamp: str) -> float:
    """restic's RFC 3339 time (nanoseconds, which datetime does not take; Z or an offset) as a Unix time."""
    match = re.fullmatch(r"([^.]+)(?:\.(\d+))?(.*)", stamp)
    if match is None:
        raise BackupError(f"restic gave a snapshot time this jitaku cannot read: {stamp!r}")
    whole, fraction, zone = match.groups()
    return datetime.fromisoformat(whole + zone).timestamp() + float(f"0.{fraction or 0}")
