"""Reads as prepared statements on the DB-API: what IMAP reads with every command (issue 20).

Through SQLAlchemy a read's pool check-out, its BEGIN and ROLLBACK events and its result objects cost
several times SQLite's own work, and the event loop, which runs SQLite's reads itself (store/database.py),
spent most of its time there under ten IMAP clients. Each read here is one snapshot (a BEGIN and a COMMIT
on the driver, whose own transaction handling is off: store/engine.py), so that the statements of one read
agree, run on the connection the reader keeps for the event loop or on one from the pool for a thread.

No read binds a large value, so the kept connection never holds one (the rule of store/engine.py is for
what is bound): a body read comes out of SQLite when its statement, read to the end, is reset.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import PoolProxiedConnection

from jitaku.store.dialect import dialect_named
from jitaku.store.statements import Statements

T = TypeVar("T")
Query = Callable[[Statements], T]


class Reader:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = dialect_named(engine.dialect.name)
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error
        self._kept: PoolProxiedConnection | None = None
        self._statements: Statements | None = None

    def read_kept(self, query: Query[T], snapshot: bool = True) -> T:
        """QUERY on the connection this reader keeps, for one thread alone (the event loop's): no pool
        check-out. One that failed on the database's side is closed, and the next read opens another.
        Without SNAPSHOT, QUERY runs one statement, which is a snapshot of its own."""
        if self._kept is None or self._statements is None:
            self._kept = self._engine.raw_connection()
            self._statements = self._over(self._kept.driver_connection)
        try:
            return self._snapshot(self._statements, query) if snapshot else query(self._statements)
        except SQLAlchemyError:
            self._kept.invalidate()
            self._kept = self._statements = None
            raise

    def read_pooled(self, query: Query[T]) -> T:
        """QUERY on a connection from the pool, in any thread."""
        connection = self._engine.raw_connection()
        try:
            return self._snapshot(self._over(connection.driver_connection), query)
        finally:
            connection.close()

    def close(self) -> None:
        if self._kept is not None:
            self._kept.close()
            self._kept = self._statements = None

    def _over(self, connection: Any) -> Statements:  # the driver's own connection (sqlite3's, psycopg's)
        assert connection is not None, "a connection checked out of the pool is open"
        return Statements(connection.cursor(), self._dialect, self._driver_error)

    def _snapshot(self, statements: Statements, query: Query[T]) -> T:
        statements.execute(self._dialect.begin_read)
        try:
            result = query(statements)
        except BaseException:
            statements.execute("ROLLBACK")
            raise
        statements.execute("COMMIT")
        return result
