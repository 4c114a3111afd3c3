"""A store on PostgreSQL in a snapshot: pg_dump's copy of the database as one instant, taken while mail keeps
arriving, and the way back, into a managed cluster made for it.

The copy is pg_dump's custom format of a snapshot exported by a REPEATABLE READ transaction of our own, which
counts what it holds (store/backup.py's counts) and stays open while pg_dump reads: counts and copy are the same
instant, whatever commits meanwhile. A managed cluster's files are never copied (a live cluster's are not whole).

Back, a cluster is made as `jitaku init --database postgresql` makes one, started on loopback alone (where the
restored jitaku.toml listens is another box's matter until `jitaku serve` starts it), loaded by pg_restore, counted
and stopped. On the port jitaku.toml names, unless that is taken (the original cluster, on the same machine):
then on a free one, for the load alone.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jitaku import log
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


def dump(config: Config, target: Path) -> Counts:
    """The store's database written to TARGET by pg_dump, and what it holds, counted at the same instant."""
    url = config.database_url
    conninfo, environment = libpq(url)
    program = _pg_dump(config)
    try:
        connection = driver_for(url).connect()
    except Exception as error:  # noqa: BLE001 - psycopg's: one line
        raise BackupError(f"cannot connect to the database {shown(url)}: {_first_line(error)}") from None
    try:
        import psycopg

        try:
            connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            exported = str(connection.execute("SELECT pg_export_snapshot()").fetchone()[0])
            found = counts(Statements(connection.cursor(), POSTGRESQL, psycopg.Error))
        except (psycopg.Error, StoreError) as error:
            raise BackupError(f"cannot read the database {shown(url)}: {_first_line(error)}") from None
        command = [program, "--format=custom", f"--snapshot={exported}", "--no-password", f"--file={target}"]
        _run([*command, f"--dbname={conninfo}"], environment, "pg_dump")
    finally:
        connection.close()
    log.event("backup_dumped", database=shown(url), messages=found.messages, newest=found.newest)
    return found


def load(settings: Settings, directory: Path, source: Path, port: int | None = None) -> Counts:
    """DIRECTORY/postgres made as SETTINGS's managed cluster, the dump at SOURCE loaded into it; what it holds,
    counted while it runs. On PORT (default: jitaku.toml's, unless it is taken) on loopback; stopped at the end,
    whatever happens."""
    from jitaku.ha import cluster

    database = settings.database
    wanted = port or database.listen[0].port
    if port is None and not _free(wanted):
        wanted = free_port()
    parts = urlsplit(database.managed_url) if database.managed else None
    user = parts.username if parts is not None and parts.username else "jitaku"
    name = parts.path if parts is not None and parts.path.strip("/") else "/jitaku"
    url = urlunsplit(("postgresql", f"{user}@{LOOPBACK}:{wanted}", name, "", ""))
    changed = database.model_copy(update={"managed": True, "listen": (Listen(LOOPBACK, wanted),), "url": url})
    loading = Config(settings.model_copy(update={"database": changed}), directory)
    with _failing(f"cannot load the database into a new PostgreSQL cluster in {loading.postgres_dir}"):
        cluster.create(loading)
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
        finally:
            cluster.stop(loading)
    log.event("backup_loaded", directory=str(loading.postgres_dir), port=wanted, messages=found.messages)
    return found


def stop_left(config: Config, directory: Path) -> None:
    """The cluster a killed restore or verify of CONFIG's left running in DIRECTORY/postgres, stopped before its
    files go."""
    from jitaku.ha import cluster

    if (directory / "postgres" / "PG_VERSION").exists():
        try:
            cluster.stop(Config(config.settings, directory))
        except ClusterError as error:
            log.event("backup_cluster_left", directory=str(directory), error=str(error))


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


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


def _pg_dump(config: Config) -> str:
    """Debian's pg_dump of the managed cluster's version, or for another server the newest installed."""
    from jitaku.ha import cluster

    with _failing("cannot back up the database"):
        if config.settings.database.managed:
            return cluster.binaries(config.postgres_dir)["pg_dump"]
        return cluster.binaries()["pg_dump"]


def _run(command: list[str], environment: dict[str, str], what: str) -> None:
    """COMMAND, bounded by a long backup's deadline; BackupError with the first line it said."""
    try:
        result = subprocess.run(command, capture_output=True, text=True, env=environment, cwd="/", timeout=LONG)
    except subprocess.TimeoutExpired:
        raise BackupError(f"{what} took more than {LONG / 3600:.0f} hours: stopped") from None
    except OSError as error:
        raise BackupError(f"cannot run {command[0]}: {error.strerror or error}") from None
    if result.returncode != 0:
        said = [line.strip() for line in result.stderr.splitlines() if line.strip()] + ["it said nothing"]
        raise BackupError(f"{what} failed: {said[0]}")


@contextmanager
def _failing(what: str) -> Iterator[None]:
    """A cluster's failure as a BackupError saying WHAT could not be done."""
    try:
        yield
    except ClusterError as error:
        raise BackupError(f"{what}: {error}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]
