"""The hot write path's prepared statements (store/intake.py) against the schema the migrations make: the rows
a delivery leaves, its failure rolled back alone, its large values let go."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection

from jitaku.mail import delivery
from jitaku.mail.delivery import Copy, Delivery, Entry, ToList
from jitaku.store import Database, Tx, accounts, lists, mailstore, queue
from jitaku.store.accounts import AccountError
from jitaku.store.dialect import LARGE_VALUE
from jitaku.store.errors import StoreError
from jitaku.store.queue import Personal
from tests.postgres import database_url, sqlite_only

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

NOW = 1_700_000_000.5
TABLES = ("messages", "queue", "queue_recipients", "list_inbox")
ALICE, BOB, LIST = "alice@example.test", "bob@example.test", "sota@example.test"


def _database(path: Path) -> Database:
    database = Database(database_url(path.parent, path.name))
    with database.transaction() as connection:
        for address in (ALICE, BOB):
            accounts.add_user(connection, address, None)
        lists.create_list(connection, LIST, "SOTA", "[sota:%05d]", "list", "auto", "")
        # Both databases must hand out the same UIDVALIDITYs, which come from the clock
        connection.execute(text("UPDATE mailboxes SET uidvalidity = 1"))
    return database


def _rows(database: Database) -> dict[str, list[Any]]:
    def read(connection: Connection) -> dict[str, list[Any]]:
        return {table: list(connection.execute(text(f"SELECT * FROM {table} ORDER BY id"))) for table in TABLES}

    return database.read_now(read)


DELIVERIES = [
    Delivery(local=[Copy(ALICE, b"Return-Path: <x@remote.test>\r\n\r\none\r\n")]),
    Delivery(
        local=[Copy(ALICE, b"two\r\n"), Copy(BOB.upper(), b"two\r\n")],
        queued=[
            Entry(
                "Q1",
                "alice@example.test",
                ["carol@remote.test", "dave@remote.test"],
                b"signed\r\n",
                {"dave@remote.test": Personal("sota-bounces+dave=remote.test@example.test", b"List-Id: x\r\n")},
            )
        ],
        listed=[ToList(LIST, "post", LIST, "alice@example.test", b"post\r\n")],
    ),
    Delivery(listed=[ToList(LIST, "owner", "sota-owner@example.test", "bob@example.test", b"to the owner\r\n")]),
]


def test_a_delivery_leaves_its_copies_queue_entries_and_inbox_items_as_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(time, "time", lambda: NOW)
    database = _database(tmp_path / "jitaku.db")

    async def go() -> None:
        for copies in DELIVERIES:
            await database.transact(lambda tx, copies=copies: delivery.commit(tx, copies))  # type: ignore[misc]

    asyncio.run(go())
    # The CLI's Core transaction commits the same rows through Tx.over
    with database.transaction() as connection:
        delivery.commit(Tx.over(connection), DELIVERIES[0])
    found = _rows(database)
    first, second = b"Return-Path: <x@remote.test>\r\n\r\none\r\n", b"two\r\n"
    # id, mailbox_id, uid, flags, received_at, size, body, modseq: Alice's INBOX is 1, Bob's 7
    assert [tuple(row) for row in found["messages"]] == [
        (1, 1, 1, "", NOW, len(first), first, 2),
        (2, 1, 2, "", NOW, len(second), second, 3),
        (3, 7, 1, "", NOW, len(second), second, 2),
        (4, 1, 3, "", NOW, len(first), first, 4),
    ]
    # id, sender, created_at, next_attempt, attempts, last_error, body, post_id
    assert [tuple(row) for row in found["queue"]] == [("Q1", ALICE, NOW, NOW, 0, None, b"signed\r\n", None)]
    # id, queue_id, recipient, last_error, sender, prefix
    assert [tuple(row) for row in found["queue_recipients"]] == [
        (1, "Q1", "carol@remote.test", None, None, None),
        (2, "Q1", "dave@remote.test", None, "sota-bounces+dave=remote.test@example.test", b"List-Id: x\r\n"),
    ]
    # id, list_id, role, recipient, sender, received_at, note, attempts, next_try, body
    assert [tuple(row) for row in found["list_inbox"]] == [
        (1, 1, "post", LIST, ALICE, NOW, None, 0, 0.0, b"post\r\n"),
        (2, 1, "owner", "sota-owner@example.test", BOB, NOW, None, 0, 0.0, b"to the owner\r\n"),
    ]
    (entry,) = database.read_now(queue.list_queue)
    assert (entry.id, entry.recipients) == ("Q1", ("carol@remote.test", "dave@remote.test"))
    uids = database.read_now(lambda c: [m.uid for m in mailstore.list_messages(c, ALICE)])
    assert uids == [1, 2, 3]
    database.close()


def test_a_failing_delivery_rolls_back_alone_and_its_neighbours_are_committed(tmp_path: Path) -> None:
    database = _database(tmp_path / "j.db")
    to_a_deleted_list = Delivery(
        local=[Copy(ALICE, b"half\r\n")], listed=[ToList("gone@example.test", "post", "", "", b"")]
    )

    async def go() -> list[object]:
        jobs = [
            database.transact(lambda tx: delivery.commit(tx, Delivery(local=[Copy(ALICE, b"one\r\n")]))),
            database.transact(lambda tx: delivery.commit(tx, to_a_deleted_list)),
            database.transact(lambda tx: mailstore.append(tx, ALICE, b"two\r\n")),
            database.transact(lambda tx: delivery.commit(tx, Delivery(local=[Copy("nobody@example.test", b"x")]))),
        ]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(go())
    assert isinstance(results[1], AccountError) and isinstance(results[3], mailstore.NoSuchMailbox)
    bodies = [m.body for m in database.read_now(lambda c: mailstore.list_messages(c, ALICE))]
    assert bodies == [b"one\r\n", b"two\r\n"]
    database.close()


@sqlite_only("it keeps the values bound to its cached statements; a server's connection does not")
def test_the_writers_connection_is_dropped_after_it_bound_a_large_message(tmp_path: Path) -> None:
    """Issue 15: SQLite keeps the last values bound to each cached statement while its connection lives."""
    database = _database(tmp_path / "j.db")

    def kept_after(body: bytes) -> bool:
        """Whether the writer's connection that delivered BODY delivered the one before it: a TEMP table is the
        connection's alone, and goes with it."""

        def job(tx: Tx) -> bool:
            delivery.commit(tx, Delivery(local=[Copy(ALICE, body)]))
            kept = bool(tx.run("SELECT count(*) FROM sqlite_temp_master WHERE name = 'seen'")[0][0])
            tx.run("CREATE TEMP TABLE IF NOT EXISTS seen (n INTEGER)")
            return kept

        return asyncio.run(database.transact(job))

    kept_after(b"small\r\n")
    assert kept_after(b"small again\r\n")
    assert kept_after(b"x" * LARGE_VALUE)
    assert not kept_after(b"after\r\n")
    database.close()


def test_a_failure_of_a_prepared_statement_is_the_store_error_with_its_values_hidden(
    tmp_path: Path,
) -> None:
    """Callers tell a store failure (a full disk) from a bug by the store's error class, whichever way the
    statement went; its values hold message bodies, which must not reach the log line that reports it."""
    database = _database(tmp_path / "jitaku.db")

    def broken(tx: Tx) -> None:
        tx.run("INSERT INTO no_such_table VALUES (?)", ["a message body"])

    with pytest.raises(StoreError) as raised:
        asyncio.run(database.transact(broken))
    said = str(raised.value)
    assert "no_such_table" in said and ("no such table" in said or "does not exist" in said)
    assert "a message body" not in said
    database.close()
