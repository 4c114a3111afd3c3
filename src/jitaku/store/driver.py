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


def driver_for(url: str) -> Driver:
    scheme, _, rest = url.partition("://")
    backend = scheme.partition("+")[0]
    if backend == "sqlite":
        path = rest.removeprefix("/")  # sqlite:///relative/path, sqlite:////absolute/path
        if not path or "?" in path:
            raise ValueError(f"jitaku stores SQLite data in a file named by its URL, sqlite:///PATH, not {url}")
        return Driver(url, SQLITE, sqlite3.Error, lambda: _open_sqlite(path))
    if backend in ("postgresql", "postgres"):
        return _postgresql(url, rest)
    raise ValueError(f"jitaku stores its data in SQLite or PostgreSQL, not {backend}")


def _open_sqlite(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", f"busy_timeout={BUSY_TIMEOUT}"):
        connection.execute(f"PRAGMA {pragma}").close()
    return connection


def _postgresql(url: str, rest: str) -> Driver:
    try:
        psycopg: Any = importlib.import_module("psycopg")
    except ImportError:
        raise ValueError(f"{url} needs psycopg 3 (pip install 'psycopg[binary]')") from None
    conninfo = f"postgresql://{rest}"
    return Driver(url, POSTGRESQL, psycopg.Error, lambda: psycopg.connect(conninfo, autocommit=True))
