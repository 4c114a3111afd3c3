"""The handle every part of jitaku holds: reads inline or in worker threads, writes through the batched writer.

The daemon's reads and writes are prepared SQL on DB-API connections (store/driver.py). SQLAlchemy's engine,
for the CLI's synchronous Core transactions and for migrations, is made only when first asked for
(store/engine.py), so that a daemon whose schema is current never imports it. A CLI read's failure reaches the
CLI as the store's own error (store/errors.py), as a prepared statement's does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from jitaku.errors import SchemaSkew
from jitaku.store.driver import driver_for
from jitaku.store.errors import as_store_error
from jitaku.store.reader import Query, Reader
from jitaku.store.revision import SCHEMA_REVISION, in_recovery, stored_revision
from jitaku.store.transaction import Tx
from jitaku.store.writer import Writer

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.engine import Connection

T = TypeVar("T")


class Database:
    def __init__(self, url: str, read_only: bool = False) -> None:
        """Open the database at URL, bringing its schema to the newest revision first if it is older. A standby's
        database is its primary's, read-only: only the primary's jitaku migrates it, and the standby's must match.
        READ_ONLY: no transaction writes (jitaku.store.driver)."""
        self._driver = driver_for(url, read_only)
        self._engine: Engine | None = None
        self._writer: Writer | None = None
        self._reader = Reader(self._driver)
        self._inline_reads = self._driver.dialect.name == "sqlite"
        stored = self.query_now(stored_revision)
        if stored != SCHEMA_REVISION:
            if read_only:
                self._reader.close()
                raise SchemaSkew(
                    f"this database is at schema revision {stored}, this jitaku's is {SCHEMA_REVISION}, and it is "
                    "opened read-only (a fenced box's): it is migrated only by a jitaku that may write to it"
                )
            if self.query_now(in_recovery):
                self._reader.close()
                raise SchemaSkew(
                    f"this standby's database is at schema revision {stored}, this jitaku's is {SCHEMA_REVISION}: "
                    "upgrade the primary first; keep the same jitaku version on both"
                )
            from jitaku.store.engine import migrate

            migrate(self.engine)

    @property
    def engine(self) -> Engine:
        """SQLAlchemy's engine, made when first asked for: for the CLI and migrations."""
        if self._engine is None:
            from jitaku.store.engine import open_engine

            self._engine = open_engine(self._driver)
        return self._engine

    def read_now(self, query: Callable[[Connection], T]) -> T:
        """A read-only QUERY on a Core connection, for the CLI."""
        with self._store_errors(), self.engine.connect() as connection:
            return query(connection)

    async def query(self, query: Query[T], snapshot: bool = True) -> T:
        """Run QUERY, a read of prepared statements (store/reader.py). On SQLite it runs inline, on the one
        connection kept for the event loop: point reads in WAL mode never wait for the writer and take tens of
        microseconds, less than a hop to a thread; a database server gets the thread. For what IMAP reads with
        every command. A QUERY of one statement needs no SNAPSHOT around it: it spares a BEGIN and a COMMIT."""
        if self._inline_reads:
            return self._reader.read_kept(query, snapshot)
        return await asyncio.to_thread(self._reader.read_pooled, query)

    def query_now(self, query: Query[T]) -> T:
        """QUERY in this thread, on a connection of its own: for a worker thread, or a read too large to make
        the event loop wait for."""
        return self._reader.read_pooled(query)

    async def transact(self, job: Callable[[Tx], T], durable: bool = True) -> T:
        """Run JOB in a transaction of the batched writer, with prepared statements on the DB-API (`tx.run`:
        store/transaction.py); return once it is committed. Only what a power cut may take back (an IMAP flag
        change) is not DURABLE: store/writer.py."""
        if self._writer is None:
            self._writer = Writer(self._driver)
        return await self._writer.run(job, durable)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A synchronous write transaction, for the CLI."""
        with self.engine.connect().execution_options(immediate=True) as connection:
            with connection.begin():
                yield connection

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader.close()
        if self._engine is not None:
            self._engine.dispose()

    @contextmanager
    def _store_errors(self) -> Iterator[None]:
        try:
            yield
        except Exception as error:
            converted = as_store_error(error)
            if converted is error:
                raise
            raise converted from error
