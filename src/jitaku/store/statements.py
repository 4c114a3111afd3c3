"""Prepared statements on a DB-API connection, without SQLAlchemy: what the writer's transaction (Tx) and the
readers (store/reader.py) share.

Building, caching and executing a Core statement cost many times SQLite's own work (issue 20): the writes
every message makes, and the reads IMAP makes with every command, run their SQL here instead. A driver's
failure is raised as the store's own error (store/errors.py), so that callers tell a store failure from a bug
without knowing the driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jitaku.store.dialect import Cursor, Dialect
from jitaku.store.errors import StoreError


class Statements:
    """Statements written once with `?` for each value, run on one DB-API cursor."""

    def __init__(self, cursor: Cursor, dialect: Dialect, driver_error: type[Exception]) -> None:
        self.dialect = dialect
        self._cursor = cursor
        self._driver_error = driver_error
        self._as_written = dialect.placeholder == "?"  # SQLite's: the statement goes as it is

    def run(self, statement: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """Execute STATEMENT with PARAMETERS; the rows it returns, if any. IMAP runs several for each command."""
        try:
            self._cursor.execute(statement if self._as_written else self.dialect.sql(statement), parameters)
            # All of them: a statement left half-read stays active in SQLite (holding up a RELEASE, and the
            # values of its row); read to its end, it is reset, which lets go of them. psycopg refuses to fetch
            # what returned no rows (an UPDATE without RETURNING), which SQLite's driver answers with none
            if self._as_written or self._cursor.description is not None:
                return self._cursor.fetchall()
            return []
        except self._driver_error as error:  # a try in each method, not a context manager: these run per command
            raise StoreError(statement, error) from error

    def execute(self, statement: str) -> None:
        """STATEMENT, which takes no values and returns no rows (BEGIN, COMMIT, SAVEPOINT)."""
        try:
            self._cursor.execute(statement, ())
        except self._driver_error as error:
            raise StoreError(statement, error) from error
