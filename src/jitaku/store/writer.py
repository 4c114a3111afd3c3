"""One thread that performs every write, committing whatever is waiting as one transaction.

Group commit: with synchronous=FULL each commit costs an fsync, so twenty SMTP
sessions finishing DATA together share one. Each job runs in its own SAVEPOINT,
so a job that fails rolls back alone; every caller is answered only after the
COMMIT returned, so that SMTP says 250 only for what is on disk.

A job may say it need not reach the disk (`durable=False`): an IMAP client's flag change, expunge or claim
of \\Recent, which Dovecot does not fsync either (its mail_fsync=optimized). A batch of such jobs alone
commits without the fsync, which was half the time a busy client waited for STORE (issue 20); it is
committed all the same, so the next read sees it and a crash of jitaku loses nothing, and the next durable
commit takes it to the disk with its own. Any durable job in the batch makes the whole commit durable. On
PostgreSQL every commit is durable (and on the synchronous standby): dialect.POSTGRESQL's `unsynced` says why.

Such a light job does not wait for the thread at all when the writer is idle and the database is a file
(SQLite): it runs at once, on the event loop, on the writer's connection, in a transaction of its own. Without
the fsync that is tens of microseconds, less than the hand-off: each statement of the writer's thread gave the
GIL up and took it back from the busy event loop, and ten IMAP clients' STOREs waited twice as long for those
hand-offs as for their work, with a quarter of the daemon's CPU spent in them (issue 20). It never waits
there: another process's write lock sends it to the thread, and so does the writer's own batch under way; and
it never checkpoints (the fsyncs of copying the log into the database): the thread's next batch does.

On a database server several processes write at once (the SMTP and IMAP workers each have a writer), and two
batches that lock the same mailboxes in another order can deadlock: the server undoes one statement of one of
them. The job it belonged to is rolled back to its SAVEPOINT, as any failed job is, and runs again in the next
batch, once the other transaction has committed (a few times at most): its caller hears of it only if it
conflicts every time, as the store's error, which SMTP answers with a 451.

A job is handed a Tx (store/transaction.py): prepared statements on the one DB-API connection the writer
keeps, on which the transaction and its SAVEPOINTs are begun and ended too. Through SQLAlchemy, a pool
check-out, BEGIN and COMMIT cost ten times SQLite's own work, and a SAVEPOINT pair more than the message it
wrapped. A statement the database failed raises the store's own error (store/errors.py), which reaches the
job's caller as it is.
"""

from __future__ import annotations

import asyncio
import queue
import signal
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from jitaku import log
from jitaku.store.driver import Driver
from jitaku.store.errors import StoreError, conflicted
from jitaku.store.transaction import Tx

T = TypeVar("T")
# a job, its caller's future and event loop, whether it is durable, and the times it ran into another
# transaction (errors.conflicted) before
Job = tuple[Callable[[Tx], Any], asyncio.Future[Any], asyncio.AbstractEventLoop, bool, int]
Answer = tuple[asyncio.Future[Any], Any, BaseException | None]  # a job's future, and its result or its error

MAX_BATCH = 256
# Light jobs run at once one after the other before the next goes to the thread, whose batch checkpoints the
# log if it grew past SQLite's mark: only a thread's commit does, so a day of flag changes alone must not
# grow the log without end
AT_ONCE_RUN = 256
CONFLICT_TRIES = 5  # runs of a job that conflicted with another process's transaction before its caller hears


class Writer:
    def __init__(self, driver: Driver) -> None:
        self._driver = driver
        self._tx: Tx | None = None  # on the writer's connection, made when first needed
        self._synced = True  # what the connection's commits do now (a new one's: store/driver.py)
        self._at_once = False  # the connection is set for jobs run at once (Dialect.at_once), not for batches
        self._at_once_run = 0  # light jobs run at once since the thread's last batch
        self._idle = threading.Lock()  # held by whoever uses the connection: the thread, or a job at once
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="jitaku-writer", daemon=True)
        self._thread.start()

    async def run(self, job: Callable[[Tx], T], durable: bool = True) -> T:
        """Run JOB in a transaction; return once it is committed (and, if DURABLE, on disk)."""
        if not durable and self._driver.dialect.at_once and self._at_once_run < AT_ONCE_RUN:
            if self._idle.acquire(blocking=False):
                try:
                    return self._run_at_once(job)
                except _Busy:
                    pass
                finally:
                    self._idle.release()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((job, future, loop, durable, 0))
        return await future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        # Ctrl-C, SIGTERM and SIGHUP go to the main thread, where Python runs their handlers: taken by this thread,
        # they left the main thread blocked where it waited (a command at its yes/no question kept running).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
        # The batch is a local of _next_batch and _commit alone: held here, the last batch's jobs (and the
        # messages they store) would stay in memory until the next write.
        while (batch := self._next_batch()) is not None:
            with self._idle:
                answers = self._commit(batch)
            # once the connection is free: a caller woken by its answer finds the writer idle (or not
            # idle only because of a newer batch), and its next light job runs at once
            for loop, answered in answers.items():
                loop.call_soon_threadsafe(_settle, answered)
            del batch, answers
        self._close()

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

    def _commit(self, batch: list[Job]) -> dict[asyncio.AbstractEventLoop, list[Answer]]:
        """BATCH, committed; each job's answer, by the event loop its caller waits in."""
        outcomes: list[tuple[Any, BaseException | None]] = []
        failed = False
        try:
            tx = self._connection(at_once=False)
            self._at_once_run = 0
            synced = any(durable for _job, _future, _loop, durable, _tries in batch)
            if synced != self._synced:
                tx.execute(tx.dialect.synced if synced else tx.dialect.unsynced)
                self._synced = synced
            tx.begin()
            for job, _future, _loop, _durable, _tries in batch:
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
            self._close()  # its transaction, if any, goes with it; so does a large value SQLite kept
        # one wake-up of each loop for the whole batch: call_soon_threadsafe writes to the loop's self-pipe,
        # a system call and a turn of the loop for each job
        settled: dict[asyncio.AbstractEventLoop, list[Answer]] = {}
        for (job, future, loop, durable, tries), (result, problem) in zip(batch, outcomes, strict=True):
            if problem is not None and conflicted(problem) and tries + 1 < CONFLICT_TRIES:
                log.event("store_conflict", tries=tries + 1, error=type(getattr(problem, "orig", problem)).__name__)
                self._jobs.put((job, future, loop, durable, tries + 1))  # after this batch's commit
                continue
            settled.setdefault(loop, []).append((future, result, problem))
        return settled

    def _run_at_once(self, job: Callable[[Tx], T]) -> T:
        """JOB, committed without an fsync, here and now; _Busy when it must go to the thread instead (another
        process holds the write lock). Its failure, or its commit's, is its caller's, as in a batch."""
        tx = self._connection(at_once=True)
        try:
            tx.begin()
        except StoreError:  # busy: the thread waits for the lock, and reports what else it may be
            raise _Busy from None
        try:
            result = job(tx)
            tx.commit()
        except Exception:
            try:
                tx.execute("ROLLBACK")
            except StoreError:  # the database ended the transaction itself, or the connection is broken
                self._close()
            raise
        self._at_once_run += 1
        if tx.holds_large_value:
            self._close()
        return result

    def _connection(self, at_once: bool) -> Tx:
        """The writer's connection, set for a job run AT_ONCE (Dialect.at_once) or for the thread's batches
        (Dialect.batched); one that cannot be opened (a full disk) is the store's error, as a statement's
        failure is."""
        if self._tx is None:
            try:
                connection = self._driver.connect()
            except self._driver.error as error:
                raise StoreError("(connecting)", error) from error
            self._tx = Tx(connection, self._driver.dialect, self._driver.error)
            self._synced, self._at_once = True, False
        tx = self._tx
        if at_once != self._at_once:
            for statement in tx.dialect.at_once if at_once else tx.dialect.batched:
                tx.execute(statement)
            self._at_once = at_once
            if at_once:  # Dialect.at_once's commits skip the fsync
                self._synced = False
        return tx

    def _close(self) -> None:
        if self._tx is not None:
            self._tx.close()
            self._tx = None


class _Busy(Exception):
    """Another process holds the database's write lock: a job to run at once goes to the thread, which waits."""


def _settle(answers: list[Answer]) -> None:
    for future, result, error in answers:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
