"""Opening the database's DB-API connections, without SQLAlchemy: what the writer, the readers and the
SQLAlchemy engine the CLI and migrations use (store/engine.py) all connect with.

SQLite is tuned on each connection: WAL, so that reads never wait for the writer; synchronous=FULL, so that
a commit survives a power cut; foreign keys enforced; a wait for the write lock rather than an error. The
driver's own transaction handling is off (isolation_level None): the writer begins, SAVEPOINTs and commits on
the DB-API itself (store/writer.py), which pysqlite's handling would break.
"""

from __future__ import annotations

import importlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jitaku.store.dialect import BUSY_TIMEOUT, POSTGRESQL, SQLITE, Dialect


@dataclass(frozen=True)
class Driver:
    """How to reach the database at URL (SQLAlchemy's form of it, as the config gives it)."""

    url: str
    dialect: Dialect
    error: type[Exception]  # the driver's base class of errors (PEP 249's Error)
    connect: Callable[[], Any]  # a new DB-API connection, tuned
    read_only: bool = False  # every transaction refuses to write


READ_ONLY_OPTIONS = "-c default_transaction_read_only=on"  # libpq's `options`: the session's default


def driver_for(url: str, read_only: bool = False) -> Driver:
    """READ_ONLY: every transaction refuses to write (a fenced box's commands: its database may have diverged
    from the primary's, and what it would take there would be lost)."""
    scheme, _, rest = url.partition("://")
    backend = scheme.partition("+")[0]
    path = sqlite_path(url)
    if path is not None:
        if not path or "?" in path:
            raise ValueError(f"jitaku stores SQLite data in a file named by its URL, sqlite:///PATH, not {shown(url)}")
        return Driver(url, SQLITE, sqlite3.Error, lambda: _open_sqlite(path, read_only), read_only)
    if backend in ("postgresql", "postgres"):
        return _postgresql(url, rest, read_only)
    raise ValueError(f"jitaku stores its data in SQLite or PostgreSQL, not {backend}")


def sqlite_path(url: str) -> str | None:
    """The file a SQLite URL names, as SQLAlchemy reads it (sqlite:///relative/path, sqlite:////absolute/path);
    None when URL is not SQLite's."""
    scheme, _, rest = url.partition("://")
    return rest.removeprefix("/") if scheme.partition("+")[0] == "sqlite" else None


def shown(url: str) -> str:
    """URL as said to a person, in an error or a log: a password in it is not, neither after the user's name
    nor as a `password` parameter (libpq takes both)."""
    import sqlalchemy as sa  # only once something is said: the daemon at idle does not load it

    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:  # not a URL at all: nothing of it can be told apart, a password included
        return url.partition("://")[0] + "://..."
    return parsed.difference_update_query(["password"]).render_as_string(hide_password=True)


def _open_sqlite(path: str, read_only: bool) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", f"busy_timeout={BUSY_TIMEOUT}"):
        connection.execute(f"PRAGMA {pragma}").close()
    if read_only:
        connection.execute("PRAGMA query_only=ON").close()
    return connection


def _postgresql(url: str, rest: str, read_only: bool) -> Driver:
    try:
        psycopg: Any = importlib.import_module("psycopg")
    except ImportError:
        raise ValueError(f"{shown(url)} needs psycopg 3 (pip install 'psycopg[binary]')") from None
    conninfo = f"postgresql://{rest}"
    options = {"options": READ_ONLY_OPTIONS} if read_only else {}

    def connect() -> Any:
        return psycopg.connect(conninfo, autocommit=True, **options)

    return Driver(url, POSTGRESQL, psycopg.Error, connect, read_only)
