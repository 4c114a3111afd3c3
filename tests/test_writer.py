"""The writer's commits (store/writer.py): a batch reaches the disk unless every job in it said it need not,
as an IMAP flag change says; either way each job's caller hears only once its work is committed."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path

import pytest

from jitaku.store import Database, Tx
from jitaku.store.errors import StoreError

FULL, NORMAL = 2, 1  # SQLite's PRAGMA synchronous


def synchronous(tx: Tx) -> int:
    return int(tx.run("PRAGMA synchronous")[0][0])


def test_a_commit_fsyncs_unless_every_job_in_its_batch_need_not(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'jitaku.db'}")
    held = threading.Event()

    def hold(tx: Tx) -> int:
        held.wait(10)  # the jobs sent meanwhile wait, and are then committed together
        return synchronous(tx)

    async def go() -> list[int]:
        alone_light = await database.transact(synchronous, durable=False)
        alone_durable = await database.transact(synchronous)
        first = asyncio.ensure_future(database.transact(hold, durable=False))
        await asyncio.sleep(0.05)
        batched = [
            asyncio.ensure_future(database.transact(synchronous, durable=False)),
            asyncio.ensure_future(database.transact(synchronous)),
        ]
        await asyncio.sleep(0.05)
        held.set()
        return [alone_light, alone_durable, await first, *await asyncio.gather(*batched)]

    try:
        assert asyncio.run(go()) == [NORMAL, FULL, NORMAL, FULL, FULL]
    finally:
        database.close()


def test_what_a_light_commit_wrote_is_read_at_once_and_kept(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jitaku.db'}"
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
    """What a full disk or a lost directory looks like to a caller: a StoreError, which IMAP and SMTP
    answer as a failure of the store, not a fault of ours."""
    (tmp_path / "gone").mkdir()
    database = Database(f"sqlite:///{tmp_path / 'gone' / 'jitaku.db'}")
    shutil.rmtree(tmp_path / "gone")
    try:
        with pytest.raises(StoreError):
            asyncio.run(database.transact(lambda tx: tx.run("SELECT 1")))
    finally:
        database.close()
