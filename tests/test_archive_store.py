"""store/lists.py's archive setting and archived posts' threads, store/archive.py's one-time login links, and
web/archive/logins.py's mailing of them, without a daemon."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path

import pytest

from jitaku.config import Settings
from jitaku.lists import backfill
from jitaku.lists.message_ids import message_hash
from jitaku.store import Database, lists, search
from jitaku.store import archive as stored
from jitaku.store.accounts import AccountError
from jitaku.store.dialect import POSTGRESQL
from jitaku.store.statements import Statements
from jitaku.web.archive.logins import LINKS_PER_ADDRESS, ArchiveLogins

LIST = "sota@example.test"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'j.db'}")
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
        assert backfill.backfill(connection, found.id) == 2
        assert backfill.backfill(connection, found.id) == 0
    posts = database.query_now(lambda s: stored.between(s, found.id, 0, 2e10))
    assert [(p.message_id, p.parent_number, p.thread_number) for p in posts] == [
        ("one@x", None, 1),
        ("sota.2@example.test", 1, 1),
    ]
    assert posts[0].message_hash == message_hash("one@x")
    hits = database.query_now(lambda s: search.find_list_posts(s, [found.id], "自宅サーバー", 10))
    assert [hit.ref for hit in hits] == [posts[0].id]
