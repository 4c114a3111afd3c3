"""What every command group shares: the --dir and --json options, the error a command refuses with, the
config and database a command works on, and how results are printed (one console, tables, JSON, times)."""

from __future__ import annotations

import atexit
import contextlib
import json
import select
import signal
import sys
import threading
import time
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from jitaku import config as config_module
from jitaku import dns_records, table
from jitaku.cli.errors import CliError as CliError  # the command groups take it from here
from jitaku.config import Config
from jitaku.data_dir import LOCAL_DIR
from jitaku.terminal import visible

if TYPE_CHECKING:
    from jitaku.store import Database

DIR_HELP = (
    "Data directory (default $JITAKU_DIR, else ./jitaku-data if it exists, else /var/lib/jitaku if it holds"
    " jitaku.toml, else ./jitaku-data)."
)


def _found(context: typer.Context, parameter: typer.CallbackParam, given: Path) -> Path:
    """Where the data directory is: as given by --dir or $JITAKU_DIR, else found (jitaku.data_dir)."""
    from jitaku.data_dir import find

    source = context.get_parameter_source(parameter.name or "")
    return find() if source is not None and source.name == "DEFAULT" else given


def _as_owner(context: typer.Context, parameter: typer.CallbackParam, given: Path) -> Path:
    """The data directory, found; run as root on one that is another user's (the service's), this process
    becomes that user before the command does anything (jitaku.privileges)."""
    from jitaku import privileges

    found = _found(context, parameter, given)
    if not context.resilient_parsing:
        privileges.become_owner(found)
    return found


DirOption = Annotated[
    Path, typer.Option("--dir", envvar="JITAKU_DIR", help=DIR_HELP, show_default=False, callback=_as_owner)
]
# For the two commands that keep root: `serve` binds its ports first and drops root by `[run] user`, and
# `smart collect` reads the disks as root.
RootDirOption = Annotated[
    Path, typer.Option("--dir", envvar="JITAKU_DIR", help=DIR_HELP, show_default=False, callback=_found)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON array.")]
DEFAULT_DIR = LOCAL_DIR  # what typer is given; the --dir callback puts the directory found in its place

# No markup: a subject holding `[bold]` or `[/]` prints as itself (and `[/]` alone made Rich raise); no emoji
# codes, which Rich replaces even without markup (a stranger's `:warning:` showed as a warning sign). No
# highlighting, which colours parts of a line by guesswork, and no wrapping of plain lines (a path stays whole).
console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)


def load_config(data_dir: Path) -> Config:
    """DIR's config; a ConfigError names file, key and value, and main() prints it as one line."""
    return config_module.load(data_dir)


def open_database(config: Config) -> Database:
    """The database the config names (SQLite in the data directory, or PostgreSQL), opened for this command."""
    from jitaku.ha import fence
    from jitaku.store import Database

    hold_cluster(config)
    # a fenced box's database may have diverged from the primary's: a command reads it, never writes to it
    return Database(config.database_url, read_only=fence.read(config) is not None)


_held = contextlib.ExitStack()  # the clusters this command holds, left at its exit
_holding: set[Path] = set()


def hold_cluster(config: Config) -> None:
    """With `[database] managed`, the cluster running until this command ends: started if down, and stopped at the
    end unless another jitaku process (the daemon) uses it then (jitaku.ha.cluster.using). A command run while
    the daemon is down leaves no server running behind it, listening on a port and holding memory: not when it is
    ended by SIGTERM or SIGHUP either (an ssh session dropped in the middle of `db copy`), which become SystemExit
    and so run what atexit runs."""
    if not config.settings.database.managed or config.data_dir in _holding:
        return
    from jitaku.ha import cluster

    if not _holding:
        atexit.register(_release)
        exit_on_signals()
    from jitaku import serve_lock

    daemon = serve_lock.running(config.data_dir)
    _held.enter_context(cluster.using(config))
    _holding.add(config.data_dir)
    if not daemon:  # a running daemon asks its peer itself, at its start and every 15 s
        _fence_if_superseded(config)


def _fence_if_superseded(config: Config) -> None:
    """A command that started the cluster (the daemon is down) asks the peer first, as the daemon does at its
    start (jitaku.ha.mode): a box that was the primary, and whose peer was promoted while it was away, writes
    its split-brain fence, and its commands then read its database and never write to it (open_database)."""
    from jitaku.ha import fence, mode, role

    try:
        if fence.read(config) is not None or role.current(config) != role.PRIMARY:
            return
        newer = mode.newer_primary(config)
    except Exception as error:  # noqa: BLE001 - psycopg's and the OS's: one line, and nothing written
        said = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise CliError(
            f"cannot tell whether the peer was promoted while this box's daemon was down ({said}): nothing done"
        ) from None
    if newer is not None:
        fence.write(config, fence.Fence("split-brain", newer, time.time()))
        sys.stderr.write(
            f"jitaku: the peer at {newer} was promoted while this box was away: this box is fenced, its database "
            "read-only (`jitaku standby setup` re-joins it)\n"
        )


def exit_on_signals() -> None:
    """SIGTERM and SIGHUP (`kill PID`, an ssh session dropped) as SystemExit, so that the command's finally blocks
    and atexit's run: a cluster it started is stopped, a directory it made half is removed."""
    if threading.current_thread() is threading.main_thread():  # where Python runs signal handlers
        for number in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, _exit_on_signal)


YES = ("y", "yes")
NO = ("", "n", "no")
ASK_EVERY = 0.5  # seconds between two looks for a pending signal while the question waits


def confirm(question: str) -> bool:
    """QUESTION answered yes or no (no by default) at the terminal, as typer.confirm asks it; the end of the input
    (Ctrl-D) is typer.Abort. The answer is waited for with select and a short timeout, not a blocking read: Python
    runs a signal's handler between bytecodes, so a SIGTERM or SIGHUP that came just before the read began (after
    the question was written) would wait for a line to be typed, and a command ended at its question would stay."""
    while True:
        sys.stderr.write(f"{question} [y/N]: ")
        sys.stderr.flush()
        while not select.select([sys.stdin], [], [], ASK_EVERY)[0]:
            pass
        line = sys.stdin.readline()
        if not line:
            sys.stderr.write("\n")
            raise typer.Abort()
        answer = line.strip().lower()
        if answer in YES or answer in NO:
            return answer in YES
        sys.stderr.write("Error: invalid input\n")


def _exit_on_signal(number: int, frame: object) -> None:
    """The first signal ends the command; those after it wait for its clean-up, which they would cut short."""
    for other in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(other, signal.SIG_IGN)
    raise SystemExit(128 + number)


def _release() -> None:
    """Leave every cluster held; a failure is one line on stderr, never atexit's traceback. A second SIGTERM
    waits: the stop is bounded (jitaku.ha.cluster.STOP_TIMEOUT), and cut short it would leave the cluster up."""
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, signal.SIG_IGN)
    try:
        _held.close()
    except Exception as error:
        said = (str(error).strip().splitlines() or [type(error).__name__])[0]
        sys.stderr.write(f"jitaku: stopping the PostgreSQL cluster: {visible(said)}\n")
    _holding.clear()


def parse_address(text: str) -> str:
    """TEXT as one plain mail address, normalized, or a CliError that quotes it."""
    from jitaku import addresses as address

    parsed = address.parse(text)
    if parsed is None:
        raise CliError(f"not a plain mail address: {text!r}")
    return address.normalize(str(parsed))


def parse_local_address(config: Config, text: str) -> str:
    """TEXT as an address at one of this server's domains: users, aliases and lists live only there."""
    normalized = parse_address(text)
    domain = normalized.rpartition("@")[2]
    if not config.settings.is_local_domain(domain):
        raise CliError(f"{domain} is not one of this server's domains ({', '.join(config.settings.domains)})")
    return normalized


def records_to_publish(config: Config) -> list[dns_records.Record]:
    """The records to publish (`init` and `dns records`); our public addresses are those the DDNS updater last
    learned, if any, and our interface's global IPv6 address when the MX listens on IPv6."""
    from jitaku.health.dns import public_addresses
    from jitaku.store import ddns

    states = open_database(config).read_now(ddns.all_states)
    learned = public_addresses([(state.family, state.address) for state in states])
    ours = dns_records.our_addresses(config.settings, learned)
    return dns_records.needed(config.settings, dns_records.dkim(config), ours)


def print_json(rows: list[dict[str, Any]]) -> None:
    """One JSON array on one line, for scripts to read."""
    sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")


def print_table(
    columns: list[str], rows: list[list[Any]], *, empty: str, whole: Collection[str] = (), below: str | None = None
) -> None:
    """Rows for a person, nothing cut at any width (jitaku.table); EMPTY, a sentence, when there are none."""
    table.show(console, columns, rows, empty=empty, whole=whole, below=below)


def utc_time(timestamp: float) -> str:
    """A time as every command prints it, for a person and in JSON alike: ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
