"""What a move or a flag teaches the spam engines (store/training.py), and the learner that teaches them
(mail/filters/learning.py) against a real store: once per message and class, an engine down retried a few
times and then given up, each failure one log line."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jitaku.mail.filters.learning import Learning
from jitaku.mail.filters.verdict import EngineError
from jitaku.store import Database, mailstore, training

ALICE = "alice@example.test"
JUNK, TRASH, SENT = "\\Junk", "\\Trash", "\\Sent"


@pytest.mark.parametrize(
    ("source", "target", "taught"),
    [
        (None, JUNK, True),  # INBOX (no special use) into Junk: spam
        (SENT, JUNK, True),
        (JUNK, None, False),  # out of Junk: ham
        (JUNK, "\\Archive", False),
        (JUNK, TRASH, None),  # deleting spam says nothing
        (JUNK, JUNK, None),
        (None, None, None),
        (None, TRASH, None),
    ],
)
def test_a_move_teaches_spam_into_junk_and_ham_out_of_it_but_not_into_trash(
    source: str | None, target: str | None, taught: bool | None
) -> None:
    assert training.moved(source, target) is taught


@pytest.mark.parametrize(
    ("name", "trash"),
    [
        ("Trash", True),
        ("Deleted Items", True),  # Outlook's
        ("deleted messages", True),  # Apple Mail's, in any case
        ("[Gmail]/Bin", True),  # the last level decides
        ("INBOX/TRASH", True),
        ("ゴミ箱", True),
        ("削除済みアイテム", True),
        ("Trash/2025", False),
        ("Trashed ideas", False),
        ("Junk", False),
    ],
)
def test_a_trash_folder_is_known_by_its_last_level_named_as_clients_name_theirs(name: str, trash: bool) -> None:
    assert training.trash_named(name) is trash


@pytest.mark.parametrize(
    ("into", "use", "taught"),
    [
        ("Deleted Items", None, None),  # Outlook's trash, made by the client: deleting spam teaches nothing
        ("ゴミ箱", None, None),
        ("Papierkorb", TRASH, None),  # the special use, whatever the name
        ("Archive", "\\Archive", False),  # every user's; filed away: ham, as Dovecot's report-ham.sieve has it
        ("Receipts", None, False),
        ("Deleted Items/Keep", None, False),
    ],
)
def test_spam_moved_out_of_junk_into_a_trash_folder_teaches_nothing_however_the_folder_is_marked(
    database: Database, into: str, use: str | None, taught: bool | None
) -> None:
    with database.transaction() as connection:
        if (into, use) not in mailstore.SPECIAL_FOLDERS:
            mailstore.create_mailbox(connection, ALICE, into, use)  # type: ignore[arg-type]
        uid = mailstore.append(connection, ALICE, b"Subject: offer\r\n\r\ncheap watches\r\n", "Junk")
    with database.transaction() as connection:
        (_old, new), *_ = mailstore.move(connection, ALICE, "Junk", [uid], into)
        assert training.record_copy(connection, ALICE, "Junk", into, [new]) is taught
    assert database.query_now(training.waiting) == (0 if taught is None else 1)


@pytest.mark.parametrize(
    ("given", "mode", "after", "taught"),
    [
        (["$Junk"], "add", ["$Junk", "\\Seen"], True),
        (["$junk"], "add", ["$junk"], True),  # keywords are case-insensitive
        (["$NotJunk"], "add", ["$NotJunk"], False),
        (["$NotJunk", "\\Seen"], "replace", ["$NotJunk", "\\Seen"], False),
        (["$Junk"], "remove", [], None),
        (["$Junk"], "add", ["$Junk", "$NotJunk"], None),  # both: no verdict
        (["$Junk", "$NotJunk"], "add", ["$Junk", "$NotJunk"], None),
        (["\\Flagged"], "add", ["\\Flagged"], None),
    ],
)
def test_a_keyword_set_teaches_as_thunderbird_and_apple_mail_mean_it(
    given: list[str], mode: str, after: list[str], taught: bool | None
) -> None:
    assert training.flagged(given, mode, after) is taught


def test_an_append_teaches_by_its_keywords_else_by_junk() -> None:
    assert training.appended(JUNK, []) is True
    assert training.appended(JUNK, ["$NotJunk"]) is False
    assert training.appended(None, ["$Junk"]) is True
    assert training.appended(None, ["\\Seen"]) is None


class Engine:
    def __init__(self, name: str, down: int = 0) -> None:
        self.name, self.down = name, down
        self.taught: list[tuple[bytes, bool]] = []

    async def learn(self, message: bytes, spam: bool) -> bool:
        if self.down:
            self.down -= 1
            raise EngineError(self.name, "connection refused")
        self.taught.append((message, spam))
        return True

    async def close(self) -> None:
        pass


def _moved_into_junk(database: Database, body: bytes) -> None:
    with database.transaction() as connection:
        uid = mailstore.append(connection, ALICE, body)
    with database.transaction() as connection:
        (_old, new), *_ = mailstore.move(connection, ALICE, "INBOX", [uid], "Junk")
        assert training.record_copy(connection, ALICE, "INBOX", "Junk", [new]) is True


def _run_all(learning: Learning, database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(training, "RETRIES", (0.0, 0.0))
    for _ in range(5):
        asyncio.run(learning.once())


def test_each_engine_learns_a_message_once_and_one_down_is_retried_then_given_up(
    database: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    body = b"Subject: offer\r\n\r\ncheap watches\r\n"
    _moved_into_junk(database, body)
    up, flaky = Engine("rspamd"), Engine("spamassassin", down=1)
    learning = Learning(database, [up, flaky])
    _run_all(learning, database, monkeypatch)
    assert up.taught == [(body, True)] and flaky.taught == [(body, True)]  # rspamd not asked again on the retry
    assert database.query_now(training.waiting) == 0
    assert caplog.text.count("event=learn_failed engine=spamassassin kind=spam") == 1

    # the same message in Junk again (copied back in): learned already, nobody is asked
    with database.transaction() as connection:
        (_old, new), *_ = mailstore.copy(connection, ALICE, "Junk", [1], "INBOX")
    with database.transaction() as connection:
        (_old, again), *_ = mailstore.copy(connection, ALICE, "INBOX", [new], "Junk")
        training.record_copy(connection, ALICE, "INBOX", "Junk", [again])
    _run_all(learning, database, monkeypatch)
    assert len(up.taught) == 1 and database.query_now(training.waiting) == 0

    # an engine down for good: tried 1 + len(RETRIES) times, each failure logged, then given up
    caplog.clear()
    dead = Engine("spamassassin", down=100)
    _moved_into_junk(database, b"Subject: other\r\n\r\nmore spam\r\n")
    _run_all(Learning(database, [dead]), database, monkeypatch)
    assert caplog.text.count("event=learn_failed engine=spamassassin") == 3
    assert 'retry="no (given up)"' in caplog.text and database.query_now(training.waiting) == 0


def test_a_message_expunged_before_it_is_learned_takes_its_item_along_and_no_later_message_is_taught(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    _moved_into_junk(database, b"Subject: offer\r\n\r\ncheap watches\r\n")
    assert database.query_now(training.waiting) == 1
    with database.transaction() as connection:  # Junk emptied while the engines were down
        (junk,) = [m.uid for m in mailstore.list_messages(connection, ALICE, "Junk")]
        mailstore.store_flags(connection, ALICE, "Junk", [junk], {"\\Deleted"}, "add")
        mailstore.expunge(connection, ALICE, "Junk")
    assert database.query_now(training.waiting) == 0  # gone with its message
    with database.transaction() as connection:  # SQLite may give the next message the expunged one's id
        mailstore.append(connection, ALICE, b"Subject: from mother\r\n\r\nhello\r\n")
    engine = Engine("rspamd")
    _run_all(Learning(database, [engine]), database, monkeypatch)
    assert engine.taught == [] and database.query_now(training.waiting) == 0
