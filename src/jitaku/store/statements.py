"""Prepared statements on a DB-API connection, without SQLAlchemy: what the writer's transaction (Tx) and the
readers (store/reader.py) share.

Building, caching and executing a Core statement cost many times SQLite's own work (issue 20): the writes
every message makes, and the reads IMAP makes with every command, run their SQL here instead. A driver's
failure is raised as SQLAlchemy's error for it, as from a Core statement, so that callers tell a store failure
from a bug the same way on both ways in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

from jitaku.store.dialect import Cursor, Dialect


class Statements:
    """Statements written once with `?` for each value, run on one DB-API cursor."""

    def __init__(self, cursor: Cursor, dialect: Dialect, driver_error: type[Exception]) -> None:
        self.dialect = dialect
        self._cursor = cursor
        self._driver_error = driver_error

    def run(self, statement: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """Execute STATEMENT with PARAMETERS; the rows it returns, if any."""
        try:
            cursor = self._cursor.execute(self.dialect.sql(statement), parameters)
            # All of them: a statement left half-read stays active in SQLite (holding up a RELEASE, and the
            # values of its row); read to its end, it is reset, which lets go of them
            return list(cursor.fetchall())
        except self._driver_error as error:
            raise self.failure(statement, error) from error

    def execute(self, statement: str) -> None:
        """STATEMENT, which takes no values and returns no rows (BEGIN, COMMIT, SAVEPOINT)."""
        try:
            self._cursor.execute(statement, ())
        except self._driver_error as error:
            raise self.failure(statement, error) from error

    def failure(self, statement: str, error: Exception) -> Exception:
        """The driver's ERROR as SQLAlchemy's. (A try in each method, not a context manager: a generator
        made and closed for each of the half dozen statements a message runs cost more than SQLite's work.)"""
        # hide_parameters: they hold message bodies, which must not reach a log line
        return DBAPIError.instance(statement, None, error, self._driver_error, hide_parameters=True)
