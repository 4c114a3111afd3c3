"""The blog's feeds, sitemap and robots.txt as a feed reader and a search engine read them: feedparser finds
no fault, titles stay Japanese, links are absolute and percent-encoded, drafts and pages never show, a reader's
email never leaves the database, and a change to the blog shows within two seconds."""

from __future__ import annotations

import asyncio
import re
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import feedparser
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from starlette.applications import Starlette

from jitaku.config import Settings
from jitaku.store import Database, blog
from jitaku.web import feeds
from jitaku.web.page_cache import CHECK_EVERY, FastPages, PageCache
from jitaku.web.site_info import SiteInfo
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

BASE = "https://blog.example.test"
SETTINGS = Settings(
    domains=["example.test"],
    web={"url": BASE + "/"},
    blog={"title": "自宅サーバー日記", "description": "家のサーバーの話", "language": "ja"},
)
DAY = 86400.0
START = 1717000000.0  # 2024-05-29


def new_post(number: int, title: str, tags: tuple[str, ...] = (), draft: bool = False, **fields: Any) -> blog.NewPost:
    values: dict[str, Any] = {
        "path": f"{number}.md",
        "url": f"/2024/06/post-{number}/",
        "title": title,
        "slug": f"post-{number}",
        "published_at": START + number * DAY,
        "draft": draft,
        "source": "body",
        "html": f'<p>本文 {number} <img src="/media/2024/写真.jpg" alt=""></p>\n',
        "tags": tags,
    }
    values.update(fields)
    return blog.NewPost(**values)


def imported(database: Database, *posts: blog.NewPost) -> None:
    with database.transaction() as connection:
        blog.import_posts(connection, posts, START + 100 * DAY)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """22 published posts (the newest tagged 自宅サーバー, one 日記), a draft, an About page, two comments."""
    database = Database(database_url(tmp_path))
    posts = [new_post(n, f"投稿その{n}", ("日記",)) for n in range(1, 21)]
    posts.append(new_post(21, "自宅サーバーを建てた", ("自宅サーバー", "日記"), url="/2024/06/自宅サーバー/"))
    posts.append(new_post(22, 'Tom & Jerry <script>alert("x")</script>\x0b', ("自宅サーバー",)))
    posts.append(new_post(30, "下書き", ("自宅サーバー",), draft=True))
    posts.append(new_post(31, "このサイトについて", (), url="/about/"))
    imported(database, *posts)
    with database.transaction() as connection:
        connection.execute(text("UPDATE posts SET kind = 'page' WHERE url = '/about/'"))
        post_id = connection.execute(text("SELECT id FROM posts WHERE slug = 'post-21'")).scalar_one()
        for number, status in ((1, "published"), (2, "pending")):
            connection.execute(
                text(
                    "INSERT INTO comments (post_id, author, email, url, body, html, status, address, nonce,"
                    " created_at) VALUES (:post, :author, :email, :url, 'body', :html, :status, '192.0.2.1',"
                    " :nonce, :at)"
                ),
                {
                    "post": post_id,
                    "author": f"読者{number}",
                    "email": f"reader{number}@secret.test",
                    "url": "javascript:alert(1)" if number == 1 else "https://reader.test/",
                    "html": f"<p>コメント{number}</p>",
                    "status": status,
                    "nonce": f"nonce-{number}",
                    "at": START + 200 * DAY + number,
                },
            )
    yield database
    database.close()


def app_of(database: Database, cache: PageCache | None = None) -> FastPages:
    """The feeds as the daemon serves them: kept in the site's PageCache, a kept one answered by FastPages."""
    cache = cache or PageCache(database)
    return FastPages(Starlette(routes=feeds.routes(SETTINGS, database, cache)), cache)


async def _fetch(database: Database, *paths: str, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    app = app_of(database)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        return [await client.get(path, headers=headers) for path in paths]


def fetch(database: Database, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return asyncio.run(_fetch(database, path, headers=headers))[0]


def parsed(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    feed = feedparser.parse(response.content)
    assert feed.bozo == 0, feed.get("bozo_exception")
    return feed


def test_the_atom_feed_has_the_20_newest_posts_in_japanese_with_absolute_links(database: Database) -> None:
    response = fetch(database, "/feed.atom")
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert "自宅サーバーを建てた".encode() in response.content  # UTF-8, not character references
    feed = parsed(response)
    assert feed.version == "atom10"
    assert feed.feed.title == "自宅サーバー日記"
    assert feed.feed.subtitle == "家のサーバーの話"
    assert feed.feed.language == "ja"
    assert feed.feed.author == "自宅サーバー日記"
    assert {link.href for link in feed.feed.links if link.rel == "self"} == {f"{BASE}/feed.atom"}
    titles = [entry.title for entry in feed.entries]
    assert len(titles) == 20
    assert titles[:2] == ['Tom & Jerry <script>alert("x")</script>', "自宅サーバーを建てた"]
    assert "下書き" not in titles and "このサイトについて" not in titles  # neither a draft nor a page
    assert "投稿その1" not in titles and "投稿その2" not in titles  # older than the 20 newest
    jitaku = feed.entries[1]
    assert jitaku.link == f"{BASE}/2024/06/%E8%87%AA%E5%AE%85%E3%82%B5%E3%83%BC%E3%83%90%E3%83%BC/"
    assert jitaku.id == jitaku.link
    assert [tag.term for tag in jitaku.tags] == ["自宅サーバー", "日記"]
    assert jitaku.published_parsed[:3] == (2024, 6, 19)  # START + 21 days
    assert jitaku.content[0].type == "text/html"
    # The photo's relative link, resolved against the site
    assert f'src="{BASE}/media/2024/写真.jpg"' in jitaku.content[0].value


def test_the_rss_feed_has_the_same_posts_with_rfc_822_dates(database: Database) -> None:
    response = fetch(database, "/feed.rss")
    assert response.headers["content-type"] == "application/rss+xml; charset=utf-8"
    feed = parsed(response)
    assert feed.version == "rss20"
    assert feed.feed.title == "自宅サーバー日記"
    assert feed.feed.link == f"{BASE}/"
    assert feed.feed.language == "ja"
    assert len(feed.entries) == 20
    jitaku = feed.entries[1]
    assert jitaku.title == "自宅サーバーを建てた"
    assert jitaku.link.startswith(f"{BASE}/2024/06/%E8%87%AA")
    assert jitaku.id == jitaku.link
    assert jitaku.published == "Wed, 19 Jun 2024 16:26:40 GMT"
    assert "本文 21" in jitaku.summary


def test_a_tags_feeds_have_only_its_posts_and_an_unknown_tag_is_404(database: Database) -> None:
    tag = "/tags/%E8%87%AA%E5%AE%85%E3%82%B5%E3%83%BC%E3%83%90%E3%83%BC"  # 自宅サーバー
    atom = parsed(fetch(database, f"{tag}/feed.atom"))
    assert [entry.title for entry in atom.entries] == [
        'Tom & Jerry <script>alert("x")</script>',
        "自宅サーバーを建てた",
    ]
    assert atom.feed.title == "自宅サーバー | 自宅サーバー日記"
    assert {link.href for link in atom.feed.links if link.rel == "self"} == {f"{BASE}{tag}/feed.atom"}
    assert atom.feed.link == f"{BASE}{tag}/"
    rss = parsed(fetch(database, f"{tag}/feed.rss"))
    assert [entry.title for entry in rss.entries] == [entry.title for entry in atom.entries]
    decomposed = "/tags/" + unicodedata.normalize("NFD", "自宅サーバー")  # as a Mac may send it
    moved = fetch(database, f"{decomposed}/feed.atom")
    assert moved.status_code == 301 and moved.headers["location"] == f"{tag}/feed.atom"  # one URL, kept once
    assert fetch(database, "/tags/nothing/feed.atom").status_code == 404
    assert fetch(database, "/tags/nothing/feed.rss").status_code == 404


def test_the_comments_feed_has_published_comments_and_never_an_email(database: Database) -> None:
    response = fetch(database, "/comments/feed.atom")
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    assert b"secret.test" not in response.content
    assert b"javascript:" not in response.content
    feed = parsed(response)
    assert feed.feed.title == "コメント | 自宅サーバー日記"
    assert [entry.title for entry in feed.entries] == ["読者1: 自宅サーバーを建てた"]  # the pending one is not
    comment = feed.entries[0]
    assert comment.author == "読者1"
    assert comment.link.startswith(f"{BASE}/2024/06/%E8%87%AA") and comment.link.endswith("/#comment-1")
    assert comment.content[0].value == "<p>コメント1</p>"


def test_the_sitemap_lists_home_posts_pages_and_tag_and_month_archives(database: Database) -> None:
    response = fetch(database, "/sitemap.xml")
    assert response.headers["content-type"] == "application/xml; charset=utf-8"
    namespace = "{http://www.sitemaps.org/schemas/sitemap/0.9}"
    urls = {
        url.findtext(f"{namespace}loc"): url.findtext(f"{namespace}lastmod")
        for url in ElementTree.fromstring(response.content).iter(f"{namespace}url")
    }
    assert f"{BASE}/" in urls
    assert f"{BASE}/about/" in urls  # a page
    assert f"{BASE}/2024/06/post-1/" in urls  # every post, not only the newest 20
    assert f"{BASE}/2024/06/%E8%87%AA%E5%AE%85%E3%82%B5%E3%83%BC%E3%83%90%E3%83%BC/" in urls
    assert f"{BASE}/tags/%E6%97%A5%E8%A8%98/" in urls  # 日記
    assert f"{BASE}/2024/06/post-30/" not in urls  # the draft
    assert f"{BASE}/2024/05/" in urls and f"{BASE}/2024/06/" in urls  # the months' archives
    assert len(urls) == 1 + 23 + 2 + 2
    assert all(lastmod and lastmod.endswith("Z") for lastmod in urls.values())


def test_robots_allows_all_but_the_owners_pages_and_names_the_sitemap(database: Database) -> None:
    response = fetch(database, "/robots.txt")
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    lines = response.text.splitlines()
    assert lines[0] == "User-agent: *"
    assert {"Disallow: /admin/", "Disallow: /api/", f"Sitemap: {BASE}/sitemap.xml"} <= set(lines)


def test_a_change_to_the_blog_shows_within_two_seconds_and_an_unchanged_feed_is_304(database: Database) -> None:
    async def run() -> tuple[httpx.Response, ...]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app_of(database)), base_url="http://x"
        ) as client:
            first = await client.get("/feed.atom")
            again = await client.get("/feed.atom", headers={"if-none-match": first.headers["etag"]})
            imported(database, new_post(40, "新しい投稿"))
            time.sleep(CHECK_EVERY + 0.1)
            changed = await client.get("/feed.atom", headers={"if-none-match": first.headers["etag"]})
            return first, again, changed

    first, again, changed = asyncio.run(run())
    assert again.status_code == 304 and not again.content
    assert changed.status_code == 200
    assert parsed(changed).entries[0].title == "新しい投稿"
    assert changed.headers["etag"] != first.headers["etag"]


def test_the_feeds_are_kept_with_the_pages_gzipped_and_dropped_with_them_at_once(database: Database) -> None:
    """A comment the daemon publishes drops the site's pages at once (PageCache.invalidate): the feeds with them."""

    async def run() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        cache = PageCache(database)
        transport = httpx.ASGITransport(app=app_of(database, cache))
        async with httpx.AsyncClient(transport=transport, base_url="http://x") as client:
            zipped = await client.get("/feed.atom", headers={"accept-encoding": "gzip"})
            first = await client.get("/comments/feed.atom")
            with database.transaction() as connection:
                connection.execute(text("UPDATE comments SET status = 'published' WHERE author = '読者2'"))
            cache.invalidate()
            return zipped, first, await client.get("/comments/feed.atom")

    zipped, first, now = asyncio.run(run())
    assert zipped.headers["content-encoding"] == "gzip" and parsed(zipped).entries
    assert [entry.author for entry in parsed(first).entries] == ["読者1"]
    assert [entry.author for entry in parsed(now).entries] == ["読者2", "読者1"]


SITE = SiteInfo.of(SETTINGS)
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # XML 1.0 §2.2


@settings(max_examples=60, deadline=None)
@given(title=st.text(), html=st.text(), tag=st.text(min_size=1))
def test_any_text_a_post_may_hold_makes_a_well_formed_feed(title: str, html: str, tag: str) -> None:
    """Control characters XML forbids, lone surrogates, markup: the feed stays one that parses, text intact."""
    entries = [feeds.Entry(f"{BASE}/a/", title, html, START, START, (tag,))]
    for make, title_path in (
        (feeds.atom, "{http://www.w3.org/2005/Atom}entry/{http://www.w3.org/2005/Atom}title"),
        (feeds.rss, "channel/item/title"),
    ):
        body = make(SITE, title, f"{BASE}/feed", f"{BASE}/", entries)
        found = ElementTree.fromstring(body).findtext(title_path)
        kept = NOT_XML.sub("", title).replace("\r\n", "\n").replace("\r", "\n")
        assert found == kept
        assert feedparser.parse(body).bozo == 0


def test_the_sitemap_and_the_feeds_are_read_and_built_off_the_event_loop(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[str, bool]] = []

    def on_loop() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    for name in ("sitemap", "atom", "rss"):
        made = getattr(feeds, name)

        def recorded(*args: Any, _name: str = name, _made: Any = made) -> bytes:
            built.append((_name, on_loop()))
            document: bytes = _made(*args)
            return document

        monkeypatch.setattr(feeds, name, recorded)
    paths = ("/sitemap.xml", "/feed.atom", "/feed.rss", "/tags/日記/feed.atom", "/comments/feed.atom")
    assert [response.status_code for response in asyncio.run(_fetch(database, *paths))] == [200] * 5
    assert built == [("sitemap", False), ("atom", False), ("rss", False), ("atom", False), ("atom", False)]
