"""`jitaku standby ...` (making the second box a streaming-replication standby of the first), `jitaku ha
status` (how the pair stands), `jitaku failover` and `jitaku switchover` (the standby becomes the primary). The
work is jitaku.ha.standby's, jitaku.ha.status's and jitaku.ha.failover's."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from jitaku.cli.common import (
    DEFAULT_DIR,
    CliError,
    DirOption,
    JsonOption,
    console,
    hold_cluster,
    load_config,
    open_database,
)
from jitaku.config import Config

standby_app = typer.Typer(no_args_is_help=True, help="A streaming-replication standby of this box, or of another.")
ha_app = typer.Typer(no_args_is_help=True, help="The primary/standby pair.")


def _managed(data_dir: Path) -> Config:
    config = load_config(data_dir)
    if not config.settings.database.managed:
        raise CliError(
            f"{data_dir}'s store is not a PostgreSQL cluster of jitaku's own: run `jitaku db use-postgresql` first"
        )
    return config


@standby_app.command("allow")
def allow(
    host: Annotated[str, typer.Argument(help="The standby's address (an IP or a host name).")],
    data_dir: DirOption = DEFAULT_DIR,
) -> None:
    """On the primary: let HOST replicate from this box's cluster (idempotent; one HOST per run). HOST is
    remembered as this box's peer (DIR/ha/peer_host), which it asks how it stands without `[ha] peer`: after a cold
    start, above all (jitaku.ha.mode)."""
    from jitaku.ha import alive, fence, peer, standby

    config = _managed(data_dir)
    fenced = fence.read(config)
    if fenced is not None:  # its database may have diverged: no standby is to copy it
        raise CliError(
            f"this box is fenced ({fenced.purpose}, by {fenced.by}): run `jitaku standby allow` on the primary"
        )
    hold_cluster(config)
    try:
        allowed = standby.allow(config, host)
    except standby.StandbyError as error:
        raise CliError(str(error)) from None
    if alive.ours(host):  # a pair on one host: its peer would be this box's own web, a primary that never waits
        console.print(f"{host} is this box's own address: not remembered as its peer (set [ha] peer for that)")
    else:
        peer.remember_host(config, host)  # a valid host: allow() took it
    console.print(f"{'allowed' if allowed.added else 'already allowed'}: {host} may replicate as {standby.ROLE}")
    if allowed.made_secret:
        console.print(f"made the replication secret: {allowed.secret} (0600)")
    from jitaku.ha import secret_files

    with contextlib.closing(open_database(config)) as database:
        published = secret_files.publish_now(config, database)
    if published:  # in the base backup the standby's setup takes
        console.print("put the DKIM keys, TLS certificate and web cookie key in the database, sealed for the standby")
    console.print(
        f"copy {allowed.secret} to the standby over a safe channel (scp, a USB stick; never mail or chat), "
        "then run there: jitaku standby setup --primary HOST:PORT --secret-file FILE"
    )
    if allowed.loopback_only:
        console.print(
            "warning: [database] listen is loopback only, so no standby on another box can connect: "
            "add this box's LAN address to it (then restart `jitaku serve`)"
        )
    if allowed.restart_needed:
        console.print(f"restart `jitaku serve` here for {', '.join(allowed.restart_needed)} to take effect")


@standby_app.command("setup")
def setup(
    primary: Annotated[str, typer.Option("--primary", help="The primary's cluster, HOST:PORT ([database] listen).")],
    secret_file: Annotated[
        Path, typer.Option("--secret-file", help="A copy of the primary's DIR/ha/replication.secret (mode 0600).")
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", help="This standby's name on the primary (default: this box's hostname)."),
    ] = None,
    replace: Annotated[
        bool, typer.Option("--replace", help="Drop a replication slot of the same name the primary has already.")
    ] = False,
    data_dir: DirOption = DEFAULT_DIR,
) -> None:
    """On the standby, the daemon stopped: replace this box's cluster by a streaming copy of the primary's."""
    from jitaku import serve_lock
    from jitaku.errors import ServeError
    from jitaku.ha import cluster, standby

    config = _managed(data_dir)
    try:
        with serve_lock.held(config.data_dir):  # no daemon starts before the secret files are mirrored too
            done = standby.setup(config, primary, secret_file, name, replace)
            console.print(f"copied the primary's cluster from {primary}; replication slot and name: {done.slot}")
            console.print(f"the old cluster is in {done.replaced}: remove it once this standby serves as it should")
            for removed in done.removed:
                console.print(f"removed an older moved-aside cluster: {removed}")
            console.print(
                f"delete {secret_file}: this box keeps its own copy of the secret in {standby.secret_path(config)}"
            )
            hold_cluster(config)
            if not standby.wait_streaming(config):
                raise CliError(
                    f"the standby started but does not stream from {primary}: see "
                    f"{config.postgres_dir / cluster.STARTUP_LOG} and the primary's log"
                )
            _mirror(config)
    except ServeError as error:
        if "already running" in str(error):
            raise CliError(f"jitaku serve is running on {config.data_dir}: stop it first") from None
        raise
    except standby.StandbyError as error:
        raise CliError(f"standby setup failed, this box's cluster is as it was: {error}") from None
    console.print(f"streaming from {primary}; start `jitaku serve`: it runs as a standby")


def _mirror(config: Config) -> None:
    """`standby setup`'s last step: the primary's secret files written here; an error naming why any was not."""
    from jitaku.ha import secret_files

    with contextlib.closing(open_database(config)) as database:
        mirrored = secret_files.mirror_now(config, database)
    if mirrored.written:
        console.print(f"wrote the primary's secret files here: {', '.join(mirrored.written)}")
    problems = []
    if mirrored.refused:
        problems.append(
            f"the primary's {', '.join(mirrored.refused)} did not open with this secret: is it the primary's "
            "DIR/ha/replication.secret?"
        )
    if mirrored.unknown:
        problems.append(
            f"the primary keeps {', '.join(mirrored.unknown)}, which this version of jitaku does not know: "
            "run the primary's version here"
        )
    if problems:
        raise CliError("; ".join(problems))


@ha_app.command("status")
def status(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """This box's role and how the pair stands: peer, sync state, lag, WAL positions, timeline, address."""
    import psycopg

    from jitaku.ha.status import status as pair_status

    config = load_config(data_dir)
    hold_cluster(config)
    try:
        found = pair_status(config)
    except psycopg.Error as error:
        said = str(error).strip().splitlines() or [error.__class__.__name__]
        raise CliError(f"cannot read the pair's state from the database: {said[0]}") from None
    if as_json:
        typer.echo(json.dumps(found))
        return
    rows: list[tuple[str, Any]] = [
        ("role", found["role"]),
        ("peer", found["peer"] or "none"),
        ("sync state", found["sync_state"]),
        ("lag", _lag(found)),
        ("received", found.get("received_lsn") or "-"),
        ("replayed", found.get("replayed_lsn") or "-"),
        ("timeline", found["timeline"] if found["timeline"] is not None else "-"),
        ("holds address", {None: "no [ha] address", True: "yes", False: "no"}[found["holds_address"]]),
        ("fenced", "yes: it must not serve as the primary" if found["fenced"] else "no"),
    ]
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        console.print(f"{label.ljust(width)}  {value}")
    for other in found.get("standbys", [])[1:]:
        console.print(
            f"{'also'.ljust(width)}  {other['peer']}: {other['sync_state']}, {other['lag_bytes']} bytes behind"
        )


def _lag(found: dict[str, Any]) -> str:
    if found["lag_bytes"] is None:
        return "-"
    seconds = found["lag_seconds"]
    return f"{found['lag_bytes']} bytes" + (f", {seconds:.1f} s" if seconds is not None else "")


def failover(
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Promote even when the old primary may be up and is not fenced: it answers and refuses, or its SMTP "
            "or PostgreSQL takes connections (two primaries could then take mail).",
        ),
    ] = False,
    data_dir: DirOption = DEFAULT_DIR,
) -> None:
    """On the standby, its daemon running: fence the old primary if it answers, promote, and wait until this box
    accepts mail (prints the seconds from the command to its first 220)."""
    from jitaku.ha import failover as ha_failover

    started = time.monotonic()
    config = load_config(data_dir)
    with _database_errors():
        ha_failover.ready(config)
        hold_cluster(config)
        done = ha_failover.failover(config, started, console.print, force)
    console.print(f"this box is the primary and accepts mail: {done.seconds:.1f} s to the first 220")


def switchover(data_dir: DirOption = DEFAULT_DIR) -> None:
    """On the standby, both boxes up: the primary hands over, losing nothing, and becomes this box's standby."""
    from jitaku.ha import failover as ha_failover

    started = time.monotonic()
    config = load_config(data_dir)
    with _database_errors():
        ha_failover.ready(config)
        hold_cluster(config)
        done = ha_failover.switchover(config, started, console.print)
    console.print(f"this box is the primary and accepts mail: {done.seconds:.1f} s to the first 220")
    if done.streaming:
        console.print(f"the old primary streams from this box as standby {done.old_primary}")
    else:
        console.print(
            f"the old primary ({done.old_primary}) does not stream from this box yet: see `jitaku ha status` and its"
            " log"
        )


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
    """A failover's refusal, or the cluster's error, as one line."""
    import psycopg

    from jitaku.ha import failover as ha_failover
    from jitaku.ha.standby import StandbyError

    try:
        yield
    except (ha_failover.FailoverError, StandbyError) as error:
        raise CliError(str(error)) from None
    except psycopg.Error as error:
        said = str(error).strip().splitlines() or [error.__class__.__name__]
        raise CliError(f"this box's PostgreSQL: {said[0]}") from None
