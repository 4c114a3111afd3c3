"""Reads as prepared statements on the DB-API: what IMAP reads with every command (issue 20).

Through SQLAlchemy a read's pool check-out, its BEGIN and ROLLBACK events and its result objects cost
several times SQLite's own work, and the event loop, which runs SQLite's reads itself (store/database.py),
spent most of its time there under ten IMAP clients. Each read here is one snapshot (a BEGIN and a COMMIT
on the driver, whose own transaction handling is off: store/driver.py), so that the statements of one read
agree, run on the connection the reader keeps for the event loop or on an idle one for a thread.

No read binds a large value, so a connection kept never holds one (SQLite keeps what was bound, not what was
read): a body read comes out of SQLite when its statement, read to the end, is reset.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from jitaku.store.driver import Driver
from jitaku.store.errors import StoreError
from jitaku.store.statements import Statements

T = TypeVar("T")
Query = Callable[[Statements], T]

# Connections kept idle for reads in threads: each holds its own page cache (up to 2 MB), so only a few are
# kept; more threads reading at once open more, which are closed after their read.
IDLE = 2


class Reader:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._kept: Any = None
        self._statements: Statements | None = None
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    def read_kept(self, query: Query[T], snapshot: bool = True) -> T:
        """QUERY on the connection this reader keeps, for one thread alone (the event loop's). One that failed
        on the database's side is closed, and the next read opens another. Without SNAPSHOT, QUERY runs one
        statement, which is a snapshot of its own."""
        if self._kept is None or self._statements is None:
            self._kept = self._driver.connect()
            self._statements = self._over(self._kept)
        try:
            return self._snapshot(self._statements, query) if snapshot else query(self._statements)
        except StoreError:
            self._kept.close()
            self._kept = self._statements = None
            raise

    def read_pooled(self, query: Query[T]) -> T:
        """QUERY on an idle connection, or a new one, in any thread."""
        with self._lock:
            connection = self._idle.pop() if self._idle else None
        if connection is None:
            connection = self._driver.connect()
        try:
            result = self._snapshot(self._over(connection), query)
        except StoreError:
            connection.close()
            raise
        except BaseException:
            self._put_back(connection)
            raise
        self._put_back(connection)
        return result

    def close(self) -> None:
        if self._kept is not None:
            self._kept.close()
            self._kept = self._statements = None
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def _put_back(self, connection: Any) -> None:
        with self._lock:
            if len(self._idle) < IDLE:
                self._idle.append(connection)
                return
        connection.close()

    def _over(self, connection: Any) -> Statements:  # the driver's own connection (sqlite3's, psycopg's)
        return Statements(connection.cursor(), self._driver.dialect, self._driver.error)

    def _snapshot(self, statements: Statements, query: Query[T]) -> T:
        statements.execute(self._driver.dialect.begin_read)
        try:
            result = query(statements)
        except BaseException:
            statements.execute("ROLLBACK")
            raise
        statements.execute("COMMIT")
        return result
