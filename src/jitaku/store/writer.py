"""One thread that performs every write, committing whatever is waiting as one transaction.

Group commit: with synchronous=FULL each commit costs an fsync, so twenty SMTP
sessions finishing DATA together share one. Each job runs in its own SAVEPOINT,
so a job that fails rolls back alone; every caller is answered only after the
COMMIT returned, so that SMTP says 250 only for what is on disk.

A job is handed a Tx (store/transaction.py): Core statements on its connection, prepared ones on the
DB-API connection under it. The transaction and its SAVEPOINTs are begun and ended on the DB-API too, on one
connection the writer keeps: through SQLAlchemy, a pool check-out, BEGIN and COMMIT cost ten times SQLite's
own work, and a SAVEPOINT pair more than the message it wrapped.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from jitaku.store.dialect import dialect_named
from jitaku.store.transaction import Tx

T = TypeVar("T")
Job = tuple[Callable[[Tx], Any], asyncio.Future[Any], asyncio.AbstractEventLoop]

MAX_BATCH = 256


class Writer:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._dialect = dialect_named(engine.dialect.name)
        self._tx: Tx | None = None  # on the writer's connection, made when first needed
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="jitaku-writer", daemon=True)
        self._thread.start()

    async def run(self, job: Callable[[Tx], T]) -> T:
        """Run JOB in a transaction; return once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((job, future, loop))
        return await future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        # The batch is a local of _next_batch and _commit alone: held here, the last batch's jobs (and the
        # messages they store) would stay in memory until the next write.
        while (batch := self._next_batch()) is not None:
            self._commit(batch)
            del batch
        if self._tx is not None:
            self._tx.connection.close()

    def _next_batch(self) -> list[Job] | None:
        first = self._jobs.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                more = self._jobs.get_nowait()
            except queue.Empty:
                break
            if more is None:
                self._jobs.put(None)
                break
            batch.append(more)
        return batch

    def _commit(self, batch: list[Job]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        connection: Connection | None = None
        try:
            if self._tx is None:
                self._tx = Tx(self._engine.connect(), self._dialect)
            tx = self._tx
            connection = tx.connection
            tx.begin()
            for job, _future, _loop in batch:
                tx.savepoint()
                try:
                    outcomes.append((job(tx), None))
                    tx.release()
                except Exception as error:  # the job's own failure, reported to its caller
                    try:
                        tx.roll_back()
                    except Exception:  # the database ended the whole transaction (SQLite does on a full disk)
                        raise error from None  # so none of the batch stands, and each caller hears why
                    outcomes.append((None, error))
            tx.commit()
        except Exception as failure:  # the COMMIT itself failed: nobody's work is durable
            outcomes = [(None, failure)] * len(batch)
            if connection is not None:
                connection.invalidate()  # its transaction, if any, goes with it
        if connection is not None and (connection.invalidated or "holds_large_value" in connection.info):
            connection.close()  # back to the pool, which closes one that bound a large value (store/engine.py)
            self._tx = None
        # one wake-up of each loop for the whole batch: call_soon_threadsafe writes to the loop's self-pipe,
        # a system call and a turn of the loop for each job
        settled: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for (_job, future, loop), (result, problem) in zip(batch, outcomes, strict=True):
            settled.setdefault(loop, []).append((future, result, problem))
        for loop, answers in settled.items():
            loop.call_soon_threadsafe(_settle, answers)


def _settle(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in answers:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
