"""What a move or a flag teaches the spam engines (store/training.py), and the learner that teaches them
(mail/filters/learning.py) against a real store: once per message and class, an engine down retried a few
times and then given up, each failure one log line."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from jitaku import passwords
from jitaku.config import LoginSettings
from jitaku.mail.filters.learning import Learning
from jitaku.mail.filters.verdict import EngineError
from jitaku.mail.imap import server
from jitaku.mail.login import Authenticator, Logins, Sessions
from jitaku.passwords import Checker
from jitaku.ratelimit import LoginLimiter
from jitaku.store import Database, accounts, mailstore, training
from jitaku.store.transaction import Tx

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
    ("given", "mode", "before", "rescue", "taught"),
    [
        (["$Junk"], "add", [], False, True),
        (["$junk"], "add", ["\\Seen"], False, True),  # keywords are case-insensitive
        (["Junk"], "add", ["NonJunk"], False, True),  # Thunderbird's Junk: adds Junk, then removes NonJunk
        (["$Junk"], "add", ["$Junk"], False, None),  # had it: said before
        (["$NotJunk"], "add", [], False, None),  # a client's own filter on a new message in INBOX
        (["NonJunk"], "add", ["\\Seen"], False, None),  # Thunderbird's, likewise
        (["$NotJunk"], "add", [], True, False),  # in Junk, or our filter had called it spam
        (["NotJunk"], "add", [], True, False),  # Apple Mail's older name
        (["NonJunk"], "add", ["Junk"], False, False),  # Thunderbird's Not Junk on a message it had marked Junk
        (["$NotJunk", "\\Seen"], "replace", ["$Junk"], False, False),
        (["$NotJunk", "\\Seen"], "replace", ["$NotJunk"], True, None),  # had it: said before
        (["$Junk"], "remove", ["$Junk"], True, None),
        (["$NotJunk"], "remove", ["$NotJunk", "$Junk"], True, None),
        (["$Junk", "$NotJunk"], "add", [], True, None),  # both: no verdict
        (["\\Flagged"], "add", [], True, None),
    ],
)
def test_a_junk_keyword_teaches_spam_and_a_not_junk_one_ham_only_when_it_rescues_the_message(
    given: list[str], mode: str, before: list[str], rescue: bool, taught: bool | None
) -> None:
    assert training.flagged(given, mode, before, rescue) is taught


def test_an_append_into_junk_teaches_spam_whatever_its_keywords_and_elsewhere_as_a_store_would() -> None:
    assert training.appended(JUNK, [], False) is True
    assert training.appended(JUNK, ["NonJunk"], False) is True  # Thunderbird copying it in from another account
    assert training.appended(JUNK, ["$NotJunk"], True) is True
    assert training.appended(JUNK, ["$Junk", "$NotJunk"], False) is True
    assert training.appended(None, ["$Junk"], False) is True
    assert training.appended(None, ["\\Seen"], False) is None
    assert training.appended(None, ["NonJunk"], False) is None  # Thunderbird uploading mail its filter passed
    assert training.appended(None, ["$NotJunk"], True) is False  # our filter had called it spam


@pytest.mark.parametrize(
    ("message", "spam"),
    [
        (b"Return-Path: <a@remote.example>\r\nX-Spam-Status: Yes\r\nX-Spam-Score: 7.0\r\n\r\nbuy\r\n", True),
        (b"x-spam-status: YES, score=7.1 required=5.0\n\nbuy\n", True),  # SpamAssassin's own, bare LF
        (
            b"Return-Path: <a@b>\r\nX-Virus-Status: Partly scanned (clamav: 25 MB)\r\nX-Spam-Status: Yes\r\n\r\nbuy\r\n",
            True,
        ),
        (b"X-Spam-Status: No\r\nX-Spam-Status: Yes\r\n\r\nhello\r\n", False),  # the first is ours
        (b"X-Spam-Status: Unchecked (rspamd unavailable)\r\n\r\nhello\r\n", False),
        (b"X-Spam-Status: No (sender allowed)\r\nX-Spam-Score: 15.2\r\n\r\nbuy\r\n", False),  # an allow rule's
        (b"Subject: about filters\r\n\r\nX-Spam-Status: Yes\r\n", False),  # in the body
        (b"Subject: hello\r\n\r\nhello\r\n", False),
    ],
)
def test_our_filters_verdict_is_read_from_the_first_x_spam_status(message: bytes, spam: bool) -> None:
    assert training.said_spam(message) is spam


def _taught(database: Database) -> dict[tuple[str, int], bool | str]:
    """What is recorded to teach, by mailbox and UID: spam (True), ham (False) or "ham if called spam"."""
    rows = database.query_now(
        lambda s: s.run(
            "SELECT mailboxes.name, messages.uid, filter_training.spam, filter_training.engines FROM filter_training"
            " JOIN messages ON messages.id = filter_training.message_id"
            " JOIN mailboxes ON mailboxes.id = messages.mailbox_id"
        )
    )
    return {
        (name, int(uid)): "ham if called spam" if engines == training.IF_CALLED_SPAM else bool(spam)
        for name, uid, spam, engines in rows
    }


def test_not_junk_teaches_ham_of_a_message_in_junk_marked_junk_or_called_spam_and_nothing_else(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    bodies = {
        "plain": b"Return-Path: <a@b>\r\nX-Spam-Status: No\r\n\r\nhello\r\n",
        "called": b"Return-Path: <a@b>\r\nX-Virus-Status: Partly scanned\r\nX-Spam-Status: Yes\r\n\r\noffer\r\n",
        "marked": b"Subject: hello again\r\n\r\nhi\r\n",
        "junked": b"Subject: in junk\r\n\r\nhi\r\n",
    }
    with database.transaction() as connection:
        plain = mailstore.append(connection, ALICE, bodies["plain"])
        called = mailstore.append(connection, ALICE, bodies["called"])
        marked = mailstore.append(connection, ALICE, bodies["marked"], flags=["Junk"])
        junked = mailstore.append(connection, ALICE, bodies["junked"], "Junk")
    for name, uids in (("INBOX", [plain, called, marked]), ("Junk", [junked])):
        with database.transaction() as connection:
            result = mailstore.store_flags(connection, ALICE, name, uids, ["NonJunk"], "add")
            training.record_flags(connection, ALICE, name, ["NonJunk"], "add", result, name == "Junk")
    # what our filter said is read by the learner, not under the IMAP command's write lock
    assert _taught(database) == {
        ("INBOX", plain): "ham if called spam",
        ("INBOX", called): "ham if called spam",
        ("INBOX", marked): False,
        ("Junk", junked): False,
    }
    engine = Engine("rspamd")
    _run_all(Learning(database, [engine]), database, monkeypatch)
    assert sorted(engine.taught) == sorted((bodies[kind], False) for kind in ("called", "marked", "junked"))
    assert _taught(database) == {}

    with database.transaction() as connection:  # the user's Junk button in INBOX, the keyword set once more
        for _ in range(2):
            result = mailstore.store_flags(connection, ALICE, "INBOX", [plain], ["$Junk"], "add")
            training.record_flags(connection, ALICE, "INBOX", ["$Junk"], "add", result, False)
    assert _taught(database) == {("INBOX", plain): True}


@pytest.mark.parametrize(
    ("given", "befores", "in_junk", "durable"),
    [
        (["NonJunk"], [[], ["\\Seen"]], False, False),  # Thunderbird's filter passing new mail: unsure at most
        (["NonJunk"], [[], ["Junk"]], False, True),  # its Not Junk on a message it had marked
        (["NonJunk"], [[]], True, True),  # in Junk
        (["NonJunk"], [["NonJunk"]], True, False),  # said before
        (["$Junk"], [["$Junk"], []], False, True),
        (["$Junk"], [["$Junk"]], True, False),
    ],
)
def test_a_store_is_durable_only_when_it_surely_teaches(
    given: list[str], befores: list[list[str]], in_junk: bool, durable: bool
) -> None:
    assert training.sure(given, "add", befores, in_junk) is durable


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


def test_a_stores_write_reads_no_message_and_reaches_the_disk_only_when_it_surely_teaches(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thunderbird sets NonJunk on each new message in INBOX: that STORE must not read message bodies under the
    write lock nor wait for an fsync; its Not Junk on a message in Junk, a rescue, is durable."""
    with database.transaction() as connection:
        accounts.set_password(connection, ALICE, passwords.hash_password("secret"))
        for number in range(3):
            status = b"Yes" if number == 1 else b"No"
            mailstore.append(connection, ALICE, b"X-Spam-Status: %s\r\n\r\n%s\r\n" % (status, b"x" * 100_000))
        mailstore.append(connection, ALICE, b"Subject: in junk\r\n\r\nhi\r\n", "Junk")
    written: list[str] = []
    durables: list[bool] = []
    run, transact = Tx.run, Database.transact

    def spy_run(tx: Tx, statement: str, parameters: Sequence[Any] = ()) -> list[Any]:
        written.append(statement)
        return run(tx, statement, parameters)

    async def spy_transact(self: Database, job: Callable[[Tx], Any], durable: bool = True) -> Any:
        durables.append(durable)
        return await transact(self, job, durable)

    monkeypatch.setattr(Tx, "run", spy_run)
    monkeypatch.setattr(Database, "transact", spy_transact)
    imap = server.ImapServer(database, logins(database), None, training=True)
    commands = [b"b SELECT INBOX", b"c UID STORE 1:3 +FLAGS (NonJunk)"]
    asyncio.run(converse(imap, b"a LOGIN alice@example.test secret", *commands))
    assert not [statement for statement in written if "body" in statement]
    assert durables[-1] is False
    asyncio.run(converse(imap, b"a LOGIN alice@example.test secret", b"b SELECT Junk", b"c STORE 1 +FLAGS (NonJunk)"))
    assert durables[-1] is True
    monkeypatch.undo()
    assert len(_taught(database)) == 4
    engine = Engine("rspamd")
    _run_all(Learning(database, [engine]), database, monkeypatch)
    assert [(message[:18], spam) for message, spam in engine.taught] == [
        (b"X-Spam-Status: Yes", False),
        (b"Subject: in junk\r\n", False),
    ]


def logins(database: Database) -> Logins:
    return Logins(Authenticator(database, LoginLimiter(database, LoginSettings()), Checker(1, 0)), Sessions())


async def converse(imap: server.ImapServer, *commands: bytes) -> list[bytes]:
    """Connect and send each command, reading its answer before the next goes."""
    listener = await asyncio.start_server(functools.partial(imap.serve, implicit_tls=False), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
    received = [(await reader.readline()).rstrip(b"\r\n")]
    for command in commands:
        writer.write(command + b"\r\n")
        tag = command.split(b" ", 1)[0] + b" "
        while not received[-1].startswith(tag):
            received.append((await asyncio.wait_for(reader.readline(), 10)).rstrip(b"\r\n"))
    writer.close()
    listener.close()
    return received
