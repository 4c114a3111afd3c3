"""store/reader.py: the reads IMAP makes with every command, on the DB-API connection the event loop keeps."""

from __future__ import annotations

import _sqlite3
import asyncio
import ctypes
from pathlib import Path

import pytest

from jitaku.store import Database, accounts, mailstore
from jitaku.store.errors import StoreError
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

ALICE = "alice@example.test"
MB = 1 << 20


def _database(tmp_path: Path) -> Database:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, ALICE, None)
    return database


def test_each_read_sees_what_was_committed_before_it(tmp_path: Path) -> None:
    """A read that left its snapshot open would show a session the mailbox as it was at its first look."""
    database = _database(tmp_path)

    async def go() -> list[int]:
        seen = []
        for body in (b"one", b"two", b"three"):
            await database.transact(lambda tx, body=body: mailstore.append(tx, ALICE, body))  # type: ignore[misc]
            selected = await database.query(lambda s: mailstore.select(s, ALICE, "INBOX"))
            seen.append(len(selected.uids))
        return seen

    assert asyncio.run(go()) == [1, 2, 3]
    database.close()


def test_a_failed_read_is_the_stores_error_and_the_next_read_works(tmp_path: Path) -> None:
    """IMAP answers a store's failure (the store's error class) with NO; anything else would be a traceback
    and a dropped connection. The connection that failed is not used again."""
    database = _database(tmp_path)

    async def go() -> int:
        with pytest.raises(StoreError):
            await database.query(lambda s: s.run("SELECT uid FROM no_such_table"))
        with pytest.raises(mailstore.NoSuchMailbox):
            await database.query(lambda s: mailstore.select(s, ALICE, "Nowhere"))
        return (await database.query(lambda s: mailstore.select(s, ALICE, "INBOX"))).uidnext

    assert asyncio.run(go()) == 1
    database.close()


def test_a_large_message_read_inline_leaves_no_copy_in_sqlite(tmp_path: Path) -> None:
    """Issue 15: a connection kept for good must not keep the last large value it saw (22 MB each)."""
    memory_used = ctypes.CDLL(_sqlite3.__file__).sqlite3_memory_used
    memory_used.restype = ctypes.c_int64
    database = _database(tmp_path)
    body = b"x" * (20 * MB)
    asyncio.run(database.transact(lambda tx: mailstore.append(tx, ALICE, body)))
    before = memory_used()  # of every SQLite connection in this process

    async def read() -> int:
        found = await database.query(lambda s: mailstore.fetch_messages(s, ALICE, "INBOX", [1], bodies=True))
        return len(found[0].body)

    assert asyncio.run(read()) == len(body)
    assert memory_used() - before < 8 * MB  # its page cache, 2 MB
    database.close()


def test_a_mailboxs_state_moves_on_with_each_change_a_session_must_hear_of(tmp_path: Path) -> None:
    """A session compares the state alone after each command, and reads the changes only when it moved."""
    database = _database(tmp_path)

    def state() -> tuple[int, int]:
        return database.query_now(lambda s: mailstore.state(s, ALICE, "INBOX"))

    seen = [state()]
    with database.transaction() as connection:
        mailstore.append(connection, ALICE, b"Subject: one\r\n\r\n")
    seen.append(state())
    with database.transaction() as connection:
        mailstore.store_flags(connection, ALICE, "INBOX", [1], ["\\Deleted"], "add")
    seen.append(state())
    with database.transaction() as connection:
        mailstore.expunge(connection, ALICE, "INBOX")
    seen.append(state())
    assert len(set(seen)) == 4 and state() == seen[-1]
    database.close()


def test_lists_names_are_the_mailboxes_in_statuss_order(tmp_path: Path) -> None:
    database = _database(tmp_path)
    with database.transaction() as connection:
        for name in ("Work", "Archive/2024", "A"):
            mailstore.create_mailbox(connection, ALICE, name)
    boxes = database.query_now(lambda s: mailstore.mailboxes(s, ALICE))
    folders = database.query_now(lambda s: mailstore.folders(s, ALICE))
    assert folders == [(box.name, box.special_use) for box in boxes] and folders[0].name == "INBOX"
    database.close()
