"""A PostgreSQL server for the tests that run the store on it: Debian's PostgreSQL 15 binaries, a cluster of the
test run's own in a temporary directory on a loopback port, started on first use by each pytest worker and
stopped at its exit. Each test gets a database of its own, copied from one the migrations brought to the newest
schema once (CREATE DATABASE ... TEMPLATE), so that no test waits for the migrations.

`JITAKU_TEST_DATABASE=postgresql` runs every test that asks `database_url` (the store's fixtures, and the
daemons of tests/integration/harness.py) on it instead of SQLite.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.peers import free_port, wait_until

SUPERUSER = "jitaku"
TEMPLATE = "jitaku_template"


def on_postgresql() -> bool:
    return os.environ.get("JITAKU_TEST_DATABASE", "sqlite") == "postgresql"


def sqlite_only(why: str) -> pytest.MarkDecorator:
    """A test of what SQLite alone has (its PRAGMAs, its file, jobs run at once on the writer's connection):
    skipped on PostgreSQL, saying WHY."""
    return pytest.mark.skipif(on_postgresql(), reason=f"SQLite only: {why}")


def binaries() -> Path:
    """The newest PostgreSQL's binaries Debian installed (postgresql-15 and later)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql-15 (scripts/test does)")
    return Path(found[-1]).parent


class Server:
    """One cluster, trusting loopback connections (it is the tests' own, on a port only they know)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="jitaku-pg-"))
        self.port = free_port()
        self.data = self.base / "data"
        self._as = _unprivileged()
        if self._as is not None:
            os.chown(self.base, self._as.pw_uid, self._as.pw_gid)
        self.base.chmod(0o711)  # its socket, for a daemon in a network namespace of its own or not root
        bin = binaries()
        self._run(str(bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.base} -c fsync=off -c max_connections=200"
        self._run(str(bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.base / "log"), "-w", "start")
        self._bin = bin
        self._databases = 0
        wait_until(lambda: self._ready(), timeout=30, interval=0.1)
        self._run(str(bin / "createdb"), "-h", str(self.base), "-p", str(self.port), "-U", SUPERUSER, TEMPLATE)
        from jitaku.store import Database

        Database(self.over_socket(self.url(TEMPLATE))).close()  # the migrations, once

    def url(self, name: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{name}"

    def over_socket(self, url: str) -> str:
        """URL (one of url()'s) through the server's Unix socket: what a daemon in a network namespace of its
        own reaches, where 127.0.0.1 is not ours."""
        return f"postgresql://{SUPERUSER}@/{_name(url)}?host={self.base}&port={self.port}"

    def database(self, template: str = TEMPLATE) -> str:
        """The URL of a new database: a copy of TEMPLATE, by default at the newest schema and empty."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self._create(name, template)
        return self.url(name)

    def keep(self, url: str, name: str) -> None:
        """A copy of the database at URL named NAME, for database() to copy from (nobody may be connected
        to URL meanwhile)."""
        self._create(name, _name(url))

    def _create(self, name: str, template: str) -> None:
        import psycopg

        with psycopg.connect(self.over_socket(self.url("postgres")), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')

    def drop(self, url: str) -> None:
        """Drop the database at URL (one of database()'s), whoever is connected to it: as a server lost."""
        import psycopg

        name = _name(url)
        with psycopg.connect(self.over_socket(self.url("postgres")), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        subprocess.run(
            [str(self._bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
            user=self._as.pw_uid if self._as else None,
        )
        shutil.rmtree(self.base, ignore_errors=True)

    def _ready(self) -> bool:
        result = subprocess.run(
            [str(binaries() / "pg_isready"), "-h", str(self.base), "-p", str(self.port)], capture_output=True
        )
        return result.returncode == 0

    def _run(self, *command: str) -> None:
        subprocess.run(command, check=True, capture_output=True, user=self._as.pw_uid if self._as else None)


def _name(url: str) -> str:
    """The name of the database at URL."""
    return url.partition("?")[0].rpartition("/")[2]


def _unprivileged() -> pwd.struct_passwd | None:
    """Whom the server runs as when the tests run as root, which PostgreSQL refuses."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no unprivileged user to run PostgreSQL as (postgres, nobody)")


_server: Server | None = None


def server() -> Server:
    global _server
    if _server is None:
        _server = Server()
        atexit.register(_server.close)
    return _server


def database_url(directory: Path, name: str = "j.db") -> str:
    """Where a test's store lives: a SQLite file in DIRECTORY, or a new database of the tests' PostgreSQL."""
    if on_postgresql():
        return server().database()
    return f"sqlite:///{directory / name}"
