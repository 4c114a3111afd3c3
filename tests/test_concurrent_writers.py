"""Several writers on one database at once: the SMTP and IMAP workers each have a writer of their own, and during a
switchover two daemons may both run a list runner. On SQLite one writer at a time holds the lock; on PostgreSQL
(READ COMMITTED) two transactions run together, and what one reads and then writes, the other may have changed.
Each test runs two threads, each with a Database of its own (its own connections and writer), on the same
mailbox or list inbox."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from jitaku.store import Database, Tx, accounts, mailstore
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

ALICE = "alice@example.test"
T = TypeVar("T")


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A store with one user, alice@example.test, that the tests open twice."""
    url = database_url(tmp_path)
    database = Database(url)
    with database.transaction() as connection:
        accounts.add_user(connection, ALICE, None)
    database.close()
    yield url


def together(url: str, work: Callable[[Database, threading.Barrier], T], threads: int = 2) -> list[T]:
    """WORK run in THREADS threads at once, each with a Database of its own on URL; what each returned. The
    barrier lets the threads line up before each step they are to take together."""
    barrier = threading.Barrier(threads, timeout=60)
    results: list[T | None] = [None] * threads
    errors: list[BaseException] = []

    def run(index: int) -> None:
        database = Database(url)
        try:
            results[index] = work(database, barrier)
        except BaseException as error:
            barrier.abort()
            errors.append(error)
        finally:
            database.close()

    started = [threading.Thread(target=run, args=(index,)) for index in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    if errors:
        raise errors[0]
    return [result for result in results if result is not None]


def writes(database: Database, jobs: list[Callable[[Tx], T]]) -> list[T]:
    """JOBS through DATABASE's writer, all handed to it at once (so that it batches them, as the daemon's
    sessions do)."""

    async def run() -> list[T]:
        return list(await asyncio.gather(*(database.transact(job) for job in jobs)))

    return asyncio.run(run())


def test_two_writers_delivering_to_one_mailbox_never_give_one_uid_twice(url: str) -> None:
    def deliver(database: Database, barrier: threading.Barrier) -> list[int]:
        uids = []
        for round_ in range(20):
            barrier.wait()
            jobs = [partial(mailstore.append, address=ALICE, body=f"{round_}.{n}".encode()) for n in range(10)]
            uids += writes(database, jobs)
        return uids

    first, second = together(url, deliver)

    assert len(first) == len(second) == 200
    assert sorted(first + second) == list(range(1, 401))  # each UID once, none skipped
    database = Database(url)
    try:
        listed = database.read_now(lambda c: mailstore.select(c, ALICE, "INBOX"))
        assert listed.uids == list(range(1, 401))
        assert listed.uidnext == 401
    finally:
        database.close()


def test_two_sessions_selecting_at_once_never_both_see_a_message_as_recent(url: str) -> None:
    """RFC 3501 §2.3.2: a message is \\Recent in one session only. Two IMAP workers' sessions select the mailbox
    as each new message arrives; each claims what is still \\Recent, and no message may be claimed by both."""

    def select_as_mail_comes(database: Database, barrier: threading.Barrier) -> list[range]:
        claimed = []
        for round_ in range(60):
            if barrier.wait() == 0:
                with database.transaction() as connection:
                    mailstore.append(connection, ALICE, f"message {round_}".encode())
            barrier.wait()
            before = database.read_now(lambda c: mailstore.state(c, ALICE, "INBOX"))[0]
            barrier.wait()
            (start,) = writes(database, [partial(mailstore.claim_recent, address=ALICE, name="INBOX", before=before)])
            claimed.append(range(start, before))
        return claimed

    first, second = together(url, select_as_mail_comes)

    seen_first = [uid for claimed in first for uid in claimed]
    seen_second = [uid for claimed in second for uid in claimed]
    assert not set(seen_first) & set(seen_second)
    assert sorted(seen_first + seen_second) == list(range(1, 61))  # each \\Recent to one session
