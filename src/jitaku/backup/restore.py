"""Reading snapshots back: `jitaku backup list`, `restore ID --to DIR` (a data directory `jitaku serve --dir DIR`
starts from) and `verify [ID]`, the restore drill, which proves a snapshot can be read and holds what it says.

A snapshot of a store on PostgreSQL holds pg_dump's copy (backup/postgres.py): restored with `[database] managed`,
it is loaded into a cluster made in the restored directory before that directory is put in place; verified, into
a cluster of its own for the drill alone. For a store on a server of its own, the dump is left for a person.

A snapshot is listed when restic lists it with our tag: restic writes a snapshot's record only after all of its
data and index, so a backup killed half-way is never listed (its packs are left unreferenced until a prune).
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import sqlite3
import stat
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from jitaku import log
from jitaku.backup import postgres
from jitaku.backup.restic import LONG, Busy, Restic
from jitaku.backup.snapshot import DATABASE, RECORD, TAG, VERIFYING, running
from jitaku.config import Config, ConfigError
from jitaku.config import load as load_config
from jitaku.errors import BackupError, ClusterError, SchemaSkew
from jitaku.store.backup import Counts, counts_of, integrity
from jitaku.store.errors import StoreError

# a snapshot's id, or the start of one, as `list` shows it, or restic's "latest": never an option to restic
SNAPSHOT_ID = re.compile(r"[0-9a-f]{1,64}|latest")
RESTORING = ".{name}.restoring-"  # beside a restore's TO, with the restoring process's id: where restic writes
CACHED = ".{name}.restic-cache-"  # beside it: restic's cache, for a restore by --target (no data directory's)
CONFIG = "jitaku.toml"
SUMMED = ("messages", "newest", "posts", "comments", "members")  # the counts a snapshot's tags carry


class NothingToVerify(BackupError):
    """No snapshot in the repository yet: nothing failed, so nothing for the backup check to alert on."""


@dataclass(frozen=True)
class Restored:
    """What a restore gave back: the counts its snapshot holds, and the dump left in TO for a person to load (a
    store on a PostgreSQL server of its own), if any."""

    counts: Counts
    dump: Path | None


@dataclass(frozen=True)
class Listed:
    """A snapshot as restic lists it: its short id, its time, and the counts its tags carry."""

    id: str
    time: float
    counts: dict[str, int]


def snapshots(restic: Restic) -> list[Listed]:
    """Every jitaku snapshot in RESTIC's repository, oldest first."""
    output = restic.run("snapshots", "--json", "--tag", TAG)
    found = []
    for document in output.documents:
        for snapshot in document if isinstance(document, list) else []:
            tags = dict(tag.partition("=")[::2] for tag in snapshot.get("tags") or [])
            counts = {name: int(tags[name]) for name in SUMMED if tags.get(name, "").isdigit()}
            if len(counts) == len(SUMMED):  # a snapshot tagged by hand, not by `backup now`, is not ours
                found.append(Listed(str(snapshot["short_id"]), _seconds(str(snapshot["time"])), counts))
    return sorted(found, key=lambda listed: listed.time)


def restore(restic: Restic, snapshot: str, to: Path) -> Restored:
    """SNAPSHOT written to TO as a data directory, its database as TO/jitaku.db, or loaded into its managed cluster
    TO/postgres (else left as TO/postgres.dump, 0600); what it holds. TO must not exist or be empty. restic writes
    into a hidden directory beside TO, which is renamed into place once whole: a restore that fails, or is killed,
    never leaves in TO half a data directory that `jitaku serve` would start from."""
    _valid(snapshot)
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise BackupError(f"{to} is not an empty directory: restore into a new or empty one; nothing was written")
    to = Path(os.path.abspath(to))
    to.parent.mkdir(parents=True, exist_ok=True)
    _clear_restoring(to)
    place = to.parent / f"{RESTORING.format(name=to.name)}{os.getpid()}"
    left = None
    try:
        place.mkdir(mode=0o700)
        _runnable(restic, snapshot, place)
        restic.run("restore", "--target", str(place), "--", snapshot, timeout=LONG)
        try:
            recorded = _record(place)
        except BackupError as error:
            raise BackupError(f"snapshot {snapshot}: {error}") from None
        (place / RECORD).unlink()  # the snapshot's, not the directory's: a backup of TO writes its own
        if not (place / DATABASE).exists():  # a store on PostgreSQL: its jitaku.toml says which
            if _loaded(snapshot, place, recorded):
                if to.exists():
                    _passable(place, to)
            else:
                left = to / postgres.DUMP
        _into_place(place, to)
    finally:
        if _stopped(place):
            shutil.rmtree(place, ignore_errors=True)
    log.event("backup_restored", snapshot=snapshot, to=str(to))
    return Restored(recorded, left)


def cache_beside(to: Path) -> Path:
    """Where restic's cache goes for a restore into TO by --target: beside TO, on its disk (not a tmpfs /tmp that
    a large repository's tree packs would fill), cleared by the next restore into TO if this one is killed."""
    to = Path(os.path.abspath(to))
    return to.parent / f"{CACHED.format(name=to.name)}{os.getpid()}"


def verify(config: Config, snapshot: str | None = None) -> tuple[str, Counts]:
    """SNAPSHOT (default: the newest) restored into a directory of its own, its database opened and checked by SQLite
    (or its dump loaded into a PostgreSQL cluster made there, removed after), its counts compared with those recorded
    when it was taken, then restic's check of the repository; the snapshot's id and counts, or BackupError naming the
    snapshot. All of it under the backup lock: restic's check takes the repository's exclusive lock, which a backup
    running meanwhile would be refused over."""
    restic = Restic.of(config)
    if snapshot is None:
        listed = snapshots(restic)
        if not listed:
            raise NothingToVerify(f"no snapshot in {restic.shown} to verify: run `jitaku backup now`")
        snapshot = listed[-1].id
    _valid(snapshot)
    with running(config) as work:
        target = Path(tempfile.mkdtemp(prefix=VERIFYING, dir=work))
        try:
            restic.run("restore", "--target", str(target), "--", snapshot, timeout=LONG)
            recorded = _record(target)
            if not (target / DATABASE).exists() and (target / postgres.DUMP).exists():
                found = _drilled(config, work, target, recorded)
            else:  # a SQLite snapshot, whatever stray dump it holds beside its database
                found = _checked(target / DATABASE, recorded)
        except Busy:
            raise
        except BackupError as error:
            raise _failed(snapshot, str(error)) from None
        finally:
            if postgres.stop_left(config, target):  # else kept, and said: a cluster runs in it
                shutil.rmtree(target, ignore_errors=True)
        try:
            # a backup killed with -9 leaves its lock, which check's exclusive one would be refused over; unlock
            # removes only the locks whose process is gone (on this host) or that are older than 30 minutes
            restic.run("unlock")
            restic.run("check", timeout=LONG)
        except Busy:
            raise  # another restic on the repository (another box's, or a person's): nothing known of the snapshot
        except BackupError as error:
            raise _failed(snapshot, str(error)) from None
    log.event("backup_verified", snapshot=snapshot, messages=found.messages, newest=found.newest)
    return snapshot, found


def _valid(snapshot: str) -> None:
    """BackupError unless SNAPSHOT is a snapshot's id (or a prefix of one) or "latest", which restic takes as
    nothing else (an option, say)."""
    if not SNAPSHOT_ID.fullmatch(snapshot):
        raise BackupError(f"{snapshot!r} is no snapshot id: `jitaku backup list` shows them")


def _runnable(restic: Restic, snapshot: str, place: Path) -> None:
    """BackupError, before hours of restoring, when SNAPSHOT's managed cluster would have no user to run as on
    this box (a new one, where `[run] user` was never made): its jitaku.toml alone restored into PLACE to tell."""
    from jitaku.ha import cluster

    restic.run("restore", "--target", str(place), "--include", f"/{CONFIG}", "--", snapshot, timeout=LONG)
    try:
        settings = load_config(place).settings
    except ConfigError:
        return  # a SQLite snapshot's, say, of an older jitaku: the restore says what it must of it
    if not settings.database.managed:
        return
    try:
        cluster.account(Config(settings, place))
    except ClusterError:
        name = settings.run.user or "postgres"
        made = f"adduser --system --group {name}" if settings.run.user else "apt install postgresql"
        raise BackupError(
            f"snapshot {snapshot}'s PostgreSQL cluster runs as the user {name}, who does not exist on this box:"
            f" create it first (`{made}`), then restore again; nothing was restored"
        ) from None


def _clear_restoring(to: Path) -> None:
    """The hidden directories beside TO that restores killed before their end left (restic's, and its cache);
    a restored cluster that could not be stopped keeps its directory (postgres.stop_left)."""
    for pattern in (RESTORING, CACHED):
        for left in to.parent.glob(f"{glob.escape(pattern.format(name=to.name))}*"):
            pid = left.name.rpartition("-")[2]
            if pid.isdigit() and not _alive(int(pid)) and _stopped(left):
                shutil.rmtree(left, ignore_errors=True)


def _stopped(left: Path) -> bool:
    """No cluster runs in LEFT any more: none was made there (no jitaku.toml yet: restic's), or it is stopped."""
    try:
        config = load_config(left)
    except ConfigError:
        config = None
    return postgres.stop_left(config, left)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _into_place(place: Path, to: Path) -> None:
    """The restored PLACE as TO: renamed, when TO is missing; its entries moved in, when TO is an empty directory
    (a mount point, say), jitaku.toml last, so that a move cut short leaves no directory serve starts from."""
    if not to.exists():
        os.rename(place, to)
        return
    entries = sorted(place.iterdir(), key=lambda entry: entry.name == CONFIG)
    for entry in entries:
        os.rename(entry, to / entry.name)


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
    """The counts of the SQLite database at PATH, opened as jitaku opens its own."""
    return counts_of(f"sqlite:///{path}")


def _loaded(snapshot: str, place: Path, recorded: Counts) -> bool:
    """A PostgreSQL snapshot restored in PLACE: its dump loaded into PLACE/postgres when its jitaku.toml says
    `[database] managed`, and the counts checked (True); else its dump left for a person to load where its url
    says, readable by this user alone (False)."""
    dump = place / postgres.DUMP
    if not dump.exists():
        raise BackupError(f"snapshot {snapshot} holds neither {DATABASE} nor {postgres.DUMP}: no database to restore")
    dump.chmod(0o600)  # a dump is every mailbox; one sent by an older jitaku was 0644, which restic keeps
    try:
        settings = load_config(place).settings
    except ConfigError as error:
        raise BackupError(f"snapshot {snapshot}: its jitaku.toml cannot be read ({error})") from None
    if not settings.database.managed:
        return False
    found = postgres.load(settings, place, dump)
    differences = _differences(recorded, found)
    if differences:
        raise BackupError(f"snapshot {snapshot} does not hold what was recorded: " + "; ".join(differences))
    dump.unlink()  # in the cluster now
    return True


def _passable(place: Path, to: Path) -> None:
    """TO, an empty directory that PLACE's entries are moved into, given PLACE's group and mode: what the cluster's
    user needs to pass through to TO/postgres, as the cluster's making left PLACE (jitaku.ha.cluster.reachable)."""
    made = place.stat()
    try:
        os.chown(to, -1, made.st_gid)
        os.chmod(to, stat.S_IMODE(made.st_mode))
    except OSError as error:
        raise BackupError(f"cannot let PostgreSQL's user into {to}: {error.strerror or error}") from None


def _drilled(config: Config, work: Path, target: Path, recorded: Counts) -> Counts:
    """The dump restored in TARGET loaded into a cluster of its own in TARGET/postgres, on a free loopback port,
    and counted; BackupError unless the counts are those RECORDED. The cluster's user must pass through the data
    directory and WORK to reach it (jitaku.ha.cluster.reachable)."""
    from jitaku.ha import cluster

    try:
        user = cluster.account(config)
        cluster.reachable(config.data_dir, user)
        cluster.reachable(work, user)
    except ClusterError as error:
        raise BackupError(f"cannot make a PostgreSQL cluster to load it into: {error}") from None
    found = postgres.load(config.settings, target, target / postgres.DUMP)
    differences = _differences(recorded, found)
    if differences:
        raise BackupError("it does not hold what was recorded: " + "; ".join(differences))
    return found


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


def _seconds(stamp: str) -> float:
    """restic's RFC 3339 time (nanoseconds, which datetime does not take; Z or an offset) as a Unix time."""
    match = re.fullmatch(r"([^.]+)(?:\.(\d+))?(.*)", stamp)
    if match is None:
        raise BackupError(f"restic gave a snapshot time this jitaku cannot read: {stamp!r}")
    whole, fraction, zone = match.groups()
    return datetime.fromisoformat(whole + zone).timestamp() + float(f"0.{fraction or 0}")
