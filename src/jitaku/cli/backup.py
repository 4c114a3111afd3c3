"""`jitaku backup init|now|list|restore|verify`: snapshots through restic (jitaku.backup)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from jitaku.backup.restic import BACKENDS
from jitaku.cli.common import (
    DEFAULT_DIR,
    CliError,
    DirOption,
    JsonOption,
    console,
    exit_on_signals,
    hold_cluster,
    load_config,
    print_json,
    print_table,
    utc_time,
)
from jitaku.store.backup import Counts
from jitaku.words import counted

if TYPE_CHECKING:
    from jitaku.backup.restic import Restic
    from jitaku.backup.state import Backups
    from jitaku.config import Config

MB = 1 << 20

backup_app = typer.Typer(
    no_args_is_help=True, help="Backups through restic: encrypted snapshots, restores, and restore drills."
)


@backup_app.command("init")
def backup_init(
    data_dir: DirOption = DEFAULT_DIR,
    same_disk: Annotated[
        bool,
        typer.Option(
            "--same-disk", help="Make a local repository even on the data directory's own disk (no second disk)."
        ),
    ] = False,
) -> None:
    """Make the password file (0600) if missing and the restic repository [backup] target names."""
    from jitaku.backup import repository
    from jitaku.backup.restic import redacted

    config = load_config(data_dir)
    made = repository.init(config, same_disk)
    settings = config.settings.backup
    target, secret = redacted(settings.target), config.data_dir / settings.password_file
    if not made:
        console.print(f"{target} is a restic repository already, and {secret} opens it: nothing changed")
        return
    console.print(f"made the restic repository {target}, encrypted with the password in {secret}")
    console.print(
        f"Keep a copy of {secret} somewhere other than this box and the backup target: without it the backups "
        "cannot be read, by jitaku or anyone."
    )


@backup_app.command("now")
def backup_now(data_dir: DirOption = DEFAULT_DIR) -> None:
    """Take a snapshot now: the database as of one commit, while mail keeps arriving, and the data dir's files."""
    from jitaku.backup import snapshot, state
    from jitaku.backup.restic import Restic
    from jitaku.backup.state import Backups

    config = load_config(data_dir)
    Restic.of(config)  # backups off, or a target refused: words to change in the config, not a failed backup
    hold_cluster(config)  # a managed cluster running while pg_dump reads it, stopped after unless the daemon runs
    shown = _Progress() if sys.stderr.isatty() else None
    try:
        with _failures_recorded(config, Backups.backup_failed):
            taken = snapshot.take(config, shown)
    finally:
        if shown is not None:
            shown.end()
    state.update(config.data_dir, lambda backups: backups.backed_up(taken.id, taken.time))  # the schedule counts it
    console.print(f"snapshot {taken.id}: {_summary(taken.counts)}")


TargetOption = Annotated[
    str | None,
    typer.Option(
        "--target",
        help="A repository to read without a data directory (the old box is gone): a path, sftp:..., s3:...;"
        " ssh's own keys and AWS_* variables reach restic. Needs --password-file.",
    ),
]
PasswordFileOption = Annotated[
    Path | None, typer.Option("--password-file", help="The copy of the backup password file kept elsewhere.")
]


@contextlib.contextmanager
def repository(
    data_dir: Path, target: str | None, password_file: Path | None, to: Path | None = None
) -> Iterator[Restic]:
    """DATA_DIR's [backup] repository; or, on a box with no data directory yet (the old one died with its disk),
    TARGET opened with PASSWORD_FILE: for a restore into TO, with restic's cache beside TO for the command's length
    (restore.cache_beside); else with none (a list reads the snapshots' small files alone)."""
    from jitaku.backup.restic import Restic
    from jitaku.backup.restore import cache_beside

    if target is None and password_file is None:
        yield Restic.of(load_config(data_dir))
        return
    if target is None or password_file is None:
        raise CliError("--target and --password-file go together: the repository, and the file that opens it")
    if not password_file.is_file():
        raise CliError(f"no password file at {password_file}: give the copy of backup.secret kept elsewhere")
    local = not target.startswith(BACKENDS)
    cache = cache_beside(to) if to is not None else None
    try:
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                cache.mkdir(mode=0o700)
            except OSError as error:
                raise CliError(f"cannot make restic's cache {cache}: {error.strerror or error}") from None
        yield Restic(os.path.abspath(target) if local else target, Path(os.path.abspath(password_file)), cache)
    finally:
        if cache is not None:
            shutil.rmtree(cache, ignore_errors=True)


@backup_app.command("list")
def backup_list(
    data_dir: DirOption = DEFAULT_DIR,
    as_json: JsonOption = False,
    target: TargetOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """The snapshots in the repository, oldest first. A backup that was cut short is never among them."""
    from jitaku.backup import restore

    with repository(data_dir, target, password_file) as restic:
        listed = restore.snapshots(restic)
    if as_json:
        print_json([{"id": item.id, "time": utc_time(item.time), **item.counts} for item in listed])
        return
    print_table(
        ["id", "time", "messages", "posts", "comments", "list members", "newest message"],
        [
            [
                item.id,
                utc_time(item.time),
                *(item.counts[name] for name in ("messages", "posts", "comments", "members", "newest")),
            ]
            for item in listed
        ],
        empty="no snapshots yet: `jitaku backup now` takes one",
    )


@backup_app.command("restore")
def backup_restore(
    snapshot: Annotated[str, typer.Argument(help="The snapshot's id, as `jitaku backup list` shows it.")],
    to: Annotated[Path, typer.Option("--to", help="A new or empty directory to restore into.")],
    data_dir: DirOption = DEFAULT_DIR,
    target: TargetOption = None,
    password_file: PasswordFileOption = None,
) -> None:
    """Restore a snapshot into a new data directory, which `jitaku serve --dir DIR` starts from."""
    from jitaku.backup import postgres, restore

    exit_on_signals()  # a cluster loading the dump is stopped, and the half-restored directory removed
    with repository(data_dir, target, password_file, to) as restic:
        restored = restore.restore(restic, snapshot, to)
    console.print(f"restored snapshot {snapshot} into {to}: {_summary(restored.counts)}")
    if restored.dump is not None:  # a store on a PostgreSQL server of its own, not jitaku's
        command = postgres.restore_command(load_config(to))
        console.print(
            "Load its database into the empty one its url names BEFORE starting jitaku (serve would make its tables"
            f" there, which the load then refuses): {command}"
        )
        console.print(f"Once it is loaded, delete {restored.dump}: it is a copy of every mailbox")
        console.print(f"Then `jitaku serve --dir {to}` starts from it")
    else:
        console.print(f"`jitaku serve --dir {to}` starts from it")
    console.print(
        f"It backs up into the same repository, {restic.shown}: for a drill beside this box, change [backup]"
        " target in its jitaku.toml first"
    )


@backup_app.command("verify")
def backup_verify(
    snapshot: Annotated[str | None, typer.Argument(help="The snapshot's id (default: the newest).")] = None,
    data_dir: DirOption = DEFAULT_DIR,
) -> None:
    """Restore a snapshot into a directory of its own, check its database and counts, then restic's check."""
    from jitaku.backup import restore, state
    from jitaku.backup.restic import Restic
    from jitaku.backup.state import Backups

    config = load_config(data_dir)
    exit_on_signals()  # the drill's cluster is stopped, and its directory removed
    if snapshot is not None:  # a person's look at one snapshot (a mistyped id, say): not the drill the check follows
        checked, counts = restore.verify(config, snapshot)
    else:  # the newest: the drill the schedule would run, done now
        Restic.of(config)  # backups off, or a target refused: words to change in the config, not a failed drill
        with _failures_recorded(config, Backups.verify_failed):
            checked, counts = restore.verify(config)
        state.update(config.data_dir, lambda backups: backups.verify_passed(checked, time.time()))
    console.print(f"snapshot {checked} verified: it restores, its database is whole, and it holds {_summary(counts)}")


@contextlib.contextmanager
def _failures_recorded(config: Config, record: Callable[[Backups, str, float], Backups]) -> Iterator[None]:
    """A failure recorded in state.json by RECORD on its way to the user: the backup check alerts on the CLI's
    failures as on the schedule's. Busy is none: another run goes on, which records its own; nor is an empty
    repository's verify, in which nothing failed. A state that cannot be written (its disk full too) is logged,
    and the failure's own sentence goes on to the user."""
    from jitaku import log
    from jitaku.backup import state
    from jitaku.backup.restore import NothingToVerify
    from jitaku.backup.snapshot import Busy
    from jitaku.errors import BackupError

    try:
        yield
    except (Busy, NothingToVerify):
        raise
    except BackupError as error:
        why = str(error)
        try:
            state.update(config.data_dir, lambda backups: record(backups, why, time.time()))
        except OSError as unwritten:
            log.event("backup_state_unwritten", logging.WARNING, error=repr(unwritten))
        raise


class _Progress:
    """restic's status as one line on a terminal, rewritten in place, for a backup that takes minutes."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, status: dict[str, Any]) -> None:
        done, total = float(status.get("bytes_done") or 0), float(status.get("total_bytes") or 0)
        if not total:  # restic still counting what there is to send
            return
        share = float(status.get("percent_done") or 0) * 100
        sys.stderr.write(f"\rsending: {share:3.0f}% ({done / MB:,.0f} of {total / MB:,.0f} MB)   ")
        sys.stderr.flush()
        self.shown = True

    def end(self) -> None:
        if self.shown:
            sys.stderr.write("\n")


def _summary(counts: Counts) -> str:
    return (
        f"{counted(counts.messages, 'message')} in {counted(len(counts.mailboxes), 'mailbox', 'mailboxes')}, "
        f"{counted(counts.posts, 'post')}, {counted(counts.comments, 'comment')}, "
        f"{counted(counts.members, 'list member')}; newest message {counts.newest or 'none'}"
    )
