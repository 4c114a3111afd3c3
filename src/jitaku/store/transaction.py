"""A write transaction as a job of the writer sees it: two ways into one transaction.

`connection` is SQLAlchemy's, for the statements written in Core (most of store/); `run` executes a
statement on the very DB-API connection under it, in the same transaction (store/statements.py), for the few
statements every accepted message runs (store/intake.py), where SQLAlchemy cost fifty times SQLite's own work.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy.engine import Connection

from jitaku.store.dialect import LARGE_VALUE, Dialect, dialect_named
from jitaku.store.statements import Statements


class Tx(Statements):
    def __init__(self, connection: Connection, dialect: Dialect) -> None:
        driver = connection.connection.driver_connection
        assert driver is not None, "a connection in a transaction has its driver's connection"
        super().__init__(driver.cursor(), dialect, connection.dialect.loaded_dbapi.Error)
        self.connection = connection

    @classmethod
    def over(cls, connection: Connection) -> Tx:
        """The Tx of CONNECTION's transaction, for a Core job that calls a function written for a Tx."""
        return cls(connection, dialect_named(connection.dialect.name))

    def run(self, statement: str, parameters: Sequence[Any] = ()) -> list[Any]:
        """Execute STATEMENT (`?` for each value) with PARAMETERS; the rows it returns, if any."""
        if self.dialect.keeps_bound_values:
            self._note_large(parameters)
        return super().run(statement, parameters)

    def run_many(self, statement: str, rows: Iterable[Sequence[Any]]) -> None:
        """Execute STATEMENT once for each of ROWS."""
        rows = list(rows)
        if self.dialect.keeps_bound_values:
            for parameters in rows:
                self._note_large(parameters)
        try:
            self._cursor.executemany(self.dialect.sql(statement), rows)
        except self._driver_error as error:
            raise self.failure(statement, error) from error

    def begin(self) -> None:
        """Start the writer's transaction on the DB-API. A Core statement later in it finds the transaction
        begun (store/engine.py) and joins it."""
        self.execute(self.dialect.begin)

    def commit(self) -> None:
        if self.connection.in_transaction():  # a Core statement joined: SQLAlchemy ends what it took part in
            self.connection.commit()
        else:
            self.execute("COMMIT")

    def savepoint(self) -> None:
        self.execute("SAVEPOINT job")

    def release(self) -> None:
        self.execute("RELEASE SAVEPOINT job")

    def roll_back(self) -> None:
        """Undo what was done since the savepoint, and leave it."""
        self.execute("ROLLBACK TO SAVEPOINT job")
        self.execute("RELEASE SAVEPOINT job")

    def _note_large(self, parameters: Sequence[Any]) -> None:
        # The same mark Core statements leave (store/engine.py): the connection is closed at check-in
        if any(isinstance(value, bytes | memoryview) and len(value) >= LARGE_VALUE for value in parameters):
            self.connection.info["holds_large_value"] = True
