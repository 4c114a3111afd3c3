"""The handle every part of jitaku holds: reads in worker threads, writes through the batched writer."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy.engine import Connection

from jitaku.store.engine import open_engine
from jitaku.store.reader import Query, Reader
from jitaku.store.transaction import Tx
from jitaku.store.writer import Writer

T = TypeVar("T")
DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full


def out_of_space(error: BaseException) -> bool:
    """Whether ERROR, raised by a read or write, says the disk (or the database) is full: a client is told
    so, rather than of a fault of ours."""
    cause = getattr(error, "orig", error)
    if isinstance(cause, sqlite3.Error):
        return cause.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL  # the primary code under an extended one
    return getattr(cause, "sqlstate", None) == DISK_FULL or getattr(cause, "pgcode", None) == DISK_FULL


class Database:
    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        self._writer: Writer | None = None
        self._reader = Reader(self.engine)
        self._inline_reads = self.engine.dialect.name == "sqlite"

    async def read(self, query: Callable[[Connection], T]) -> T:
        """Run a read-only QUERY. SQLite point reads in WAL mode never wait for the writer and
        take tens of microseconds, less than a hop to a thread; a database server gets the thread."""
        if self._inline_reads:
            return self.read_now(query)
        return await asyncio.to_thread(self.read_now, query)

    def read_now(self, query: Callable[[Connection], T]) -> T:
        with self.engine.connect() as connection:
            return query(connection)

    async def query(self, query: Query[T], snapshot: bool = True) -> T:
        """Run QUERY, a read of prepared statements (store/reader.py): inline on SQLite, as `read` does,
        on the one connection kept for the event loop. For what IMAP reads with every command. A QUERY of one
        statement needs no SNAPSHOT around it: it spares a BEGIN and a COMMIT."""
        if self._inline_reads:
            return self._reader.read_kept(query, snapshot)
        return await asyncio.to_thread(self._reader.read_pooled, query)

    def query_now(self, query: Query[T]) -> T:
        """QUERY in this thread, on a pooled connection: for a worker thread, or a read too large to make
        the event loop wait for."""
        return self._reader.read_pooled(query)

    async def write(self, change: Callable[[Connection], T]) -> T:
        """Run CHANGE in a transaction; return once it is committed."""
        return await self.transact(lambda tx: change(tx.connection))

    async def transact(self, job: Callable[[Tx], T]) -> T:
        """Run JOB in a transaction, with prepared statements on the DB-API (`tx.run`) and Core ones
        (`tx.connection`) alike; return once it is committed. For the writes every message makes."""
        if self._writer is None:
            self._writer = Writer(self.engine)
        return await self._writer.run(job)

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
        self.engine.dispose()
