"""The running daemon's feeds, sitemap and robots.txt, fetched over HTTP as a feed reader and a search engine
do, and a post imported with the CLI reaching the feed within 2 s."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import feedparser
import httpx
import pytest

from tests.integration.harness import Jitaku

PUBLIC = "https://blog.example.test"
SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
FIRST = (
    "---\ntitle: 自宅サーバーを建てた\ndate: 2024-06-10\ntags: [自宅サーバー, 日記]\nslug: jitaku\n---\n本文です。\n"
)
SECOND = "---\ntitle: 梅雨の日記\ndate: 2024-06-20\ntags: [日記]\nslug: tsuyu\n---\n雨。\n"


@pytest.fixture
def blog(jitaku_factory: Any, tmp_path: Path) -> tuple[Jitaku, Path]:
    """A running jitaku whose site is at PUBLIC, with two posts imported, and the directory they came from."""
    instance: Jitaku = jitaku_factory()
    instance.settings["web"]["url"] = PUBLIC
    instance.settings["blog"] = {"title": "自宅サーバー日記", "timezone": "Asia/Tokyo"}
    instance.write_config()
    instance.init("alice@example.test")
    posts = tmp_path / "posts"
    posts.mkdir()
    (posts / "jitaku.md").write_text(FIRST)
    (posts / "tsuyu.md").write_text(SECOND)
    instance.cli("blog", "import", str(posts))
    instance.start()
    return instance, posts


def get(server: Jitaku, path: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.web_port}{path}", timeout=10)


def feed(server: Jitaku, path: str) -> Any:
    response = get(server, path)
    assert response.status_code == 200, response.text
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    return parsed


def test_feeds_sitemap_and_robots_of_the_running_site(blog: tuple[Jitaku, Path]) -> None:
    server, _ = blog
    for path in ("/feed.atom", "/feed.rss"):
        parsed = feed(server, path)
        assert parsed.feed.title == "自宅サーバー日記"
        assert [entry.title for entry in parsed.entries] == ["梅雨の日記", "自宅サーバーを建てた"]
        assert [entry.link for entry in parsed.entries] == [f"{PUBLIC}/2024/06/tsuyu/", f"{PUBLIC}/2024/06/jitaku/"]
    tag = feed(server, "/tags/%E8%87%AA%E5%AE%85%E3%82%B5%E3%83%BC%E3%83%90%E3%83%BC/feed.atom")
    assert [entry.title for entry in tag.entries] == ["自宅サーバーを建てた"]
    assert get(server, "/tags/nothing/feed.rss").status_code == 404
    assert feed(server, "/comments/feed.atom").entries == []
    sitemap = get(server, "/sitemap.xml")
    assert sitemap.headers["content-type"] == "application/xml; charset=utf-8"
    locs = {loc.text for loc in ElementTree.fromstring(sitemap.content).iter(f"{{{SITEMAP_NS}}}loc")}
    assert {f"{PUBLIC}/", f"{PUBLIC}/2024/06/jitaku/", f"{PUBLIC}/tags/%E6%97%A5%E8%A8%98/"} <= locs
    robots = get(server, "/robots.txt")
    assert f"Sitemap: {PUBLIC}/sitemap.xml" in robots.text.splitlines()
    assert "x-content-type-options" in robots.headers  # the daemon's security headers, as on every answer


def test_a_post_imported_with_the_cli_reaches_the_feed_within_2_seconds(blog: tuple[Jitaku, Path]) -> None:
    server, posts = blog
    assert len(feed(server, "/feed.atom").entries) == 2  # kept in memory from now on
    (posts / "new.md").write_text("---\ntitle: 新しい投稿\ndate: 2024-07-01\n---\n新しい。\n")
    server.cli("blog", "import", str(posts))
    imported = time.monotonic()
    while feed(server, "/feed.atom").entries[0].title != "新しい投稿":
        assert time.monotonic() - imported < 2.0, "the feed still shows the blog as it was"
        time.sleep(0.1)


def test_check_links_finds_the_running_site_by_itself_and_every_link_of_it_answers(blog: tuple[Jitaku, Path]) -> None:
    """With no --url, at the address ports.json gives; from / and the sitemap's URLs."""
    server, _ = blog
    result = server.cli("web", "check-links", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    checked = re.search(r"^all (\d+) internal URLs answer 200", result.stdout.strip())
    assert checked, result.stdout
    assert int(checked.group(1)) >= 5  # /, two posts and two tags from the sitemap
