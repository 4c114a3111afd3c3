"""One thread that performs every write, committing whatever is waiting as one transaction.

Group commit: with synchronous=FULL each commit costs an fsync, so twenty SMTP
sessions finishing DATA together share one. Each job runs in its own SAVEPOINT,
so a job that fails rolls back alone; every caller is answered only after the
COMMIT returned, so that SMTP says 250 only for what is on disk.

A job may say it need not reach the disk (`durable=False`): an IMAP client's flag change, expunge or claim
of \\Recent, which Dovecot does not fsync either (its mail_fsync=optimized). A batch of such jobs alone
commits without the fsync, which was half the time a busy client waited for STORE (issue 20); it is
committed all the same, so the next read sees it and a crash of jitaku loses nothing, and the next durable
commit takes it to the disk with its own. Any durable job in the batch makes the whole commit durable.

A job is handed a Tx (store/transaction.py): prepared statements on the one DB-API connection the writer
keeps, on which the transaction and its SAVEPOINTs are begun and ended too. Through SQLAlchemy, a pool
check-out, BEGIN and COMMIT cost ten times SQLite's own work, and a SAVEPOINT pair more than the message it
wrapped. A statement the database failed raises the store's own error (store/errors.py), which reaches the
job's caller as it is.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from jitaku.store.driver import Driver
from jitaku.store.errors import StoreError
from jitaku.store.transaction import Tx

T = TypeVar("T")
Job = tuple[Callable[[Tx], Any], asyncio.Future[Any], asyncio.AbstractEventLoop, bool]

MAX_BATCH = 256


class Writer:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._tx: Tx | None = None  # on the writer's connection, made when first needed
        self._synced = True  # what the connection's commits do now (a new one's: store/driver.py)
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="jitaku-writer", daemon=True)
        self._thread.start()

    async def run(self, job: Callable[[Tx], T], durable: bool = True) -> T:
        """Run JOB in a transaction; return once it is committed (and, if DURABLE, on disk)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((job, future, loop, durable))
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
            self._tx.close()

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
        failed = False
        try:
            if self._tx is None:
                self._tx = self._open()
                self._synced = True
            tx = self._tx
            synced = any(durable for _job, _future, _loop, durable in batch)
            if synced != self._synced:
                tx.execute(tx.dialect.synced if synced else tx.dialect.unsynced)
                self._synced = synced
            tx.begin()
            for job, _future, _loop, _durable in batch:
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
            failed = True
        if self._tx is not None and (failed or self._tx.holds_large_value):
            self._tx.close()  # its transaction, if any, goes with it; so does a large value SQLite kept
            self._tx = None
        # one wake-up of each loop for the whole batch: call_soon_threadsafe writes to the loop's self-pipe,
        # a system call and a turn of the loop for each job
        settled: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        for (_job, future, loop, _durable), (result, problem) in zip(batch, outcomes, strict=True):
            settled.setdefault(loop, []).append((future, result, problem))
        for loop, answers in settled.items():
            loop.call_soon_threadsafe(_settle, answers)

    def _open(self) -> Tx:
        """The writer's connection; one that cannot be opened (a full disk) is the store's error, as a
        statement's failure is."""
        try:
            connection = self._driver.connect()
        except self._driver.error as error:
            raise StoreError("(connecting)", error) from error
        return Tx(connection, self._driver.dialect, self._driver.error)


def _settle(answers: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, result, error in answers:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
