"""A store on PostgreSQL in a snapshot: pg_dump's copy of the database as one instant, taken while mail keeps
arriving, and the way back, into a managed cluster made for it.

The copy is pg_dump's custom format of a snapshot exported by a REPEATABLE READ transaction of our own, which
counts what it holds (store/backup.py's counts) and stays open while pg_dump reads: counts and copy are the same
instant, whatever commits meanwhile. A managed cluster's files are never copied (a live cluster's are not whole).

Back, a cluster is made as `jitaku init --database postgresql` makes one, started on loopback alone (where the
restored jitaku.toml listens is another box's matter until `jitaku serve` starts it), on a free port (the port
jitaku.toml names may be the original's, or be wanted back by it meanwhile; each start writes the port anew),
loaded by pg_restore, counted and stopped.

pg_dump and pg_restore run as restic does (backup/child.py): a deadline, killed when the daemon stops or the
command is interrupted, and dead with us.
"""

from __future__ import annotations

import glob
import os
import shlex
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jitaku import log
from jitaku.backup import child
from jitaku.backup.restic import LONG
from jitaku.config import Config, Listen, Settings
from jitaku.errors import BackupError, ClusterError, SchemaSkew
from jitaku.store.backup import Counts, counts, counts_of
from jitaku.store.dialect import POSTGRESQL
from jitaku.store.driver import driver_for, shown
from jitaku.store.errors import StoreError
from jitaku.store.statements import Statements

DUMP = "postgres.dump"  # in the snapshot's root, beside jitaku.toml
LOOPBACK = "127.0.0.1"
# --no-acl: the grants of a managed cluster are its one role's own; an external server's name roles a cluster
# made for the load does not have
PG_RESTORE = ("--exit-on-error", "--no-owner", "--no-acl")
# where Debian's postgresql-client-N puts them: pg_dump alone, without the server's pg_ctl
CLIENTS = "/usr/lib/postgresql/*/bin/{program}"


def dump(config: Config, target: Path) -> Counts:
    """The store's database written to TARGET by pg_dump, and what it holds, counted at the same instant."""
    url = config.database_url
    conninfo, environment = libpq(url)
    try:
        connection = driver_for(url).connect()
    except Exception as error:  # noqa: BLE001 - psycopg's: one line
        raise BackupError(f"cannot connect to the database {shown(url)}: {_first_line(error)}") from None
    try:
        import psycopg

        try:
            server = int(connection.execute("SHOW server_version_num").fetchone()[0]) // 10000
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            exported = str(connection.execute("SELECT pg_export_snapshot()").fetchone()[0])
            found = counts(Statements(connection.cursor(), POSTGRESQL, psycopg.Error))
        except (psycopg.Error, StoreError) as error:
            raise BackupError(f"cannot read the database {shown(url)}: {_first_line(error)}") from None
        program = _pg_dump(config, server)
        _private(target)
        command = [program, "--format=custom", f"--snapshot={exported}", "--no-password", f"--file={target}"]
        _run([*command, f"--dbname={conninfo}"], environment, "pg_dump")
    finally:
        connection.close()
    log.event("backup_dumped", database=shown(url), messages=found.messages, newest=found.newest)
    return found


def load(settings: Settings, directory: Path, source: Path) -> Counts:
    """DIRECTORY/postgres made as SETTINGS's managed cluster, the dump at SOURCE loaded into it; what it holds,
    counted while it runs. On a free loopback port; stopped at the end, whatever happens (SIGTERM too, which
    the CLI makes SystemExit: cli.common.exit_on_signals)."""
    from jitaku.ha import cluster

    database = settings.database
    port = free_port()
    parts = urlsplit(database.managed_url) if database.managed else None
    user = parts.username if parts is not None and parts.username else "jitaku"
    name = parts.path if parts is not None and parts.path.strip("/") else "/jitaku"
    url = urlunsplit(("postgresql", f"{user}@{LOOPBACK}:{port}", name, "", ""))
    changed = database.model_copy(update={"managed": True, "listen": (Listen(LOOPBACK, port),), "url": url})
    loading = Config(settings.model_copy(update={"database": changed}), directory)
    with _failing(f"cannot load the database into a new PostgreSQL cluster in {loading.postgres_dir}"):
        cluster.create(loading)
        failed = True
        try:
            cluster.start(loading)
            cluster.ensure_database(loading)
            conninfo, environment = libpq(loading.database_url)
            program = cluster.binaries(loading.postgres_dir)["pg_restore"]
            command = [program, *PG_RESTORE, "--no-password", f"--dbname={conninfo}", str(source)]
            _run(command, environment, "pg_restore")
            try:
                found = counts_of(loading.database_url)
            except (StoreError, SchemaSkew) as error:
                raise BackupError(f"the database loaded cannot be opened: {_first_line(error)}") from None
            failed = False
        finally:
            try:
                cluster.stop(loading)
            except ClusterError as error:  # logged, and the load's own failure, if any, said instead
                log.event("backup_cluster_not_stopped", directory=str(loading.postgres_dir), error=str(error))
                if not failed:
                    raise
    log.event("backup_loaded", directory=str(loading.postgres_dir), port=port, messages=found.messages)
    return found


def stop_left(config: Config | None, directory: Path) -> bool:
    """The cluster a killed restore or verify of CONFIG's (None: its jitaku.toml unread) left running in
    DIRECTORY/postgres, stopped; True when nothing runs there any more, so that its files may go. False, said in
    one log event, when it could not be stopped or its postmaster still lives (another user's, which this process
    cannot tell for ours): deleted, it would run on without its files, holding its port, found by nothing."""
    from jitaku.ha import cluster

    data = directory / "postgres"
    if not (data / "PG_VERSION").exists():
        return True
    error = ""
    if config is not None:
        try:
            cluster.stop(Config(config.settings, directory))
        except (ClusterError, OSError) as failure:
            error = str(failure)
    pid = _postmaster_alive(data)
    if not error and pid is None:
        return True
    log.event(
        "backup_cluster_left",
        directory=str(directory),
        pid=pid,
        error=error or "its postmaster still runs",
        kept="its files stay until it is stopped",
    )
    return False


def restore_command(config: Config) -> str:
    """The command that loads a restored DIR/postgres.dump into the empty database CONFIG's url names."""
    conninfo, _ = libpq(config.database_url)
    return shlex.join(["pg_restore", *PG_RESTORE, f"--dbname={conninfo}", str(config.data_dir / DUMP)])


def libpq(url: str) -> tuple[str, dict[str, str]]:
    """URL (SQLAlchemy's form, as the store connects) as libpq's connection string without its password, and the
    environment that gives the password: never on a command line, which ps shows."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params: dict[str, Any] = conninfo_to_dict(f"postgresql://{url.partition('://')[2]}")
    password = params.pop("password", None)
    environment = dict(os.environ)
    environment.pop("PGPASSWORD", None)
    if password:
        environment["PGPASSWORD"] = str(password)
    return make_conninfo(**params), environment


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


def _pg_dump(config: Config, server: int) -> str:
    """Debian's pg_dump of the managed cluster's version; for another server, the newest installed, which must be
    of the SERVER's major version or newer (an older one refuses it). The client package is enough for that: the
    server's (pg_ctl) is needed only by the restore drill."""
    from jitaku.ha import cluster

    if config.settings.database.managed:
        with _failing("cannot back up the database"):
            return cluster.binaries(config.postgres_dir)["pg_dump"]
    pattern = CLIENTS.format(program="pg_dump")
    found = {Path(path).parents[1].name: path for path in glob.glob(pattern) if os.access(path, os.X_OK)}
    usable = [int(version) for version in found if version.isdigit() and int(version) >= server]
    if not usable:
        raise BackupError(
            f"cannot back up the database: no pg_dump of PostgreSQL {server} or newer, the server's version, in"
            f" {pattern}: apt install postgresql-client-{server}"
        )
    return found[str(max(usable))]


def _private(target: Path) -> None:
    """TARGET made empty and 0600 before pg_dump writes it (and keeps its mode): a dump is every mailbox and
    password hash, and restic keeps the mode it is sent with."""
    try:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
    except OSError as error:
        raise BackupError(f"cannot make {target} for pg_dump: {error.strerror or error}") from None


def _postmaster_alive(data: Path) -> int | None:
    """The pid DATA's postmaster.pid names, if that process lives (a zombie does not)."""
    try:
        first = (data / "postmaster.pid").read_text(encoding="utf-8").partition("\n")[0].strip()
    except OSError:
        return None
    if not first.isdigit():
        return None
    try:
        os.kill(int(first), 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{first}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return int(first)
    return None if state in ("Z", "X") else int(first)


def _run(command: list[str], environment: dict[str, str], what: str) -> None:
    """COMMAND, bounded by a long backup's deadline; BackupError with the first line it said."""
    try:
        ended = child.run(command, environment, LONG, cwd="/")
    except OSError as error:
        raise BackupError(f"cannot run {command[0]}: {error.strerror or error}") from None
    if ended.expired:
        raise BackupError(f"{what} took more than {LONG / 3600:.0f} hours: stopped")
    if ended.code != 0:
        said = [line.strip() for line in ended.stderr.splitlines() if line.strip()] + ["it said nothing"]
        raise BackupError(f"{what} failed: {said[0]}")


@contextmanager
def _failing(what: str) -> Iterator[None]:
    """A cluster's failure, or the OS's (a directory it cannot make), as a BackupError saying WHAT could not be
    done."""
    try:
        yield
    except ClusterError as error:
        raise BackupError(f"{what}: {error}") from None
    except OSError as error:
        where = f" ({error.filename})" if error.filename else ""
        raise BackupError(f"{what}: {error.strerror or error}{where}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
