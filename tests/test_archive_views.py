"""The archive's pages as a browser gets them, through Starlette's test client on a database of its own (no
daemon): what they answer for months no calendar has, whom they name as a post's author, what they let caches
keep of a members' archive, and how much one view of a big post costs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from jitaku.config import Settings
from jitaku.lists.message_ids import message_hash
from jitaku.store import Database, lists
from jitaku.web import csrf
from jitaku.web.archive import message
from jitaku.web.archive.logins import COOKIE, ArchiveLogins
from jitaku.web.archive.pages import PARSERS, ArchivePages
from jitaku.web.search import Searches
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

LIST = "sota@example.test"
BASE = f"/lists/{LIST}/archive/"


def attached_post() -> bytes:
    post = EmailMessage()
    post["From"] = '"Yamada, Taro" <taro@example.jp>'
    post["Subject"] = "slides"
    post["Message-ID"] = "<slides@example.jp>"
    post.set_content("see attached")
    post.add_attachment(b"%PDF-1.4 slides", maintype="application", subtype="pdf", filename="slides.pdf")
    return post.as_bytes()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        lists.create_list(connection, LIST, "SOTA", "[sota:%05d]", "list", "auto", "")
        found = lists.get_list(connection, LIST)
        lists.add_members(connection, found.id, ["bob@example.org"])
        body = attached_post()
        hashed = message_hash("slides@example.jp")
        lists.archive(
            connection,
            found.id,
            1,
            "taro@example.jp",
            "山田, 太郎 <taro@example.jp>",
            "slides",
            body,
            "slides@example.jp",
            hashed,
            (),
        )
    yield database
    database.close()


def application(database: Database) -> Starlette:
    settings = Settings(domains=["example.test"])
    logins = ArchiveLogins(settings, database, None, "k" * 64)
    return Starlette(
        routes=ArchivePages(settings, database, logins, Searches(database)).routes(),
        middleware=[Middleware(csrf.Protect, secret="s" * 64)],
    )


def client(database: Database, member: str | None = None) -> TestClient:
    settings = Settings(domains=["example.test"])
    logins = ArchiveLogins(settings, database, None, "k" * 64)
    browser = TestClient(application(database), raise_server_exceptions=False)
    if member is not None:
        found = database.query_now(lambda s: lists.get_list(s, LIST))
        browser.cookies.set(COOKIE.format(found.id), logins.cookie_value(found.id, member, time.time()))
    return browser


def message_path() -> str:
    return f"{BASE}msg/{message_hash('slides@example.jp')}/"


def test_a_month_after_the_last_a_calendar_has_is_not_found(database: Database) -> None:
    browser = client(database)
    for path in ("9999-12/", "9999-12.mbox", "9999-11/"):
        assert browser.get(BASE + path).status_code == 404, path


def test_an_author_whose_name_holds_a_comma_is_named_whole(database: Database) -> None:
    browser = client(database)
    for path in (f"{BASE}{time.strftime('%Y-%m')}/", message_path()):
        page = browser.get(path)
        assert page.status_code == 200 and "山田, 太郎" in page.text, path


def test_a_members_archive_keeps_its_mbox_and_attachments_out_of_every_cache(database: Database) -> None:
    public = client(database).get(message_path() + "attachments/1")
    assert public.status_code == 200 and public.headers["cache-control"] == "public, max-age=86400"
    with database.transaction() as connection:
        lists.set_setting(connection, LIST, "archive", "members")
    member = client(database, "bob@example.org")
    month = time.strftime("%Y-%m")
    for path in (message_path() + "attachments/1", f"{BASE}{month}.mbox", message_path()):
        answer = member.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["cache-control"] == "private, no-store", path


class Renders:
    """message.render, counted: how often, and how many at once at most."""

    def __init__(self) -> None:
        self.calls = 0
        self.most = 0
        self._now = 0
        self._lock = threading.Lock()
        self._render = message.render

    def __call__(self, body: bytes, obfuscate: bool) -> message.Rendered:
        with self._lock:
            self.calls += 1
            self._now += 1
            self.most = max(self.most, self._now)
        time.sleep(0.05)  # a big post's parse, in its thread
        try:
            return self._render(body, obfuscate)
        finally:
            with self._lock:
                self._now -= 1


def views(database: Database, paths: list[str]) -> list[int]:
    async def together() -> list[int]:
        transport = httpx.ASGITransport(app=application(database))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as browser:
            answers = await asyncio.gather(*(browser.get(path) for path in paths))
        return [answer.status_code for answer in answers]

    return asyncio.run(together())


def test_readers_who_come_together_wait_their_turn_and_a_post_is_parsed_once(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    renders = Renders()
    monkeypatch.setattr(message, "render", renders)
    assert views(database, [message_path()] * 6) == [200] * 6  # six reloads of one page
    assert renders.calls == 1
    found = database.query_now(lambda s: lists.get_list(s, LIST))
    with database.transaction() as connection:
        for number in range(2, 8):
            identifier = f"{number}@example.jp"
            lists.archive(
                connection,
                found.id,
                number,
                "a@x",
                "A <a@x>",
                "s",
                b"\r\nhi\r\n",
                identifier,
                message_hash(identifier),
                (),
            )
    paths = [f"{BASE}msg/{message_hash(f'{number}@example.jp')}/" for number in range(2, 8)]
    assert views(database, paths) == [200] * 6
    assert renders.calls == 7 and renders.most <= PARSERS
