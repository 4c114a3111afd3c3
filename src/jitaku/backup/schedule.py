"""The daemon's backups: a primary's main process takes one every `[backup] every` seconds, prunes the repository
to the retention after each good one, and runs the restore drill (restore.verify) every `verify_every` seconds.

When each is due is counted from the last good one (state.json; restic's own list when the file has none, a
restored or new data directory): a restart an hour after a backup does not take another at once, and a box that
was off for a week takes one soon after it starts. A failed run is tried again after RETRY seconds (or the period,
when shorter), not at once in a loop. The work is restic's and SQLite's, in a thread of its own off the event
loop, and one at a time with `jitaku backup now|verify` (snapshot.running's lock): a schedule that finds the CLI's
run going waits for its next look, which is not a failure.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from jitaku import log
from jitaku.backup import child, restore, snapshot, state
from jitaku.backup.restic import LONG, Restic
from jitaku.backup.state import Backups
from jitaku.config import BackupSettings, Config
from jitaku.errors import BackupError

FIRST_LOOK = 2.0  # seconds after the start before a backup that is due: the services start first
LOOK = 3600.0  # at most this long between two looks: `jitaku backup now` may have run meanwhile
RETRY = 3600.0  # after a failed backup or verify; the period instead, when it is shorter
BUSY = 60.0  # after finding the CLI's run going (or the period, when shorter)


def retention(settings: BackupSettings) -> list[str]:
    """restic's arguments that forget our snapshots beyond the retention and prune what only they used; none when
    every keep_* is 0 (keep them all)."""
    keep = [("--keep-daily", settings.keep_daily), ("--keep-weekly", settings.keep_weekly)]
    keep.append(("--keep-monthly", settings.keep_monthly))
    policy = [argument for option, count in keep if count for argument in (option, str(count))]
    return ["forget", "--json", "--prune", "--tag", snapshot.TAG, *policy] if policy else []


def backup_due(settings: BackupSettings, backups: Backups) -> float | None:
    """When the next backup is due (a time in the past: now); None when the schedule takes none."""
    if not settings.every:
        return None
    if backups.backup_error and backups.backup_tried > backups.last_backup:
        return backups.backup_tried + min(settings.every, RETRY)
    return backups.last_backup + settings.every


def verify_due(settings: BackupSettings, backups: Backups) -> float | None:
    """When the next restore drill is due; None when there is none, or nothing to verify yet."""
    if not settings.verify_every or not backups.last_backup:
        return None
    if backups.verify_error and backups.verify_tried > backups.last_verify:
        return backups.verify_tried + min(settings.verify_every, RETRY)
    return backups.last_verify + settings.verify_every


def next_look(settings: BackupSettings, backups: Backups, now: float) -> float:
    """Seconds until the next backup or drill is due, at least one and at most LOOK."""
    due = [at for at in (backup_due(settings, backups), verify_due(settings, backups)) if at is not None]
    return min(max(min(due, default=now + LOOK) - now, 1.0), LOOK)


class Stopped(Exception):
    """The daemon stops: the run was cut short, which is no failure of the backups."""


async def keep_backed_up(config: Config) -> None:
    """Never ends on an error: the daemon's other services share its task group. Cancelled (the daemon stops), it
    kills its restic, pg_dump or pg_restore, whose thread would otherwise hold the daemon's exit until a long backup
    ended."""
    settings = config.settings.backup
    stopping = threading.Event()
    child.resume()  # a schedule stopped before in this process (a box demoted, then promoted again)
    try:
        await asyncio.sleep(FIRST_LOOK)
        await asyncio.to_thread(_known, config)
        while True:
            wait = LOOK
            try:
                backups = state.read(config.data_dir)
                if (due := backup_due(settings, backups)) is not None and due <= time.time():
                    backups = await asyncio.to_thread(back_up, config, stopping)
                if (due := verify_due(settings, backups)) is not None and due <= time.time():
                    backups = await asyncio.to_thread(drill, config, stopping)
                wait = next_look(settings, backups, time.time())
            except snapshot.Busy:
                wait = min(BUSY, settings.every or BUSY, settings.verify_every or BUSY)
            except Exception as error:  # a bug, or a file we cannot write: mail goes on, the backups wait
                log.event("backup_error", logging.WARNING, error=repr(error))
                wait = RETRY
            await asyncio.sleep(wait)
    finally:
        stopping.set()
        child.stop_all()


def _known(config: Config) -> None:
    """The last good backup from restic's list, when state.json has none: a data directory restored, or made new
    over an existing repository. Nothing when restic cannot tell: the first backup's failure says why."""
    if state.read(config.data_dir).last_backup:
        return
    try:
        listed = restore.snapshots(Restic.of(config))
    except BackupError:
        return
    if listed:
        newest = listed[-1]
        state.update(config.data_dir, lambda backups: backups.backed_up(newest.id, newest.time))


def back_up(config: Config, stopping: threading.Event) -> Backups:
    """One backup, then the retention and the repository's size; the state they leave. snapshot.Busy when the
    CLI's run goes on, Stopped when the daemon stops: nothing is recorded."""
    began = time.monotonic()
    try:
        taken = snapshot.take(config)
    except snapshot.Busy:
        raise
    except BackupError as error:
        return _failed(config, stopping, "backup_failed", str(error), Backups.backup_failed)
    counts = taken.counts
    log.event(
        "backup_done",
        snapshot=taken.id,
        messages=counts.messages,
        posts=counts.posts,
        comments=counts.comments,
        members=counts.members,
        seconds=round(time.monotonic() - began, 1),
    )
    state.update(config.data_dir, lambda backups: backups.backed_up(taken.id, taken.time))
    restic = Restic.of(config)
    try:
        _prune(config, restic)
    except snapshot.Busy:
        pass  # the CLI's run: the next backup prunes
    except BackupError as error:  # the backup itself is good: the next one prunes again
        log.event("backup_prune_failed", logging.WARNING, error=str(error))
    if stopping.is_set():
        raise Stopped from None
    try:
        output = restic.run("stats", "--mode", "raw-data", "--json")
    except BackupError as error:
        log.event("backup_size_unknown", logging.WARNING, error=str(error))
        return state.read(config.data_dir)
    sizes = [int(d["total_size"]) for d in output.documents if isinstance(d, dict) and "total_size" in d]
    return state.update(config.data_dir, lambda backups: _sized(backups, sizes))


def _sized(backups: Backups, sizes: list[int]) -> Backups:
    return dataclasses.replace(backups, size=sizes[-1]) if sizes else backups


def _prune(config: Config, restic: Restic) -> None:
    arguments = retention(config.settings.backup)
    if not arguments:
        return
    began = time.monotonic()
    with snapshot.running(config):
        output = restic.run(*arguments, timeout=LONG)
    groups = [group for document in output.documents if isinstance(document, list) for group in document]
    removed = sum(len(group.get("remove") or []) for group in groups if isinstance(group, dict))
    kept = sum(len(group.get("keep") or []) for group in groups if isinstance(group, dict))
    log.event("backup_pruned", forgotten=removed, kept=kept, seconds=round(time.monotonic() - began, 1))


def drill(config: Config, stopping: threading.Event) -> Backups:
    """The restore drill of the newest snapshot; the state it leaves. snapshot.Busy and Stopped as back_up."""
    began = time.monotonic()
    try:
        verified, counts = restore.verify(config)
    except snapshot.Busy:
        raise
    except BackupError as error:
        return _failed(config, stopping, "verify_failed", str(error), Backups.verify_failed)
    seconds = round(time.monotonic() - began, 1)
    log.event("verify_done", snapshot=verified, messages=counts.messages, seconds=seconds)
    return state.update(config.data_dir, lambda backups: backups.verify_passed(verified, time.time()))


def _failed(
    config: Config, stopping: threading.Event, event: str, why: str, record: Callable[[Backups, str, float], Backups]
) -> Backups:
    """A failed backup or drill, logged as EVENT and recorded by RECORD; Stopped instead when the daemon's stop
    killed restic (no failure of the backups')."""
    if stopping.is_set():
        raise Stopped from None
    log.event(event, logging.WARNING, error=why)
    return state.update(config.data_dir, lambda backups: record(backups, why, time.time()))
