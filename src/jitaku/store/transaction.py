"""A write transaction as a job of the writer sees it: prepared statements on the writer's DB-API connection
(`run`, `run_many`: store/statements.py), with the writer's BEGIN, SAVEPOINTs and COMMIT on it.

The CLI's Core transactions reach the same store functions: `tx_of` and `statements_of` wrap its SQLAlchemy
connection (`Tx.over`), whose statements then run on the driver's connection under it, in the CLI's own
transaction, without the store functions importing SQLAlchemy (14 MB of the daemon's idle memory).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from jitaku.store.dialect import LARGE_VALUE, Dialect, dialect_named
from jitaku.store.errors import StoreError
from jitaku.store.statements import Statements

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class Tx(Statements):
    def __init__(self, connection: Any, dialect: Dialect, driver_error: type[Exception]) -> None:
        """CONNECTION is the driver's."""
        super().__init__(connection.cursor(), dialect, driver_error)
        self._driver_connection = connection
        self._pooled: Connection | None = None  # the Core connection wrapped (Tx.over), whose pool holds it
        self._large = False

    @classmethod
    def over(cls, connection: Connection) -> Tx:
        """The Tx of CONNECTION's transaction, for a CLI command that calls a function written for a Tx."""
        driver = connection.connection.driver_connection
        assert driver is not None, "a connection in a transaction has its driver's connection"
        tx = cls(driver, dialect_named(connection.dialect.name), connection.dialect.loaded_dbapi.Error)
        tx._pooled = connection
        return tx

    @property
    def holds_large_value(self) -> bool:
        """Whether a statement of this transaction bound a large value, which SQLite keeps for as long as the
        connection lives (issue 15): its holder closes it rather than keep it."""
        return self._large

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
            raise StoreError(statement, error) from error

    def begin(self) -> None:
        """Start the writer's transaction on the DB-API."""
        self.execute(self.dialect.begin)

    def commit(self) -> None:
        self.execute("COMMIT")

    def savepoint(self) -> None:
        self.execute("SAVEPOINT job")

    def release(self) -> None:
        self.execute("RELEASE SAVEPOINT job")

    def roll_back(self) -> None:
        """Undo what was done since the savepoint, and leave it."""
        self.execute("ROLLBACK TO SAVEPOINT job")
        self.execute("RELEASE SAVEPOINT job")

    def close(self) -> None:
        """Close the connection, and with it any transaction still open on it."""
        self._driver_connection.close()

    def _note_large(self, parameters: Sequence[Any]) -> None:
        if any(isinstance(value, bytes | memoryview) and len(value) >= LARGE_VALUE for value in parameters):
            self._large = True
            if self._pooled is not None:  # a pool's connection (Tx.over): the pool closes it at check-in
                self._pooled.info["holds_large_value"] = True


def statements_of(source: Connection | Statements) -> Statements:
    """SOURCE's statements: a read's or the writer's as they are; a Core caller's connection (the CLI's, a
    test's) wrapped, in its own transaction, without importing SQLAlchemy."""
    return source if isinstance(source, Statements) else Tx.over(source)


def tx_of(target: Connection | Tx) -> Tx:
    """TARGET's Tx: the writer's as it is, a Core caller's connection wrapped (statements_of)."""
    return target if isinstance(target, Tx) else Tx.over(target)
