"""A post dated ahead (scheduled in the admin's editor) is on no page of the site until its time: not on the home
page, its tag's or month's archive, its own URL, the feeds or the sitemap, and it takes no comment; once the time
passes it is on all of them, from the same running site with its pages kept (no restart, no write to the blog)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from jitaku.config import Settings
from jitaku.store import Database, blog, comments
from jitaku.web import feeds
from jitaku.web.page_cache import FastPages, PageCache
from jitaku.web.site import Site

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

SETTINGS = Settings(
    domains=["example.test"], web={"url": "https://blog.example.test/"}, blog={"timezone": "Asia/Tokyo"}
)
TAG = "予約"
AHEAD = 2.0  # seconds


def post(path: str, title: str, published_at: float) -> blog.NewPost:
    month = datetime.fromtimestamp(published_at, ZoneInfo("Asia/Tokyo")).strftime("%Y/%m")
    slug = path.removesuffix(".md")
    return blog.NewPost(
        path, f"/{month}/{slug}/", title, slug, published_at, False, "本文", f"<p>{title}の本文</p>", tags=(TAG,)
    )


@pytest.fixture
def site(database: Database) -> Iterator[tuple[TestClient, Database, float]]:
    now = time.time()
    with database.transaction() as connection:
        blog.import_posts(
            connection, [post("today.md", "今日の記事", now - 60), post("soon.md", "予約した記事", now + AHEAD)], now
        )
    cache = PageCache(database)
    routes = [*feeds.routes(SETTINGS, database, cache), *Site(SETTINGS, database, cache).routes()]
    with TestClient(FastPages(Starlette(routes=routes), cache), base_url="https://blog.example.test") as client:
        yield client, database, now + AHEAD


def pages(client: TestClient, due: float) -> dict[str, str]:
    month = datetime.fromtimestamp(due, ZoneInfo("Asia/Tokyo")).strftime("/%Y/%m/")
    paths = ["/", f"/tags/{TAG}/", month, "/feed.atom", "/feed.rss", f"/tags/{TAG}/feed.atom", "/sitemap.xml"]
    return {path: client.get(path).text for path in paths}


def test_a_scheduled_post_appears_everywhere_once_its_time_passes_without_a_restart(
    site: tuple[TestClient, Database, float],
) -> None:
    client, database, due = site
    url = database.query_now(lambda s: next(p.url for p in blog.posts(s) if p.title == "予約した記事"))
    post_id = database.query_now(lambda s: next(p.id for p in blog.posts(s) if p.title == "予約した記事"))
    before = pages(client, due)
    for path, text in before.items():
        assert "今日の記事" in text or path == "/sitemap.xml", path
        assert "予約した記事" not in text and "soon" not in text, path
    assert client.get(url).status_code == 404
    assert database.query_now(lambda s: comments.open_post(s, post_id, time.time())) is None
    assert client.get(url).status_code == 404  # asked again: the 404 was not kept either

    while time.time() < due + 1.5:  # the page cache looks at most once a second
        if "予約した記事" in client.get("/").text:
            break
        time.sleep(0.1)
    after = pages(client, due)
    for path, text in after.items():
        assert "予約した記事" in text or "soon" in text, path
    page = client.get(url)
    assert page.status_code == 200 and "予約した記事の本文" in page.text
    assert database.query_now(lambda s: comments.open_post(s, post_id, time.time())) == url


def test_nothing_is_dropped_before_a_scheduled_post_is_due(database: Database, tmp_path: Path) -> None:
    """The pages are kept while no post comes due: a post a day ahead costs no drawing of the home page."""
    now = time.time()
    with database.transaction() as connection:
        blog.import_posts(connection, [post("today.md", "今日", now - 60), post("later.md", "明日", now + 86400)], now)
    cache = PageCache(database)
    site = Site(SETTINGS, database, cache)
    with TestClient(FastPages(Starlette(routes=site.routes()), cache)) as client:
        assert "今日" in client.get("/").text
        kept = cache.generation
        time.sleep(1.1)
        assert "明日" not in client.get("/").text
        assert cache.generation == kept
