"""store/queue's reads and changes, as the queue worker, the health check, the status page and `jitaku queue`
make them: which messages are due and in what order, what each carries, how much waits, a flush, a delete."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitaku.store import Database, Tx, attempts, intake, queue
from jitaku.store.queue import Backlog, Personal
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

VERP = "sota-bounces+dave=remote.test@example.test"
OWN = Personal(VERP, b"List-Id: <sota.example.test>\r\n")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(tmp_path))

    def fill(tx: Tx) -> None:
        # queue id, due at, created at: due in the order C, A, D, B; E not yet
        for queue_id, due_at, created_at in [("A", 20.0, 2.0), ("B", 30.0, 1.0), ("C", 10.0, 3.0), ("D", 20.0, 4.0)]:
            intake.enqueue(tx, queue_id, "alice@example.test", ["carol@remote.test"], queue_id.encode(), created_at)
            tx.run("UPDATE queue SET next_attempt = ? WHERE id = ?", (due_at, queue_id))
        intake.enqueue(tx, "E", "", ["dave@remote.test", "erin@remote.test"], b"E", 0.0, {"dave@remote.test": OWN})
        tx.run("UPDATE queue SET next_attempt = 99.0 WHERE id = 'E'")

    asyncio.run(database.transact(fill))
    yield database
    database.close()


def due(database: Database, now: float, skip: set[str], limit: int) -> list[str]:
    return [message.id for message in asyncio.run(database.query(lambda s: queue.due(s, now, skip, limit)))]


def test_due_messages_come_soonest_first_leaving_out_those_under_way_up_to_the_limit(database: Database) -> None:
    assert due(database, 50.0, set(), 10) == ["C", "A", "D", "B"]
    assert due(database, 20.0, set(), 10) == ["C", "A", "D"]
    assert due(database, 50.0, set(), 2) == ["C", "A"]
    # the limit counts the messages handed out, not those skipped before them
    assert due(database, 50.0, {"C", "A"}, 1) == ["D"]
    assert due(database, 50.0, {"C", "D"}, 2) == ["A", "B"]
    assert due(database, 50.0, {"C", "A", "D", "B"}, 2) == []


def test_a_due_message_carries_its_recipients_and_personal_copies_but_not_its_body(database: Database) -> None:
    (message,) = asyncio.run(database.query(lambda s: queue.due(s, 100.0, {"A", "B", "C", "D"}, 5)))
    assert (message.id, message.sender, message.recipients) == ("E", "", ("dave@remote.test", "erin@remote.test"))
    assert message.personal == {"dave@remote.test": OWN}
    assert message.body == b""
    assert database.query_now(lambda s: queue.body_of(s, "E")) == b"E"
    assert database.query_now(lambda s: queue.body_of(s, "gone")) is None


def test_backlog_flush_and_remove_as_the_health_check_and_the_cli_see_them(database: Database) -> None:
    asyncio.run(database.transact(lambda tx: attempts.record(tx, "B", [], {"carol@remote.test": "451 later"}, 60.0)))
    assert database.query_now(queue.backlog) == Backlog(5, 0.0, None)  # E is the oldest
    with database.transaction() as connection:  # `jitaku queue delete E`, on the CLI's Core connection
        assert queue.remove(connection, "E")
        assert not queue.remove(connection, "E")
    assert database.query_now(queue.backlog) == Backlog(4, 1.0, "451 later")
    listed = database.query_now(queue.list_queue)
    assert [(m.id, m.recipients, m.attempts) for m in listed] == [
        ("C", ("carol@remote.test",), 0),
        ("A", ("carol@remote.test",), 0),
        ("D", ("carol@remote.test",), 0),
        ("B", ("carol@remote.test",), 1),
    ]
    assert asyncio.run(database.transact(lambda tx: queue.flush(tx, 5.0))) == 4
    assert due(database, 5.0, set(), 10) == ["B", "A", "C", "D"]  # all due now: the oldest first
    assert database.query_now(lambda s: s.run("SELECT count(*) FROM queue_recipients"))[0][0] == 4
