"""The blog's pages as a reader gets them (issue 21, "What a reader can do"): the home page with its feeds and
tag links, post pages at their Unicode URLs, archives, static pages, media, old URLs answered 301, a readable
404; and the kept pages: ETag and 304, gzip, dropped when the blog changes."""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from jitaku.blog.importer import media_files, read_posts
from jitaku.blog.permalink import zone
from jitaku.config import Settings
from jitaku.store import Database, blog
from jitaku.store import site as site_store
from jitaku.store.statements import Statements
from jitaku.web import comment_words
from jitaku.web.headers import SecurityHeaders
from jitaku.web.page_cache import FastPages, Page, PageCache
from jitaku.web.site import Site
from jitaku.web.site_info import SiteInfo

TAG = "自宅サーバー"
TAG_PATH = "/tags/%E8%87%AA%E5%AE%85%E3%82%B5%E3%83%BC%E3%83%90%E3%83%BC/"


def write(root: Path, path: str, text: str | bytes) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(text.encode() if isinstance(text, str) else text)


def post(root: Path, path: str, title: str, date: str, tags: str = "[]", body: str = "本文", **more: str) -> None:
    extra = "".join(f"{key}: {value}\n" for key, value in more.items())
    write(root, path, f"---\ntitle: {title}\ndate: {date}\ntags: {tags}\n{extra}---\n{body}\n")


def import_dir(database: Database, settings: Settings, root: Path) -> blog.Imported:
    found = read_posts(root, settings.blog.permalink, zone(settings.blog.timezone))
    with database.transaction() as connection:
        done = blog.import_posts(connection, found, 1000.0)
        for file, path, kind in media_files(root):
            blog.put_media(connection, path, kind, file.read_bytes(), 1000.0)
    return done


@pytest.fixture
def settings() -> Settings:
    return Settings.model_validate(
        {
            "domains": ["example.test"],
            "web": {"url": "https://blog.example.test"},
            "blog": {"timezone": "Asia/Tokyo", "title": "自宅日記", "posts_per_page": 2},
        }
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "blog"
    post(
        root,
        "2024/server.md",
        "サーバーを建てた",
        "2024-05-01T00:30:00",
        f"[{TAG}, 日記]",
        "![ラック](rack.png)\n\nラックに載せた。",
    )
    post(root, "2024/disk.md", "ディスク交換", "2024-05-20", f"[{TAG}]")
    post(root, "2024/summer.md", "夏", "2024-07-01", "[日記]")
    post(root, "2024/draft.md", "下書き", "2024-08-01", f"[{TAG}]", draft="true")
    write(root, "2024/rack.png", b"\x89PNG\r\n\x1a\nrack")
    write(root, "pages/about.md", "---\ntitle: このサイトについて\n---\n管理人です。\n")
    return root


@pytest.fixture
def client(database: Database, settings: Settings, root: Path) -> Iterator[TestClient]:
    import_dir(database, settings, root)
    cache = PageCache(database)
    app = FastPages(SecurityHeaders(Starlette(routes=Site(settings, database, cache).routes())), cache)
    with TestClient(app, base_url="https://blog.example.test") as client:
        yield client


def test_the_home_page_shows_the_newest_posts_with_their_tags_linked_and_its_feeds(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    text = page.text
    assert '<html lang="ja">' in text
    assert text.index("夏") < text.index("ディスク交換")  # newest first
    assert "サーバーを建てた" not in text  # on the next page (2 a page)
    assert "下書き" not in text and "このサイトについて" not in text  # drafts and static pages never listed
    assert f'<a href="{TAG_PATH}" rel="tag">#{TAG}</a>' in text
    assert '<link rel="alternate" type="application/atom+xml" title="自宅日記 (Atom)" href="/feed.atom">' in text
    assert 'type="application/rss+xml"' in text and 'href="/feed.rss"' in text
    assert '<link rel="canonical" href="https://blog.example.test/">' in text
    assert '<a href="/page/2/" rel="next">' in text
    older = client.get("/page/2/").text
    assert "サーバーを建てた" in older and '<a href="/" rel="prev">' in older
    assert client.get("/page/3/").status_code == 404
    assert client.get("/page/1/", follow_redirects=False).headers["location"] == "/"


def test_a_post_at_its_unicode_url_with_its_date_in_the_blogs_time_zone_and_opengraph(client: TestClient) -> None:
    page = client.get("/2024/05/server/")  # 2024-05-01T00:30 in Tokyo is April 30th in UTC
    assert page.status_code == 200
    text = page.text
    assert "<h1>サーバーを建てた</h1>" in text
    assert '<time datetime="2024-05-01T00:30:00+09:00">2024-05-01</time>' in text
    assert '<img src="/media/2024/rack.png" alt="ラック"' in text
    assert '<meta property="og:title" content="サーバーを建てた">' in text
    assert '<meta property="og:type" content="article">' in text
    assert '<meta property="og:url" content="https://blog.example.test/2024/05/server/">' in text
    assert '<meta property="og:site_name" content="自宅日記">' in text
    assert '<meta property="og:description" content="ラックに載せた。">' in text
    assert "{% block comments %}" not in text and "<title>サーバーを建てた · 自宅日記</title>" in text
    assert client.get("/2024/08/draft/").status_code == 404  # a draft is never shown


def test_a_japanese_slug_is_found_by_its_decoded_path_and_linked_quoted(
    database: Database, settings: Settings, root: Path
) -> None:
    post(root, "2024/自宅.md", "自宅", "2024-06-01")
    import_dir(database, settings, root)
    cache = PageCache(database)
    app = FastPages(SecurityHeaders(Starlette(routes=Site(settings, database, cache).routes())), cache)
    with TestClient(app) as client:
        assert '<a href="/2024/06/%E8%87%AA%E5%AE%85/">自宅</a>' in client.get("/").text
        assert "<h1>自宅</h1>" in client.get("/2024/06/%E8%87%AA%E5%AE%85/").text


def test_a_tag_archive_and_a_month_archive_show_their_posts_whole(client: TestClient) -> None:
    tagged = client.get(TAG_PATH)
    assert tagged.status_code == 200
    assert "タグ「自宅サーバー」の記事" in tagged.text
    assert "ラックに載せた。" in tagged.text and "ディスク交換" in tagged.text
    assert "夏" not in tagged.text.split("<main>")[1] and "下書き" not in tagged.text
    assert f'<link rel="canonical" href="https://blog.example.test{TAG_PATH}">' in tagged.text  # quoted once
    assert f'<meta property="og:url" content="https://blog.example.test{TAG_PATH}">' in tagged.text
    month = client.get("/2024/05/")
    assert month.status_code == 200 and "2024年5月の記事" in month.text
    assert (
        "サーバーを建てた" in month.text
        and "ディスク交換" in month.text
        and '<h2 class="title"><a href="/2024/07' not in month.text
    )
    for empty in ("/2024/06/", "/2024/13/", "/9999/12/", "/0001/01/"):
        assert client.get(empty).status_code == 404, empty
    assert client.get("/tags/無い/").status_code == 404


def test_a_path_spelled_decomposed_answers_301_to_its_nfc_spelling(client: TestClient) -> None:
    """A Mac may send kana decomposed (サ + ゛): one URL a page, one place in the cache, no duplicate content."""
    decomposed = "/tags/" + unicodedata.normalize("NFD", TAG) + "/"
    assert decomposed != f"/tags/{TAG}/"
    moved = client.get(decomposed, follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == TAG_PATH
    assert client.get(decomposed + "?x=1", follow_redirects=False).headers["location"] == TAG_PATH + "?x=1"
    assert client.get(decomposed).url.path == f"/tags/{TAG}/"  # and there the archive
    assert "タグ「自宅サーバー」の記事" in client.get(decomposed).text


def test_tag_and_month_archives_are_paged_as_the_home_page_is(
    database: Database, settings: Settings, root: Path, client: TestClient
) -> None:
    post(root, "2024/cable.md", "配線", "2024-05-25", f"[{TAG}]")  # a third in May and for the tag: 2 a page
    import_dir(database, settings, root)
    first = client.get(TAG_PATH).text
    assert "配線" in first and "ディスク交換" in first and "サーバーを建てた" not in first
    assert f'<a href="{TAG_PATH}page/2/" rel="next">' in first and 'rel="prev"' not in first
    second = client.get(f"{TAG_PATH}page/2/")
    assert second.status_code == 200 and "サーバーを建てた" in second.text and "配線" not in second.text
    assert f'<a href="{TAG_PATH}" rel="prev">' in second.text and 'rel="next"' not in second.text
    assert f'<link rel="canonical" href="https://blog.example.test{TAG_PATH}page/2/">' in second.text
    assert client.get(f"{TAG_PATH}page/1/", follow_redirects=False).headers["location"] == TAG_PATH
    assert client.get(f"{TAG_PATH}page/3/").status_code == 404
    month = client.get("/2024/05/page/2/")
    assert (
        month.status_code == 200
        and "サーバーを建てた" in month.text
        and '<a href="/2024/05/" rel="prev">' in month.text
    )
    assert '<a href="/2024/05/page/2/" rel="next">' in client.get("/2024/05/").text
    assert client.get("/2024/05/page/3/").status_code == 404
    assert client.get("/tags/無い/page/2/").status_code == 404


def test_a_post_is_answered_405_or_404_without_drawing_a_page(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    drawn: list[str] = []
    draw = Site._draw
    monkeypatch.setattr(Site, "_draw", lambda self, name, *a, **k: drawn.append(name) or draw(self, name, *a, **k))
    for path, status in (("/2024/05/server/", 405), (TAG_PATH, 405), ("/", 405), ("/nothing/", 404)):
        answer = client.post(path)
        assert answer.status_code == status, path
        assert status == 404 or answer.headers["allow"] == "GET, HEAD"
    assert drawn == []
    assert client.get("/2024/05/server/").status_code == 200 and drawn == ["post.html"]


def test_a_tag_archive_names_its_feeds_and_a_posts_date_links_to_its_month(client: TestClient) -> None:
    tagged = client.get(TAG_PATH).text
    head = tagged.split("</head>")[0]
    assert f'type="application/atom+xml" title="タグ「{TAG}」の記事 (Atom)" href="{TAG_PATH}feed.atom">' in head
    assert f'type="application/rss+xml" title="タグ「{TAG}」の記事 (RSS)" href="{TAG_PATH}feed.rss">' in head
    assert 'href="/feed.atom"' in head  # and the whole blog's
    assert "feed.atom" not in client.get("/2024/05/").text.split("</head>")[0].replace('href="/feed.atom"', "")
    post = client.get("/2024/05/server/").text  # 2024-05-01T00:30 in Tokyo: May, though April in UTC
    assert '<a href="/2024/05/"><time datetime="2024-05-01T00:30:00+09:00">2024-05-01</time></a>' in post


def test_a_page_that_sets_a_cookie_of_its_own_is_kept_by_no_shared_cache() -> None:
    page = Page.of(200, "text/html", b"<p>form</p>", per_response=lambda scope: [(b"set-cookie", b"t=1")])
    assert (b"cache-control", b"private, no-cache") in page.headers
    assert (b"cache-control", b"no-cache") in Page.of(200, "text/html", b"<p>a post</p>").headers


def test_a_static_page_at_its_slug(client: TestClient) -> None:
    page = client.get("/about/")
    assert page.status_code == 200
    assert "<h1>このサイトについて</h1>" in page.text and "管理人です。" in page.text
    assert 'class="meta"' not in page.text  # no date, no tags


def test_media_with_its_type_nosniff_caching_and_304(client: TestClient) -> None:
    media = client.get("/media/2024/rack.png")
    assert media.status_code == 200
    assert media.content == b"\x89PNG\r\n\x1a\nrack"
    assert media.headers["content-type"] == "image/png"
    assert media.headers["x-content-type-options"] == "nosniff"
    assert media.headers["cache-control"] == "public, max-age=86400"
    again = client.get("/media/2024/rack.png", headers={"if-none-match": media.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


RACK = b"\x89PNG\r\n\x1a\nrack"


def test_media_answers_one_range_as_a_phones_video_player_asks(client: TestClient) -> None:
    assert client.get("/media/2024/rack.png").headers["accept-ranges"] == "bytes"
    for asked, part, answered in (
        ("bytes=0-3", RACK[:4], "bytes 0-3/12"),
        ("bytes=8-", b"rack", "bytes 8-11/12"),
        ("bytes=-2", b"ck", "bytes 10-11/12"),
        ("bytes=10-99", b"ck", "bytes 10-11/12"),
    ):
        got = client.get("/media/2024/rack.png", headers={"range": asked, "accept-encoding": "gzip"})
        assert (got.status_code, got.content, got.headers["content-range"]) == (206, part, answered), asked
        assert got.headers["content-length"] == str(len(part)) and "content-encoding" not in got.headers
    beyond = client.get("/media/2024/rack.png", headers={"range": "bytes=12-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */12" and beyond.content == b""
    for whole in ("bytes=0-1,4-5", "lines=1-2", "bytes=5-2"):  # not one range of bytes: all of it
        assert client.get("/media/2024/rack.png", headers={"range": whole}).content == RACK, whole
    etag = client.get("/media/2024/rack.png").headers["etag"]
    assert client.get("/media/2024/rack.png", headers={"range": "bytes=0-1", "if-range": etag}).status_code == 206
    changed = client.get("/media/2024/rack.png", headers={"range": "bytes=0-1", "if-range": '"other"'})
    assert changed.status_code == 200 and changed.content == RACK


def test_a_large_file_is_read_off_the_event_loop_part_by_part_never_whole(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("jitaku.web.site.LARGE_MEDIA", 4)
    monkeypatch.setattr("jitaku.web.page_cache.CHUNK", 5)
    parts: list[tuple[int, int, bool]] = []
    media_part = site_store.media_part

    def recorded(statements: Statements, path: str, offset: int, length: int) -> bytes:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        parts.append((offset, length, on_loop))
        return media_part(statements, path, offset, length)

    monkeypatch.setattr(site_store, "media_part", recorded)
    whole = client.get("/media/2024/rack.png")
    assert whole.status_code == 200 and whole.content == RACK and whole.headers["content-length"] == "12"
    assert parts == [(0, 5, False), (5, 5, False), (10, 2, False)]
    parts.clear()
    part = client.get("/media/2024/rack.png", headers={"range": "bytes=6-8"})
    assert (part.status_code, part.content, part.headers["content-range"]) == (206, RACK[6:9], "bytes 6-8/12")
    assert parts == [(6, 3, False)]
    parts.clear()
    assert client.get("/media/2024/rack.png", headers={"if-none-match": whole.headers["etag"]}).status_code == 304
    assert client.head("/media/2024/rack.png").headers["content-length"] == "12" and parts == []


def test_a_file_of_several_parts_and_a_range_across_a_part_boundary(
    database: Database, settings: Settings, root: Path, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = bytes(range(251)) * (blog.MEDIA_PART * 5 // 2 // 251)  # two parts and a half
    write(root, "2024/video.mp4", video)
    write(root, "2024/large.mp4", video)
    import_dir(database, settings, root)
    for name in ("video.mp4", "large.mp4"):  # kept whole; read part by part as it is sent, never kept
        if name == "large.mp4":
            monkeypatch.setattr("jitaku.web.site.LARGE_MEDIA", 1024)
        whole = client.get(f"/media/2024/{name}")
        assert whole.status_code == 200 and whole.content == video
        first, last = blog.MEDIA_PART - 100, 2 * blog.MEDIA_PART + 99
        part = client.get(f"/media/2024/{name}", headers={"range": f"bytes={first}-{last}"})
        assert part.status_code == 206 and part.content == video[first : last + 1]
        assert part.headers["content-range"] == f"bytes {first}-{last}/{len(video)}"


@pytest.mark.parametrize(
    "path",
    [
        "/media/2024/%2E%2E/2024/rack.png",
        "/media/%2e%2e/j.db",
        "/media//2024/rack.png",
        "/media/2024%2f..%2frack.png",
        "/media/2024\\rack.png",
    ],
)
def test_a_media_path_that_climbs_is_not_found(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


def test_an_old_url_answers_301_to_the_new_one_and_an_unknown_one_a_readable_404(
    database: Database, settings: Settings, root: Path, client: TestClient
) -> None:
    post(root, "2024/server.md", "サーバーを建てた", "2024-05-01T00:30:00", f"[{TAG}]", "ラック", slug="自宅鯖")
    assert import_dir(database, settings, root).redirected == [("/2024/05/server/", "/2024/05/自宅鯖/")]
    moved = client.get("/2024/05/server/", follow_redirects=False)
    assert moved.status_code == 301
    assert moved.headers["location"] == "/2024/05/%E8%87%AA%E5%AE%85%E9%AF%96/"
    assert client.get("/2024/05/server/").status_code == 200
    assert client.get("/2024/05/disk", follow_redirects=False).headers["location"] == "/2024/05/disk/"
    assert client.post("/2024/05/server/").status_code == 405  # a page is only read
    assert client.post("/no/such/page/").status_code == 404
    missing = client.get("/no/such/page/")
    assert missing.status_code == 404
    assert "ページが見つかりません" in missing.text and missing.headers["content-security-policy"]


def test_readers_who_miss_the_home_page_together_wait_for_one_drawing_of_it(
    database: Database, settings: Settings, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_dir(database, settings, root)
    cache = PageCache(database)
    app = FastPages(Starlette(routes=Site(settings, database, cache).routes()), cache)
    query = database.query

    async def in_a_thread(*args: Any, **kwargs: Any) -> Any:  # as on PostgreSQL: each query lets others run
        await asyncio.sleep(0.01)
        return await query(*args, **kwargs)

    monkeypatch.setattr(database, "query", in_a_thread)
    drawn: list[int] = []
    newest = site_store.newest

    def counted(statements: Statements, now: float, offset: int, limit: int) -> list[site_store.Shown]:
        drawn.append(offset)
        return newest(statements, now, offset, limit)

    monkeypatch.setattr(site_store, "newest", counted)

    async def readers() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="https://blog.example.test") as client:
            assert (await client.get("/site.css")).status_code == 200  # the blog's version read: nothing to drop
            return await asyncio.gather(*(client.get("/") for _ in range(20)))

    answers = asyncio.run(readers())
    assert {answer.status_code for answer in answers} == {200} and len({a.content for a in answers}) == 1
    assert drawn == [0]


def test_a_kept_page_has_an_etag_answers_304_and_is_gzipped_for_who_accepts_it(client: TestClient) -> None:
    first = client.get("/", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in first.headers
    zipped = client.get("/", headers={"accept-encoding": "gzip, br"})
    assert zipped.headers["content-encoding"] == "gzip" and zipped.headers["vary"] == "Accept-Encoding"
    assert zipped.text == first.text  # decoded by the client
    assert "content-encoding" not in client.get("/", headers={"accept-encoding": "br, gzip;q=0"}).headers
    for etag in (first.headers["etag"], zipped.headers["etag"]):
        again = client.get("/", headers={"if-none-match": etag})
        assert again.status_code == 304 and again.headers["etag"]
        assert again.headers["x-frame-options"] == "DENY"
    assert client.head("/").content == b""


def test_a_change_reaches_the_kept_pages_within_a_second_and_invalidate_at_once(
    database: Database, settings: Settings, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import_dir(database, settings, root)
    clock = [1000.0]
    monkeypatch.setattr("jitaku.web.page_cache.time.monotonic", lambda: clock[0])
    cache = PageCache(database)
    app = FastPages(SecurityHeaders(Starlette(routes=Site(settings, database, cache).routes())), cache)
    with TestClient(app) as client:
        assert "秋" not in client.get("/").text
        post(root, "2024/autumn.md", "秋", "2024-10-01")
        import_dir(database, settings, root)
        assert "秋" not in client.get("/").text  # kept, until the version is read again
        clock[0] += 1.5
        assert "秋" in client.get("/").text
        with database.transaction() as connection:
            connection.exec_driver_sql("UPDATE posts SET title = '紅葉' WHERE title = '秋'")
        cache.invalidate()
        assert "紅葉" in client.get("/").text


def test_the_stylesheet_suits_japanese_phones_and_dark_mode(client: TestClient) -> None:
    home = client.get("/").text
    found = re.search(r'<link rel="stylesheet" href="(/site\.css\?v=\w+)">', home)
    assert found is not None
    css = client.get(found.group(1))
    assert css.headers["content-type"] == "text/css; charset=utf-8"
    for rule in ("line-break: strict", "prefers-color-scheme: dark", "max-width: 100%; height: auto", "system-ui"):
        assert rule in css.text
    assert "@import" not in css.text and "url(" not in css.text  # nothing fetched from elsewhere
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in home
    assert "<script" not in home


def test_the_content_security_policy_lets_the_stylesheet_and_the_photos_load_and_no_script(
    client: TestClient,
) -> None:
    policy = dict(
        part.strip().split(" ", 1)
        for part in client.get("/2024/05/server/").headers["content-security-policy"].split(";")
    )
    assert "'self'" in policy["style-src"] and policy["img-src"] == "'self'" and policy["media-src"] == "'self'"
    assert policy["default-src"] == "'none'" and "script-src" not in policy


@pytest.mark.parametrize("path", ["/", "/page/2/", "/2024/05/server/", TAG_PATH, "/2024/05/", "/about/", "/nothing/"])
def test_every_page_has_one_main_heading_and_no_list_inside_a_paragraph(client: TestClient, path: str) -> None:
    """What screen readers and axe-core look for: one h1 a page, and markup a browser need not repair."""
    text = client.get(path).text
    assert text.count("<h1") == 1, path
    assert not re.search(r"<p[^>]*>(?:(?!</p>).)*<ul", text, re.S), path


def test_no_redirect_of_the_site_leads_to_another_site(
    database: Database, settings: Settings, client: TestClient
) -> None:
    """A browser reads a Location of `//evil.example/` as another site: every 301 the site makes stays on it,
    whatever path was asked for and whatever an old URL's row says."""
    with database.transaction() as connection:
        connection.exec_driver_sql(
            "INSERT INTO redirects (old_path, new_path, created_at) VALUES ('/old/', '//evil.example/x/', 0)"
        )
        connection.exec_driver_sql("UPDATE posts SET url = '///evil.example/夏/' WHERE title = '夏'")
    site = "https://blog.example.test"
    cases = {
        "//evil.example/e%CC%81": "/evil.example/%C3%A9",  # not NFC: 301 to its NFC spelling
        "///evil.example/e%CC%81?a=1": "/evil.example/%C3%A9?a=1",
        "/old/": "/evil.example/x/",  # the redirects table
        "///evil.example/%E5%A4%8F": "/evil.example/%E5%A4%8F/",  # a post's URL without its last slash
    }
    for path, location in cases.items():
        moved = client.get(site + path, follow_redirects=False)
        assert (moved.status_code, moved.headers["location"]) == (301, location), path
    assert client.get(site + "/page/1/", follow_redirects=False).headers["location"] == "/"


def test_a_month_is_at_one_url_in_ascii_digits_only(client: TestClient) -> None:
    assert client.get("/2024/05/").status_code == 200
    assert client.get("/٢٠٢٤/٠٥/").status_code == 404  # Arabic-Indic digits: no second URL of the archive
    assert client.get("/٢٠٢٤/٠٥/page/2/").status_code == 404
    assert client.get("/page/٢/").status_code == 404


def test_a_posts_date_and_a_comments_are_told_one_way_in_the_blogs_time_zone(settings: Settings) -> None:
    """The pages and the comments under them share SiteInfo's dates: 2024-04-30 15:30 UTC is May 1 in Tokyo."""
    info = SiteInfo.of(settings)
    instant = 1714491000.0
    assert info.day(instant) == "2024-05-01"
    assert info.day(instant, minutes=True) == "2024-05-01 00:30"
    assert info.iso(instant) == "2024-05-01T00:30:00+09:00"
    assert comment_words.alone("heading", "ja-JP") == "コメント" and comment_words.alone("heading", "fr") == "Comments"
