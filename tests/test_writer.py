"""The writer's commits (store/writer.py): a batch reaches the disk unless every job in it said it need not,
as an IMAP flag change says; either way each job's caller hears only once its work is committed."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from jitaku.store import Database, Tx
from jitaku.store.errors import StoreError
from jitaku.store.writer import AT_ONCE_RUN
from tests.postgres import database_url, on_postgresql, server, sqlite_only

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

FULL, NORMAL = 2, 1  # SQLite's PRAGMA synchronous; PostgreSQL's synchronous_commit on and off


def synchronous(tx: Tx) -> int:
    """Whether the job's commit waits for the disk (FULL) or not (NORMAL)."""
    if tx.dialect.name == "postgresql":
        return FULL if tx.run("SHOW synchronous_commit")[0][0] == "on" else NORMAL
    return int(tx.run("PRAGMA synchronous")[0][0])


def test_a_commit_fsyncs_unless_every_job_in_its_batch_need_not(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))

    async def go() -> list[int]:
        alone_light = await database.transact(synchronous, durable=False)
        alone_durable = await database.transact(synchronous)
        mixed = await batched(database, [False, True])
        light = await batched(database, [False, False])
        return [alone_light, alone_durable, *mixed, *light]

    try:
        if on_postgresql():  # every commit waits, for the standby too: a pair loses no acknowledged flag (issue 24)
            assert asyncio.run(go()) == [FULL] * 6
        else:
            assert asyncio.run(go()) == [NORMAL, FULL, FULL, FULL, NORMAL, NORMAL]
    finally:
        database.close()


async def batched(database: Database, durable: list[bool]) -> list[int]:
    """What `synchronous` said in jobs (durable or not, as DURABLE says) committed as one batch: sent while
    the writer's thread holds a job of its own."""
    held = threading.Event()

    def hold(tx: Tx) -> None:
        held.wait(10)

    first = asyncio.ensure_future(database.transact(hold))
    await asyncio.sleep(0.05)
    jobs = [asyncio.ensure_future(database.transact(synchronous, durable=each)) for each in durable]
    await asyncio.sleep(0.05)
    held.set()
    await first
    return list(await asyncio.gather(*jobs))


def where(tx: Tx) -> tuple[str, int]:
    """Which thread ran a job, and whether its commit could checkpoint the log (SQLite's autocheckpoint)."""
    return threading.current_thread().name, int(tx.run("PRAGMA wal_autocheckpoint")[0][0])


@sqlite_only("a database server's light jobs wait for the writer's thread (Dialect.at_once)")
def test_a_light_job_runs_at_once_on_the_event_loop_when_the_writer_is_idle(tmp_path: Path) -> None:
    """The STOREs of ten IMAP clients waited twice as long for hand-offs to the writer's thread as for their
    work (issue 20): light jobs skip it when it has nothing to do, and never checkpoint there, since a
    checkpoint's fsyncs would hold the event loop."""
    database = Database(database_url(tmp_path))

    async def go() -> list[tuple[str, int]]:
        light = await database.transact(where, durable=False)
        durable = await database.transact(where)
        light_again = await database.transact(where, durable=False)
        return [light, durable, light_again]

    loop_thread = threading.current_thread().name
    try:
        assert asyncio.run(go()) == [(loop_thread, 0), ("jitaku-writer", 1000), (loop_thread, 0)]
    finally:
        database.close()


@sqlite_only("another process's write lock on the file")
def test_a_light_job_waits_in_the_writers_thread_while_another_process_writes(tmp_path: Path) -> None:
    """Another process's write lock (an SMTP worker's, the CLI's) must not hold the event loop: the job goes
    to the thread, which waits for the lock and commits once it is free."""
    path = tmp_path / "jitaku.db"
    database = Database(f"sqlite:///{path}")
    other = sqlite3.connect(path, isolation_level=None)

    async def go() -> tuple[tuple[str, int], int]:
        await database.transact(lambda tx: tx.run("CREATE TABLE marks (n INTEGER)"))
        other.execute("BEGIN IMMEDIATE")
        job = asyncio.ensure_future(database.transact(where, durable=False))
        turns = 0
        while not job.done() and turns < 20:  # the event loop goes on meanwhile
            await asyncio.sleep(0.01)
            turns += 1
        other.execute("COMMIT")
        return await job, turns

    try:
        (thread, _), turns = asyncio.run(go())
        assert thread == "jitaku-writer"
        assert turns == 20
    finally:
        other.close()
        database.close()


@sqlite_only("jobs run at once and checkpoints of its log")
def test_after_a_run_of_light_jobs_the_writers_thread_commits_one_and_checkpoints(tmp_path: Path) -> None:
    """Only the thread's commits checkpoint the log: a day of flag changes alone must not grow it for ever."""
    database = Database(database_url(tmp_path))

    async def go() -> list[tuple[str, int]]:
        return [await database.transact(where, durable=False) for _ in range(AT_ONCE_RUN + 2)]

    loop_thread = threading.current_thread().name
    try:
        ran = asyncio.run(go())
        assert ran[:AT_ONCE_RUN] == [(loop_thread, 0)] * AT_ONCE_RUN
        assert ran[AT_ONCE_RUN:] == [("jitaku-writer", 1000), (loop_thread, 0)]
    finally:
        database.close()


def test_a_light_job_that_fails_is_undone_and_the_next_one_runs(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))

    def half(tx: Tx) -> None:
        tx.run("INSERT INTO marks VALUES (1)")
        raise LookupError("no such mailbox")

    async def go() -> list[tuple[int]]:
        await database.transact(lambda tx: tx.run("CREATE TABLE marks (n INTEGER)"))
        with pytest.raises(LookupError):
            await database.transact(half, durable=False)
        await database.transact(lambda tx: tx.run("INSERT INTO marks VALUES (2)"), durable=False)
        return await database.query(lambda s: s.run("SELECT n FROM marks"))

    try:
        assert asyncio.run(go()) == [(2,)]
    finally:
        database.close()


def test_what_a_light_commit_wrote_is_read_at_once_and_kept(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    database = Database(url)

    async def go() -> None:
        await database.transact(lambda tx: tx.run("CREATE TABLE marks (n INTEGER)"))
        await database.transact(lambda tx: tx.run("INSERT INTO marks VALUES (7)"), durable=False)

    asyncio.run(go())
    assert database.query_now(lambda s: s.run("SELECT n FROM marks")) == [(7,)]
    database.close()
    reopened = Database(url)
    assert reopened.query_now(lambda s: s.run("SELECT n FROM marks")) == [(7,)]
    reopened.close()


def test_a_writer_that_cannot_open_its_database_says_so_as_the_stores_error(tmp_path: Path) -> None:
    """What a full disk, a lost directory or a lost server looks like to a caller: a StoreError, which IMAP and
    SMTP answer as a failure of the store, not a fault of ours."""
    if on_postgresql():
        url = database_url(tmp_path)
        database = Database(url)
        server().drop(url)
    else:
        (tmp_path / "gone").mkdir()
        database = Database(f"sqlite:///{tmp_path / 'gone' / 'jitaku.db'}")
        shutil.rmtree(tmp_path / "gone")
    try:
        with pytest.raises(StoreError):
            asyncio.run(database.transact(lambda tx: tx.run("SELECT 1")))
    finally:
        database.close()


@pytest.mark.skipif(not on_postgresql(), reason="SQLite lets one transaction write at a time: none can deadlock")
def test_two_processes_writers_that_deadlock_each_commit_their_job(tmp_path: Path) -> None:
    """Two SMTP workers' batches delivering to the same two mailboxes in turn: the server undoes one of them,
    whose job runs again once the other committed, and both callers hear it is done (an SMTP client its 250)."""
    url = database_url(tmp_path)
    one, other = Database(url), Database(url)
    locked = {1: threading.Event(), 2: threading.Event()}

    def first_then(mine: int, theirs: int) -> Callable[[Tx], None]:
        def job(tx: Tx) -> None:
            tx.run("UPDATE marks SET v = v + 1 WHERE n = ?", (mine,))
            locked[mine].set()
            locked[theirs].wait(10)  # each holds its row and wants the other's: a deadlock the first time
            tx.run("UPDATE marks SET v = v + 1 WHERE n = ?", (theirs,))

        return job

    async def go() -> list[list[tuple[int, int]]]:
        await one.transact(lambda tx: tx.run("CREATE TABLE marks (n INTEGER PRIMARY KEY, v INTEGER)"))
        await one.transact(lambda tx: tx.run_many("INSERT INTO marks VALUES (?, 0)", [(1,), (2,)]))
        await asyncio.gather(one.transact(first_then(1, 2)), other.transact(first_then(2, 1)))
        return await one.query(lambda s: s.run("SELECT n, v FROM marks ORDER BY n"))

    try:
        assert asyncio.run(go()) == [(1, 2), (2, 2)]
    finally:
        one.close()
        other.close()
