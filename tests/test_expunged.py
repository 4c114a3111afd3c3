"""The record of expunged UIDs (store/mailstore.py, table `expunged`): a session selected on a mailbox learns
which of its messages another session, POP3 or a MOVE took away from the few rows recorded since it last
looked, not by reading every UID left (issue 20); and still exactly when the record does not reach back."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from jitaku.store import Database, accounts, mailstore
from jitaku.store.engine import migrations_config
from jitaku.store.mailstore import Changes, Selected
from jitaku.store.revision import SCHEMA_REVISION, stored_revision
from jitaku.store.statements import Statements
from tests.postgres import sqlite_only

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

ALICE = "alice@example.test"


class Recorded(Statements):
    """A read's statements that keep the text of each one run."""

    def __init__(self, inner: Statements) -> None:
        self.dialect = inner.dialect
        self.inner = inner
        self.ran: list[str] = []

    def run(self, statement: str, parameters: Sequence[Any] = ()) -> list[Any]:
        self.ran.append(statement)
        return self.inner.run(statement, parameters)


def fill(database: Database, count: int) -> None:
    with database.transaction() as connection:
        for number in range(count):
            mailstore.append(connection, ALICE, f"message {number}".encode())


def selected(database: Database, name: str = "INBOX") -> Selected:
    return database.read_now(lambda c: mailstore.select(c, ALICE, name))


def look(
    database: Database, before: Selected, name: str = "INBOX", known: list[int] | None = None
) -> tuple[Changes, bool]:
    """What a session that saw BEFORE (and since knows of KNOWN of its messages) learns now, and whether it
    read every UID left to learn it."""

    def read(statements: Statements) -> tuple[Changes | None, list[str]]:
        spy = Recorded(statements)
        since = (before.uidnext, before.highestmodseq)
        return mailstore.changes(spy, ALICE, name, since, before.uids if known is None else known), spy.ran

    found, ran = database.query_now(read)
    assert found is not None
    return found, any("group_concat" in statement or "string_agg" in statement for statement in ran)


def expunge(database: Database, uids: list[int]) -> None:
    with database.transaction() as connection:
        mailstore.store_flags(connection, ALICE, "INBOX", uids, ["\\Deleted"], "add")
        mailstore.expunge(connection, ALICE, "INBOX")


def recorded_rows(database: Database) -> int:
    return int(database.query_now(lambda s: s.run("SELECT count(*) FROM expunged"))[0][0])


def test_a_session_learns_which_messages_another_expunged_without_reading_the_uids_left(database: Database) -> None:
    fill(database, 20)
    first = selected(database)
    expunge(database, [15, 3, 7])
    found, full_read = look(database, first)
    assert (found.expunged, found.messages, full_read) == ([3, 7, 15], [], False)
    second = selected(database)
    with database.transaction() as connection:  # mail that came and went after the session looked: not its
        mailstore.append(connection, ALICE, b"brief", flags=["\\Deleted"])
    expunge(database, [9])
    found, full_read = look(database, second)
    assert (found.expunged, full_read) == ([9], False)
    found, full_read = look(database, first)
    assert (found.expunged, full_read) == ([3, 7, 9, 15], False)
    # a session that expunged 3 and 7 itself has told its client already, and hears of the others' alone
    found, full_read = look(database, first, known=[uid for uid in first.uids if uid not in (3, 7)])
    assert (found.expunged, full_read) == ([9, 15], False)

    def select_again(statements: Statements) -> tuple[Selected, list[str]]:
        spy = Recorded(statements)
        return mailstore.select(spy, ALICE, "INBOX", first), spy.ran

    again, ran = database.query_now(select_again)  # SELECT again of the mailbox as kept from the first look
    assert again.uids == selected(database).uids == [uid for uid in range(1, 21) if uid not in (3, 7, 9, 15)]
    assert set(again.flags) == set(again.modseqs) == set(again.sizes) == set(again.uids)
    assert not any("group_concat" in statement for statement in ran)


def test_pop3_deletions_and_moves_are_recorded_as_expunges(database: Database) -> None:
    fill(database, 6)
    before = selected(database)
    archive = selected(database, "Archive")
    with database.transaction() as connection:
        assert mailstore.remove(connection, ALICE, [5, 2]) == 2  # POP3's QUIT
    found, full_read = look(database, before)
    assert (found.expunged, full_read) == ([2, 5], False)
    with database.transaction() as connection:
        assert mailstore.move(connection, ALICE, "INBOX", [6, 1], "Archive") == [(1, 1), (6, 2)]
    found, full_read = look(database, before)
    assert (found.expunged, full_read) == ([1, 2, 5, 6], False)
    found, _ = look(database, archive, "Archive")
    assert (found.expunged, [message.uid for message in found.messages]) == ([], [1, 2])


def test_a_session_behind_the_kept_record_still_learns_exactly_what_went(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record keeps EXPUNGED_WINDOW mod-sequences; a session further behind, or one that knew of mail
    expunged before the record began (a database upgraded to 0016: the row of UID 0 that 0017 adds), reads the
    UIDs left instead."""
    monkeypatch.setattr(mailstore, "EXPUNGED_WINDOW", 4)
    fill(database, 10)
    oldest = selected(database)
    expunge(database, [1])  # two mod-sequences: \\Deleted set, then the expunge
    behind = selected(database)
    with database.transaction() as connection:
        for uid in (4, 5):
            mailstore.store_flags(connection, ALICE, "INBOX", [uid], ["\\Seen"], "add")
    expunge(database, [2])
    assert recorded_rows(database) == 1  # 1's expunge is four mod-sequences old
    found, full_read = look(database, oldest)
    assert (found.expunged, full_read) == ([1, 2], True)
    found, full_read = look(database, behind)
    assert (found.expunged, full_read) == ([2], False)
    with database.transaction() as connection:  # the record begins now, as migration 0017 marks it
        connection.execute(text("INSERT INTO expunged SELECT id, highestmodseq, 0 FROM mailboxes"))
    found, full_read = look(database, behind)
    assert (found.expunged, full_read) == ([2], True)
    assert [message.uid for message in found.messages] == [4, 5]


def test_a_deleted_mailbox_takes_its_record_along(database: Database) -> None:
    with database.transaction() as connection:
        mailstore.create_mailbox(connection, ALICE, "Trips")
        for _ in range(3):
            mailstore.append(connection, ALICE, b"x", "Trips", flags=["\\Deleted"])
        assert mailstore.expunge(connection, ALICE, "Trips", [2]) == [2]
    assert recorded_rows(database) == 1
    with database.transaction() as connection:
        mailstore.delete_mailbox(connection, ALICE, "Trips")
    assert recorded_rows(database) == 0


@sqlite_only("an upgrade from revision 0015, which no PostgreSQL install ever had")
def test_a_database_with_mail_upgrades_from_0015_and_records_its_expunges(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = migrations_config()
    with engine.begin() as connection:
        connection.execute(text("PRAGMA foreign_keys=ON"))
        config.attributes["connection"] = connection
        command.upgrade(config, "0015")
        accounts.add_user(connection, ALICE, None)
        for number in range(4):
            mailstore.append(connection, ALICE, f"message {number}".encode(), flags=["\\Deleted"] * (number % 2))
    engine.dispose()
    database = Database(url)  # brings it to the newest revision, as `jitaku serve` does
    assert database.query_now(stored_revision) == SCHEMA_REVISION
    before = selected(database)
    assert before.uids == [1, 2, 3, 4]
    with database.transaction() as connection:
        assert mailstore.expunge(connection, ALICE, "INBOX") == [2, 4]
    found, full_read = look(database, before)
    assert (found.expunged, full_read) == ([2, 4], False)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0015")
        command.upgrade(config, "head")
    assert selected(database).uids == [1, 3]
    found, full_read = look(database, before)  # the record went with the downgrade: the UIDs left tell
    assert (found.expunged, full_read) == ([2, 4], True)
    database.close()


@sqlite_only("the words of its query planner, EXPLAIN QUERY PLAN")
def test_a_look_after_a_change_seeks_the_changes_not_every_message(database: Database) -> None:
    """Through messages_state alone, each look after any change read an index entry for every message of the
    mailbox: under ten clients the largest part of a look (issue 20)."""
    fill(database, 30)
    plan = database.query_now(lambda s: s.run("EXPLAIN QUERY PLAN " + mailstore._CHANGED, (1, 5, 31, 1, 31)))
    searches = [row[3] for row in plan if "messages" in row[3]]
    assert len(searches) == 2
    assert any("messages_modseq (mailbox_id=? AND modseq>?)" in search for search in searches)
    assert any("(mailbox_id=? AND uid>?)" in search for search in searches)
