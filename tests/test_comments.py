"""A reader's comment as the form posts it: saved only when every check passes, refused with a readable page
that stores nothing otherwise (issue 21, "Write a comment" and "Bad input"), and word of it mailed to the owner
with signed links that a GET never acts on."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import Message, Receive, Scope, Send

from jitaku.config import Settings
from jitaku.store import Database, accounts, blog, comments
from jitaku.store.blog import NewPost
from jitaku.web.bodies import BodyLimit
from jitaku.web.comment_filter import Judgement
from jitaku.web.comment_mail import CommentMail
from jitaku.web.comment_tokens import COOKIE, CommentTokens, TokenRefused
from jitaku.web.comments import Comments, status_for
from jitaku.web.headers import SecurityHeaders
from jitaku.web.page_cache import FastPages, PageCache
from jitaku.web.site import Site as Pages
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

SITE = "https://blog.example.test"
POST_URL = "/2024/05/自宅サーバー/"
SECRET = "k" * 64
FORM = {"name": "Hana", "email": "hana@reader.test", "url": "", "body": "Nice *post*!"}


class Mailed:
    """Stands in for the pipeline: what would have been queued."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str], bytes]] = []

    async def send(self, sender: str, to: list[str], data: bytes) -> bool:
        self.sent.append((sender, to, data))
        return True


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, "owner@example.test", None, admin=True)
        post = NewPost("a.md", POST_URL, "自宅サーバー", "自宅サーバー", 1714521600.0, False, "x", "<p>x</p>")
        draft = NewPost("b.md", "/draft/", "Draft", "draft", 1714521600.0, True, "x", "<p>x</p>")
        about = NewPost("about.md", "/about/", "About", "about", 1714521600.0, False, "x", "<p>x</p>", kind="page")
        blog.import_posts(connection, [post, draft, about], time.time())
    yield database
    database.close()


class Site:
    def __init__(self, database: Database, **blog_settings: Any) -> None:
        self.database = database
        self.settings = Settings(domains=["example.test"], web={"url": SITE}, blog=blog_settings)
        self.tokens = CommentTokens(SECRET)
        self.mailed = Mailed()
        mail = CommentMail(self.settings, database, self.mailed, self.tokens)  # type: ignore[arg-type]
        self.drops = 0  # how often the site was told to drop its kept pages
        self.comments = Comments(self.settings, database, self.tokens, mail, changed=self.drop)
        self.app = Starlette(
            routes=self.comments.routes(),
            middleware=[Middleware(BodyLimit, max_bytes=65536, own=("/comments/",))],
        )

    def drop(self) -> None:
        self.drops += 1

    def post_id(self, url: str = POST_URL) -> int:
        return next(p.id for p in self.database.query_now(blog.posts) if p.url == url)

    def cookie(self, age: float = 10.0) -> dict[str, str]:
        return {COOKIE: self.tokens.issue(time.time() - age)}

    async def send(
        self,
        form: dict[str, str] | None = None,
        *,
        cookies: dict[str, str] | None = None,
        content: bytes | AsyncIterator[bytes] | None = None,
        post_id: int | None = None,
        client: tuple[str, int] = ("192.0.2.7", 5000),
    ) -> httpx.Response:
        transport = httpx.ASGITransport(app=self.app, client=client)
        async with httpx.AsyncClient(transport=transport, base_url=SITE, cookies=cookies) as browser:
            target = f"/comments/{post_id or self.post_id()}"
            if content is not None:
                headers = {"content-type": "application/x-www-form-urlencoded"}
                return await browser.post(target, content=content, headers=headers)
            return await browser.post(target, data=form if form is not None else FORM)

    def post(self, form: dict[str, str] | None = None, **options: Any) -> httpx.Response:
        options.setdefault("cookies", self.cookie())
        return asyncio.run(self.send(form, **options))

    def get(self, path: str, method: str = "GET") -> httpx.Response:
        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=SITE) as browser:
                return await browser.request(method, path)

        return asyncio.run(run())

    def stored(self) -> list[comments.Comment]:
        return self.database.query_now(comments.listed)


def test_a_comment_is_saved_and_held_for_moderation_and_the_owner_is_mailed(database: Database) -> None:
    site = Site(database)
    response = site.post()
    assert response.status_code == 200
    assert "held for moderation" in response.text
    [saved] = site.stored()
    assert (saved.author, saved.email, saved.status, saved.post_url) == (
        "Hana",
        "hana@reader.test",
        "pending",
        POST_URL,
    )
    assert saved.html == "<p>Nice <em>post</em>!</p>\n"
    [(_sender, to, data)] = site.mailed.sent
    assert to == ["owner@example.test"]
    text = message_from_bytes(data, policy=default_policy).get_content()  # type: ignore[attr-defined]
    assert f"{SITE}/comments/{saved.id}/approve?until=" in text and "Nice *post*!" in text


def test_a_published_comment_answers_303_to_its_post_and_moves_the_blog_version(database: Database) -> None:
    site = Site(database, moderation="none")
    before = database.query_now(blog.current_version)
    response = site.post()
    [saved] = site.stored()
    assert response.status_code == 303
    assert (
        response.headers["location"]
        == f"/2024/05/%E8%87%AA%E5%AE%85%E3%82%B5%E3%83%BC%E3%83%90%E3%83%BC/#comment-{saved.id}"
    )
    assert saved.status == "published"
    assert database.query_now(blog.current_version) > before and site.drops == 1


@pytest.mark.parametrize(
    ("cookies", "reason"),
    [
        ({}, "no comment token"),
        ({COOKIE: "123.abc.forged"}, "not valid"),
        ("fresh", "very fast"),
        ("old", "too long"),
    ],
)
def test_a_form_without_a_good_token_is_refused_and_nothing_is_stored(
    database: Database, cookies: Any, reason: str
) -> None:
    site = Site(database)
    if cookies == "fresh":
        cookies = site.cookie(age=0.5)
    elif cookies == "old":
        cookies = site.cookie(age=86400 + 60)
    response = site.post(cookies=cookies)
    assert response.status_code == 403
    assert reason in response.text
    assert 'value="Hana"' in response.text  # what the reader wrote is kept in the form shown again
    assert site.stored() == [] and site.mailed.sent == []


def test_a_replayed_form_token_stores_nothing_the_second_time(database: Database) -> None:
    site = Site(database)
    cookie = site.cookie()
    assert site.post(cookies=cookie).status_code == 200
    again = site.post({**FORM, "body": "again"}, cookies=cookie)
    assert again.status_code == 403
    assert "sent already" in again.text
    assert [c.body for c in site.stored()] == ["Nice *post*!"]


def test_the_token_cookie_is_http_only_same_site_strict_and_signed() -> None:
    tokens = CommentTokens(SECRET)
    cookie = tokens.cookie(time.time(), secure=True)
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie and "Secure" in cookie
    value = cookie.partition("=")[2].partition(";")[0]
    assert tokens.nonce(value, time.time() + 3)
    assert CommentTokens("x" * 64).link_valid(1, "approve", str(int(time.time()) + 60), "sig", time.time()) is False


def test_the_least_age_of_a_token_is_what_it_says_not_up_to_a_second_more() -> None:
    tokens = CommentTokens(SECRET)
    issued = 1000.9  # kept as 1000 in whole seconds, this token would pass at 1002.0
    token = tokens.issue(issued)
    with pytest.raises(TokenRefused) as refused:
        tokens.nonce(token, issued + 1.5)
    assert refused.value.key == "fast_token"
    assert tokens.nonce(token, issued + 2.0)


def test_what_a_stranger_sends_gets_a_refusal_never_a_500(database: Database) -> None:
    """compare_digest raises on a str that is not ASCII, int() on "²" that str.isdigit() takes: each of these
    was a 500."""
    site = Site(database)
    issued = str(int((time.time() - 10) * 1000))

    async def with_cookie(cookie: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=site.app), base_url=SITE) as browser:
            headers = {"cookie": f"{COOKIE}={cookie}".encode()}  # as a browser sends it: UTF-8
            return await browser.post(f"/comments/{site.post_id()}", data=FORM, headers=headers)

    for cookie in (f"{issued}.nonce.é", f"²{issued}.nonce.sig", "é"):
        assert asyncio.run(with_cookie(cookie)).status_code == 403, cookie
    for form in ({**FORM, "parent": "²"}, {**FORM, "parent": "1" * 30}, {**FORM, "url": "http://[::1/"}):
        assert site.post(form).status_code == 400, form
    assert 'name="parent"' not in site.get(f"/comments/{site.post_id()}?reply=%C2%B2").text
    until = int(time.time()) + 60
    for query in ("until=%C2%B2&sig=x", f"until={until}&sig=%C3%A9"):
        assert site.get(f"/comments/1/approve?{query}", "POST").status_code == 403, query
    assert site.stored() == []


@pytest.mark.parametrize(
    ("form", "status", "said"),
    [
        ({**FORM, "website": "http://spam.example"}, 400, "automated"),
        ({**FORM, "body": "   "}, 400, "empty"),
        ({**FORM, "name": ""}, 400, "your name"),
        ({**FORM, "email": "not-an-address"}, 400, "email address"),
        ({**FORM, "url": "javascript:alert(1)"}, 400, "http:// or https://"),
        ({**FORM, "parent": "999"}, 400, "no comment here"),
    ],
)
def test_bad_fields_are_refused_with_a_page_saying_why(
    database: Database, form: dict[str, str], status: int, said: str
) -> None:
    site = Site(database)
    response = site.post(form)
    assert response.status_code == status
    assert said in response.text and "<form" in response.text
    assert site.stored() == []


def test_invalid_utf8_is_refused(database: Database) -> None:
    site = Site(database)
    response = site.post(content=b"name=Hana&email=hana%40reader.test&body=%FF%FE")
    assert response.status_code == 400
    assert "not valid UTF-8" in response.text
    assert site.stored() == []


def test_a_comment_just_over_the_limit_gets_413_from_our_page(database: Database) -> None:
    site = Site(database)
    response = site.post({**FORM, "body": "x" * 20001})
    assert response.status_code == 413
    assert "<html" in response.text and "20,000 bytes" in response.text
    japanese = "あ" * 6666  # 19,998 bytes, 60,000 once percent-encoded: past the global 64 KiB body cap, still taken
    assert site.post({**FORM, "body": japanese}).status_code == 200
    huge = site.post(content=b"body=" + b"x" * 200_000)
    assert huge.status_code == 413 and "<html" in huge.text

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(20):
            yield b"x" * 10_000

    chunked = site.post(content=chunks())  # type: ignore[arg-type]
    assert chunked.status_code == 413 and "<html" in chunked.text
    assert [len(c.body) for c in site.stored()] == [6666]


def test_a_draft_a_static_page_or_a_missing_post_takes_no_comment(database: Database) -> None:
    site = Site(database)
    assert site.post(post_id=site.post_id("/draft/")).status_code == 404
    about = site.post(post_id=site.post_id("/about/"))  # a static page shows no comments: none is stored
    assert about.status_code == 404 and "no post here" in about.text
    assert site.get(f"/comments/{site.post_id('/about/')}").status_code == 404
    assert site.post(post_id=9999).status_code == 404
    assert site.stored() == []


def test_more_than_five_comments_in_ten_minutes_from_one_address_get_429(database: Database) -> None:
    site = Site(database, moderation="none")
    for number in range(5):
        assert site.post({**FORM, "body": f"comment {number}"}).status_code == 303
    response = site.post({**FORM, "body": "one too many"})
    assert response.status_code == 429
    assert "Too many comments" in response.text
    assert site.post({**FORM, "body": "from elsewhere"}, client=("198.51.100.9", 1)).status_code == 303
    assert len(site.stored()) == 6


def test_the_rate_limit_counts_an_ipv6_client_by_its_64(database: Database) -> None:
    site = Site(database, moderation="none")
    for number in range(5):  # a spammer's server takes a new address of its /64 for each comment
        client = (f"2001:db8:1:2::{number + 1:x}", 1)
        assert site.post({**FORM, "body": f"comment {number}"}, client=client).status_code == 303
    assert site.post({**FORM, "body": "again"}, client=("2001:db8:1:2::99", 1)).status_code == 429
    assert site.post({**FORM, "body": "neighbour"}, client=("2001:db8:1:3::1", 1)).status_code == 303
    counted = database.query_now(lambda s: s.run("SELECT DISTINCT address FROM comments"))
    assert {row[0] for row in counted} == {"2001:db8:1:2::/64", "2001:db8:1:3::/64"}


def test_first_moderation_publishes_a_name_and_email_once_approved(database: Database) -> None:
    site = Site(database, moderation="first")
    site.post()
    [first] = site.stored()
    assert first.status == "pending"
    with database.transaction() as connection:
        comments.set_status(connection, first.id, "published")
    assert site.post({**FORM, "body": "second"}).status_code == 303
    assert site.post({**FORM, "email": "other@reader.test", "body": "third"}).status_code == 200
    assert [c.status for c in site.stored()] == ["published", "published", "pending"]


def test_more_than_two_links_are_held_whatever_the_moderation(database: Database) -> None:
    site = Site(database, moderation="none")
    body = "see https://a.example and https://b.example and [c](https://c.example)"
    assert site.post({**FORM, "body": body}).status_code == 200
    assert site.stored()[0].status == "pending"


@pytest.mark.parametrize(
    ("moderation", "verdict", "links", "before", "status", "reason"),
    [
        ("none", "ham", 0, False, "published", ""),
        ("all", "ham", 0, True, "pending", 'Every comment waits for approval (moderation "all").'),
        ("first", "ham", 0, False, "pending", 'First comment from this author (moderation "first").'),
        ("first", "ham", 0, True, "published", ""),
        ("first", "ham", 3, True, "pending", "It has 3 links (more than 2 are always held)."),
        ("none", "hold", 0, False, "pending", "The spam filter asked for it to be held."),
        ("none", "spam", 0, False, "spam", "The spam filter judged it spam."),
    ],
)
def test_moderation_rules(moderation: str, verdict: Any, links: int, before: bool, status: str, reason: str) -> None:
    assert status_for(moderation, verdict, links, before) == (status, reason)


@pytest.mark.parametrize(
    ("moderation", "verdict", "why", "status", "reason"),
    [
        (
            "none",
            "hold",
            "rspamd: score 7.2",
            "pending",
            "The spam filter asked for it to be held (rspamd: score 7.2).",
        ),
        (
            "none",
            "ham",
            "not checked (rspamd unavailable)",
            "published",
            "Spam filter: not checked (rspamd unavailable).",
        ),
        (
            "all",
            "ham",
            "not checked (spamassassin unavailable)",
            "pending",
            'Every comment waits for approval (moderation "all"). Spam filter: not checked (spamassassin unavailable).',
        ),
    ],
)
def test_the_filter_s_reason_is_kept_for_the_owner(
    moderation: str, verdict: Any, why: str, status: str, reason: str
) -> None:
    assert status_for(moderation, verdict, 0, False, why) == (status, reason)


def test_a_held_comment_keeps_why_it_was_held_for_the_owner(database: Database) -> None:
    site = Site(database, moderation="all")
    site.post()
    [held] = site.stored()
    assert (held.status, held.reason) == ("pending", 'Every comment waits for approval (moderation "all").')
    assert held.post_title == "自宅サーバー"


def test_replies_nest_one_level_under_a_published_comment(database: Database) -> None:
    site = Site(database, moderation="none")
    site.post()
    [top] = site.stored()
    assert site.post({**FORM, "body": "a reply", "parent": str(top.id)}).status_code == 303
    reply = site.stored()[1]
    nested = site.post({**FORM, "body": "a reply to a reply", "parent": str(reply.id)})
    assert nested.status_code == 400
    shown = database.query_now(lambda s: comments.published(s, site.post_id()))
    assert [(c.body, [r.body for r in c.replies]) for c in shown] == [("Nice *post*!", ["a reply"])]
    page = site.get(f"/comments/{site.post_id()}?reply={top.id}")
    assert f'name="parent" value="{top.id}"' in page.text and "a reply" in page.text
    assert COOKIE in page.headers["set-cookie"]


def test_a_spam_verdict_is_kept_as_spam_and_nobody_is_mailed(database: Database) -> None:
    class Spam:
        async def verdict(self, comment: comments.NewComment) -> Judgement:
            return Judgement("spam", "rspamd: GTUBE")

    site = Site(database, moderation="none")
    site.comments = Comments(site.settings, database, site.tokens, None, Spam())
    site.app = Starlette(routes=site.comments.routes())
    assert site.post().status_code == 200
    assert [(c.status, c.reason) for c in site.stored()] == [
        ("spam", "The spam filter judged it spam (rspamd: GTUBE).")
    ]
    assert site.mailed.sent == []


def test_the_mailed_approve_link_shows_a_button_and_only_its_post_approves(database: Database) -> None:
    site = Site(database)
    site.post()
    [(_sender, _to, data)] = site.mailed.sent
    text = message_from_bytes(data, policy=default_policy).get_content()  # type: ignore[attr-defined]
    link = re.search(r"https://blog\.example\.test(/comments/\d+/approve\?\S+)", text)
    assert link is not None
    path = link.group(1)
    shown = site.get(path)
    assert shown.status_code == 200 and '<form method="post"' in shown.text
    assert site.stored()[0].status == "pending" and site.drops == 0  # a GET (a mail scanner's) changes nothing
    forged = site.get(path.replace("approve", "spam"), "POST")
    assert forged.status_code == 403
    done = site.get(path, "POST")
    assert done.status_code == 200 and "is published" in done.text
    assert site.stored()[0].status == "published" and site.drops == 1


def test_what_a_reader_wrote_is_shown_escaped(database: Database) -> None:
    site = Site(database, moderation="none")
    site.post({**FORM, "name": "<b>Mallory</b>", "url": "https://m.example/?a=1&b=<x>", "body": "<script>x</script>"})
    page = site.get(f"/comments/{site.post_id()}").text
    assert "<b>Mallory</b>" not in page and "&lt;b&gt;Mallory&lt;/b&gt;" in page
    assert "<script>x" not in page and 'href="https://m.example/?a=1&amp;b=&lt;x&gt;"' in page


def test_a_post_page_carries_the_form_its_comments_and_a_token_of_its_own_for_each_reader(database: Database) -> None:
    helper = Site(database, moderation="none")
    cache = PageCache(database)
    written = Comments(helper.settings, database, helper.tokens, None, changed=cache.invalidate)
    routes = [*written.routes(), *Pages(helper.settings, database, cache, written).routes()]
    app = FastPages(SecurityHeaders(Starlette(routes=routes)), cache)
    address = "/2024/05/%E8%87%AA%E5%AE%85%E3%82%B5%E3%83%BC%E3%83%90%E3%83%BC/"

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=SITE) as browser:
            first, kept = await browser.get(address), await browser.get(address)
            sent = await browser.post(f"/comments/{helper.post_id()}", data=FORM, cookies=helper.cookie())
            return [first, kept, sent, await browser.get(address)]

    first, kept, sent, after = asyncio.run(run())
    assert (
        f'<form class="comment-form" id="comment-form" method="post" action="/comments/{helper.post_id()}">'
        in first.text
    )
    tokens = [response.headers["set-cookie"] for response in (first, kept)]
    assert tokens[0] != tokens[1]  # the kept page, shared by every reader, still gives each a token of their own
    for cookie in tokens:
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
        assert helper.tokens.nonce(cookie.partition("=")[2].partition(";")[0], time.time() + 3)
    assert sent.status_code == 303 and "Nice <em>post</em>!" not in first.text
    assert "Nice <em>post</em>!" in after.text  # the kept page dropped at once


def test_a_replayed_token_or_a_busy_address_is_refused_before_the_comment_is_rendered_off_the_loop(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.blog import comment_text

    rendered_in: list[threading.Thread] = []
    render = comment_text.render

    def counted(body: str) -> str:
        rendered_in.append(threading.current_thread())
        return render(body)

    monkeypatch.setattr(comment_text, "render", counted)
    site = Site(database, moderation="none")
    cookie = site.cookie()
    assert site.post(cookies=cookie).status_code == 303
    assert rendered_in and all(thread is not threading.main_thread() for thread in rendered_in)  # not the loop's
    replayed = site.post({**FORM, "body": "[" * 20000}, cookies=cookie)  # slow to render: never rendered
    assert replayed.status_code == 403 and "sent already" in replayed.text
    for number in range(4):
        assert site.post({**FORM, "body": f"comment {number}"}).status_code == 303
    assert len(rendered_in) == 5
    busy = site.post({**FORM, "body": "*_" * 10000})
    assert busy.status_code == 429 and len(rendered_in) == 5
    assert len(site.stored()) == 5


def test_a_failing_notification_is_logged_and_the_reader_still_hears_saved(
    database: Database, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken() -> str:
        raise RuntimeError("accounts unreadable")

    site = Site(database)
    monkeypatch.setattr(site.comments._mail, "owner", broken)
    with caplog.at_level(logging.INFO, logger="jitaku"):
        response = site.post()
    [saved] = site.stored()
    assert response.status_code == 200 and "held for moderation" in response.text
    [line] = [r.getMessage() for r in caplog.records if "comment_not_notified" in r.getMessage()]
    assert f"comment={saved.id}" in line and "accounts unreadable" in line
    again = site.post({**FORM, "body": "second"})
    assert again.status_code == 200 and len(site.stored()) == 2


def test_the_owner_is_mailed_before_the_reader_has_the_answer(database: Database) -> None:
    """The owner's mail is committed before "saved" reaches the reader: a crash after the answer loses neither the
    comment nor the owner's word of it (it was sent after the answer, and a kill -9 just then lost it)."""
    site = Site(database)
    answered: list[bool] = []  # whether any of the answer was sent when the mail went
    heard: list[Message] = []
    app = site.app

    async def watched(scope: Scope, receive: Receive, send: Send) -> None:
        async def sent(message: Message) -> None:
            heard.append(message)
            await send(message)

        await app(scope, receive, sent)

    async def mail(sender: str, to: list[str], data: bytes) -> bool:
        answered.append(any(m["type"].startswith("http.response") for m in heard))
        return True

    site.mailed.send = mail  # type: ignore[method-assign]
    site.app = watched  # type: ignore[assignment]
    assert site.post().status_code == 200
    assert answered == [False]


def test_an_old_approve_link_changes_nothing_once_the_owner_has_decided(database: Database) -> None:
    site = Site(database)
    site.post()
    [(_sender, _to, data)] = site.mailed.sent
    text = message_from_bytes(data, policy=default_policy).get_content()  # type: ignore[attr-defined]
    link = re.search(r"https://blog\.example\.test(/comments/\d+/approve\?\S+)", text)
    assert link is not None
    [comment] = site.stored()
    with database.transaction() as connection:  # what `jitaku blog comments spam ID` does
        comments.set_status(connection, comment.id, "spam")
    shown = site.get(link.group(1))
    assert "already" in shown.text and '<form method="post"' not in shown.text
    done = site.get(link.group(1), "POST")
    assert done.status_code == 409 and "is marked as spam already" in done.text
    assert "処理済みです (Decided already)" in done.text  # the owner's pages speak the blog's language too
    assert site.stored()[0].status == "spam" and site.drops == 0


def test_the_form_and_its_pages_speak_the_blogs_language(database: Database) -> None:
    japanese = Site(database, language="ja")
    form = japanese.get(f"/comments/{japanese.post_id()}").text
    assert '<h2 id="comments-heading">コメント (Comments)</h2>' in form
    assert "コメントを書く (Write a comment)" in form and "送信 (Send)" in form
    refused = japanese.post({**FORM, "name": ""}).text
    assert "保存されませんでした (Not saved): 名前を入れてください。 (Please give your name.)" in refused
    assert "コメント用のトークン" in japanese.post(cookies={}).text
    held = japanese.post().text
    assert "保存しました (Saved)" in held and "管理者が承認すると表示されます" in held

    english = Site(database, language="en-GB")
    form = english.get(f"/comments/{english.post_id()}").text
    assert '<h2 id="comments-heading">Comments</h2>' in form and ">Write a comment<" in form
    assert "コメント" not in form and "送信" not in form
    # the honeypot is a hidden input (CONTRACTS: a browser, or a script, that sends the form as served passes)
    assert '<input type="hidden" name="website" value="">' in form and "style=" not in form
    refused = english.post({**FORM, "name": ""}, client=("198.51.100.9", 1)).text
    assert "Not saved: Please give your name." in refused and "保存" not in refused
