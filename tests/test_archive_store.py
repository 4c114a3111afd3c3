"""store/lists.py's archive setting and archived posts' threads, store/archive.py's one-time login links, and
web/archive/logins.py's mailing of them, without a daemon."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest

from jitaku.config import Settings
from jitaku.lists import backfill
from jitaku.lists.message_ids import message_hash
from jitaku.lists.runner import ListRunner
from jitaku.mail import dkim, parts
from jitaku.mail.pipeline import Pipeline
from jitaku.mail.policy import Policy
from jitaku.store import Database, lists, search
from jitaku.store import archive as stored
from jitaku.store.accounts import AccountError
from jitaku.store.dialect import POSTGRESQL
from jitaku.store.statements import Statements
from jitaku.web.archive.logins import LINKS_PER_ADDRESS, ArchiveLogins
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

LIST = "sota@example.test"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        lists.create_list(connection, LIST, "SOTA", "[sota:%05d]", "list", "auto", "")
    yield database
    database.close()


def test_archive_setting_takes_public_members_or_none_and_nothing_else(database: Database) -> None:
    assert database.query_now(lambda s: lists.get_list(s, LIST)).archive == "public"
    with database.transaction() as connection:
        lists.set_setting(connection, LIST, "archive", "members")
    assert database.query_now(lambda s: lists.get_list(s, LIST)).archive == "members"
    with pytest.raises(AccountError, match="archive: 'private' is not one of public, members, none"):
        lists.check_setting("archive", "private")


def archive(database: Database, number: int, message_id: str, answers: tuple[str, ...] = ()) -> None:
    found = database.query_now(lambda s: lists.get_list(s, LIST))
    with database.transaction() as connection:
        lists.archive(
            connection,
            found.id,
            number,
            "a@example.org",
            "A",
            f"post {number}",
            b"x",
            message_id,
            f"H{number}",
            answers,
        )


def test_a_reply_hangs_under_the_nearest_post_it_names_and_joins_its_thread(database: Database) -> None:
    archive(database, 1, "1@x")
    archive(database, 2, "2@x", ("1@x",))
    archive(database, 3, "3@x", ("unknown@x", "2@x", "1@x"))  # In-Reply-To not archived: References' next
    archive(database, 4, "4@x", ("elsewhere@x",))
    found = database.query_now(lambda s: lists.get_list(s, LIST))
    posts = database.query_now(lambda s: stored.between(s, found.id, 0, 2e10))
    assert [(p.number, p.parent_number, p.thread_number) for p in posts] == [
        (1, None, 1),
        (2, 1, 1),
        (3, 2, 1),
        (4, None, 4),
    ]
    assert [p.number for p in database.query_now(lambda s: stored.thread(s, found.id, 1))] == [1, 2, 3]
    assert database.query_now(lambda s: stored.by_hash(s, found.id, "H3")).number == 3


def test_a_login_link_works_once_for_its_own_list_within_its_hour(database: Database) -> None:
    found = database.query_now(lambda s: lists.get_list(s, LIST))
    with database.transaction() as connection:
        assert stored.add_login(connection, "h1", found.id, "Carol@Example.org", 1000.0, 1, 3600.0)
        assert not stored.add_login(connection, "h2", found.id, "carol@example.org", 1001.0, 1, 3600.0)
    assert database.query_now(lambda s: stored.find_login(s, "h1", found.id, 1001.0)) == "carol@example.org"
    with database.transaction() as connection:
        assert stored.use_login(connection, "h1", found.id + 1, 1001.0) is None  # another list's id
        assert stored.use_login(connection, "h1", found.id, 1000.0 + stored.LOGIN_LIFETIME + 1) is None
        assert stored.use_login(connection, "h1", found.id, 1001.0) == "carol@example.org"
        assert stored.use_login(connection, "h1", found.id, 1002.0) is None  # used
        assert stored.find_login(connection, "h2", found.id, 1001.0) is None  # the one over the limit: never added


class Mail:
    """LocalMail's part the logins use: what would have gone out."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[str], bytes]] = []

    async def send(self, sender: str, to: list[str], data: bytes) -> bool:
        self.sent.append((to, data))
        return True


def test_links_go_only_to_members_and_at_most_three_an_hour(database: Database) -> None:
    found = database.query_now(lambda s: lists.get_list(s, LIST))
    with database.transaction() as connection:
        lists.add_members(connection, found.id, ["bob@example.org"])
    mail = Mail()
    logins = ArchiveLogins(Settings(domains=["example.test"]), database, mail, "k" * 64)  # type: ignore[arg-type]
    target = f"/lists/{LIST}/archive/msg/{'A' * 32}/"

    async def ask() -> None:
        for _ in range(LINKS_PER_ADDRESS + 2):
            await logins._send_link(found, "bob@example.org", time.time(), target)  # noqa: SLF001
        await logins._send_link(found, "eve@example.org", time.time(), target)  # noqa: SLF001

    asyncio.run(ask())
    assert [to for to, _data in mail.sent] == [["bob@example.org"]] * LINKS_PER_ADDRESS
    text = message_from_bytes(mail.sent[0][1], policy=default_policy).get_body().get_content()
    assert f"/lists/{LIST}/archive/login/" in text and "next=%2Flists%2Fsota%40example.test%2Farchive%2Fmsg%2F" in text


def test_forms_sent_at_once_get_no_more_than_three_links_mailed(database: Database) -> None:
    found = database.query_now(lambda s: lists.get_list(s, LIST))
    with database.transaction() as connection:
        lists.add_members(connection, found.id, ["bob@example.org"])
    mail = Mail()
    logins = ArchiveLogins(Settings(domains=["example.test"]), database, mail, "k" * 64)  # type: ignore[arg-type]

    async def ask_together() -> None:
        now = time.time()
        target = f"/lists/{LIST}/archive/"
        await asyncio.gather(*(logins._send_link(found, "bob@example.org", now, target) for _ in range(8)))  # noqa: SLF001

    asyncio.run(ask_together())
    assert len(mail.sent) == LINKS_PER_ADDRESS


class Recorded:
    """A DB-API cursor that keeps what it was asked to run, as PostgreSQL would get it."""

    description = None  # what a cursor says after a statement that returned no rows

    def __init__(self) -> None:
        self.ran: list[tuple[str, tuple[object, ...]]] = []

    def execute(self, statement: str, parameters: tuple[object, ...] = ()) -> None:
        self.ran.append((statement, tuple(parameters)))

    def fetchall(self) -> list[object]:
        return []


def test_all_unplaced_posts_are_asked_for_without_a_limit_postgresql_refuses() -> None:
    cursor = Recorded()
    statements = Statements(cursor, POSTGRESQL, Exception)  # type: ignore[arg-type]
    lists.unplaced(statements, 7)
    lists.unplaced(statements, 7, 50)
    (everything, _), (some, some_parameters) = cursor.ran
    assert "LIMIT" not in everything and some_parameters == (7, 50)


def test_posts_archived_before_their_message_id_was_kept_get_their_page_thread_and_search(database: Database) -> None:
    found = database.query_now(lambda s: lists.get_list(s, LIST))
    first = (
        "Message-ID: <one@x>\r\nSubject: a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n自宅サーバー\r\n".encode()
    )
    second = b"Subject: Re: a\r\nIn-Reply-To: <one@x>\r\n\r\nyes\r\n"  # no Message-ID of its own
    with database.transaction() as connection:
        for number, body in ((1, first), (2, second)):
            lists.archive(connection, found.id, number, "a@example.org", "A", "a", body)  # as before 0021
    assert backfill.reindex(database, found) == 2
    assert backfill.reindex(database, found) == 0
    posts = database.query_now(lambda s: stored.between(s, found.id, 0, 2e10))
    assert [(p.message_id, p.parent_number, p.thread_number) for p in posts] == [
        ("one@x", None, 1),
        ("sota.2@example.test", 1, 1),
    ]
    assert posts[0].message_hash == message_hash("one@x")
    hits = database.query_now(lambda s: search.find_list_posts(s, [found.id], "自宅サーバー", 10))
    assert [hit.ref for hit in hits] == [posts[0].id]


def older_posts(database: Database, count: int) -> lists.MailingList:
    found = database.query_now(lambda s: lists.get_list(s, LIST))
    with database.transaction() as connection:
        for number in range(1, count + 1):
            body = f"Message-ID: <{number}@x>\r\nSubject: s\r\n\r\nword{number}\r\n".encode()
            lists.archive(connection, found.id, number, "a@example.org", "A", "s", body)  # as before 0021
    return found


class Probe:
    """parts.plain_text, which tries meanwhile to begin a write of another connection, as the MX's would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writable: list[bool] = []
        self._plain_text = parts.plain_text

    def __call__(self, body: bytes, limit: int = 100_000) -> str:
        other = sqlite3.connect(self.path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            self.writable.append(True)
        except sqlite3.OperationalError:  # database is locked
            self.writable.append(False)
        finally:
            other.close()
        return self._plain_text(body, limit)


def test_older_posts_are_parsed_while_the_database_takes_other_writes(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = older_posts(database, backfill.BATCH + 3)
    probe = Probe(tmp_path / "j.db")
    monkeypatch.setattr(parts, "plain_text", probe)
    assert backfill.reindex(database, found) == backfill.BATCH + 3  # the CLI's
    with database.transaction() as connection:
        connection.exec_driver_sql("UPDATE list_posts SET message_hash = NULL")
    asyncio.run(runner(database)._backfill())  # noqa: SLF001 (the daemon's)
    assert len(probe.writable) == 2 * (backfill.BATCH + 3) and all(probe.writable)
    hits = database.query_now(lambda s: search.find_list_posts(s, [found.id], f"word{backfill.BATCH + 3}", 10))
    assert len(hits) == 1


def runner(database: Database) -> ListRunner:
    policy = Policy(Settings(domains=["example.test"]), database)
    pipeline = Pipeline("mx.example.test", database, dkim.Signer([]), lambda: None, lambda: None)
    return ListRunner(
        database,
        dkim.Signer([]),
        policy,
        pipeline,
        "mx.example.test",
        "https://mx.example.test",
        asyncio.Event(),
        lambda: None,
    )


def test_the_list_runner_handles_list_mail_while_older_posts_are_still_being_placed(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    list_runner = runner(database)
    handled: list[int] = []
    placing = {"cancelled": False}

    async def slow_backfill() -> None:
        try:
            await asyncio.Event().wait()  # a year of big posts
        except asyncio.CancelledError:
            placing["cancelled"] = True
            raise

    async def handle(item: lists.InboxItem) -> None:
        handled.append(item.id)
        await database.transact(lambda tx: lists.remove_inbox(tx, item.id, item.lease))

    monkeypatch.setattr(list_runner, "_backfill", slow_backfill)
    monkeypatch.setattr(list_runner, "_handle_safely", handle)

    async def scenario() -> None:
        await database.transact(
            lambda tx: lists.add_inbox(tx, LIST, "post", LIST, "a@example.org", b"Subject: s\r\n\r\nx\r\n", time.time())
        )
        running = asyncio.create_task(list_runner.run())
        async with asyncio.timeout(5):
            while not handled:
                await asyncio.sleep(0.05)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running

    asyncio.run(scenario())
    assert len(handled) == 1 and placing["cancelled"]


def test_big_older_posts_are_written_a_few_to_a_transaction(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    found = older_posts(database, 3)
    monkeypatch.setattr(backfill, "BATCH_BYTES", 60)  # each post is about 40 bytes
    assert [p.number for p in backfill.prepare(database, found)] == [1, 2]
    assert backfill.reindex(database, found) == 3
