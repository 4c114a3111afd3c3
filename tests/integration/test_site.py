"""The blog against a real `jitaku serve` (issue 21, "What a reader can do" and "What moves"), over httpx: a
small blog imported with the CLI, each kind of page fetched as a reader's browser would, an old URL after a
slug change, a change reaching the running site within 2 s, and the kept pages' 304 and gzip."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.harness import Jitaku

TAG = "自宅サーバー"
PHOTO = b"\xff\xd8\xff\xe0 a photo of the rack"
VIDEO = bytes(range(256)) * (5 * 4096 + 7)  # 5 MiB and more: over the size the site keeps in memory


def write(root: Path, path: str, text: str | bytes) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(text.encode() if isinstance(text, str) else text)


def server_post(slug: str = "") -> str:
    extra = f"slug: {slug}\n" if slug else ""
    return (
        f"---\ntitle: 自宅サーバーを建てた\ndate: 2024-05-01T00:30:00\ntags: [{TAG}, 日記]\n{extra}---\n"
        "![ラック](rack.jpg)\n\n押し入れにラックを置いた。\n"
    )


@pytest.fixture
def site(jitaku_factory: Any, tmp_path: Path) -> Iterator[tuple[Jitaku, Path, httpx.Client]]:
    server: Jitaku = jitaku_factory()
    server.settings["blog"] = {"timezone": "Asia/Tokyo", "title": "自宅日記"}
    server.write_config()
    server.init("alice@example.test")
    blog = tmp_path / "blog"
    write(blog, "2024/server.md", server_post())
    write(blog, "2024/rack.jpg", PHOTO)
    write(blog, "2024/clip.mp4", VIDEO)
    write(blog, "2024/disk.md", f"---\ntitle: ディスク交換\ndate: 2024-06-02\ntags: [{TAG}]\n---\nRAID を直した。\n")
    write(blog, "pages/about.md", "---\ntitle: このサイトについて\n---\n自宅から配信しています。\n")
    server.cli("blog", "import", str(blog))
    server.start()
    client = httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", timeout=10)
    yield server, blog, client
    client.close()


def test_a_reader_reads_the_blog_and_the_status_pages_have_moved(site: tuple[Jitaku, Path, httpx.Client]) -> None:
    _server, _blog, client = site
    home = client.get("/")
    assert home.status_code == 200 and '<html lang="ja">' in home.text
    assert f'<a href="/tags/{quote(TAG)}/" rel="tag">#{TAG}</a>' in home.text
    assert 'type="application/atom+xml"' in home.text and 'href="/feed.atom"' in home.text
    assert "このサイトについて" not in home.text  # a static page is not a post
    post = client.get("/2024/05/server/")
    assert post.status_code == 200 and "押し入れにラックを置いた。" in post.text
    assert '<img src="/media/2024/rack.jpg" alt="ラック"' in post.text
    assert '<link rel="canonical" href="https://mail.example.test/2024/05/server/">' in post.text
    tagged = client.get(f"/tags/{TAG}/")  # httpx percent-encodes it, as a browser does
    assert tagged.status_code == 200
    assert "押し入れにラックを置いた。" in tagged.text and "RAID を直した。" in tagged.text  # the posts whole
    month = client.get("/2024/06/")
    assert month.status_code == 200 and "ディスク交換" in month.text and "自宅サーバーを建てた" not in month.text
    about = client.get("/about/")
    assert about.status_code == 200 and "自宅から配信しています。" in about.text
    photo = client.get("/media/2024/rack.jpg")
    assert photo.content == PHOTO and photo.headers["content-type"] == "image/jpeg"
    assert photo.headers["x-content-type-options"] == "nosniff" and "max-age" in photo.headers["cache-control"]
    assert client.get("/media/%2e%2e/jitaku.db").status_code == 404
    missing = client.get("/2023/01/nothing/")
    assert missing.status_code == 404 and "ページが見つかりません" in missing.text
    for old, new in (("/health", "/admin/health"), ("/status.json", "/admin/status.json")):
        moved = client.get(old, follow_redirects=False)
        assert (moved.status_code, moved.headers["location"]) == (301, new)
    assert client.get("/admin/status.json").json()["hostname"] == "mail.example.test"  # this machine: trusted


def test_a_phones_video_player_gets_the_parts_of_a_large_video_it_asks_for(
    site: tuple[Jitaku, Path, httpx.Client],
) -> None:
    _server, _blog, client = site
    head = client.head("/media/2024/clip.mp4")
    assert head.headers["accept-ranges"] == "bytes" and head.headers["content-length"] == str(len(VIDEO))
    start = client.get("/media/2024/clip.mp4", headers={"range": "bytes=0-1"})  # what Safari asks first
    assert (start.status_code, start.content) == (206, VIDEO[:2])
    assert start.headers["content-range"] == f"bytes 0-1/{len(VIDEO)}"
    seek = client.get("/media/2024/clip.mp4", headers={"range": "bytes=3000000-"})
    assert seek.status_code == 206 and seek.content == VIDEO[3000000:]
    assert client.get("/media/2024/clip.mp4", headers={"range": f"bytes={len(VIDEO)}-"}).status_code == 416
    whole = client.get("/media/2024/clip.mp4")
    assert whole.status_code == 200 and whole.content == VIDEO and whole.headers["content-type"] == "video/mp4"


def test_kept_pages_answer_304_and_gzip(site: tuple[Jitaku, Path, httpx.Client]) -> None:
    _server, _blog, client = site
    first = client.get("/2024/05/server/", headers={"accept-encoding": "gzip"})
    assert first.headers["content-encoding"] == "gzip" and first.headers["vary"] == "Accept-Encoding"
    assert "押し入れにラックを置いた。" in first.text
    again = client.get("/2024/05/server/", headers={"if-none-match": first.headers["etag"], "accept-encoding": "gzip"})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["content-security-policy"].startswith("default-src 'none'")
    plain = client.get("/2024/05/server/", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.text == first.text


def test_a_slug_changed_with_the_cli_reaches_the_site_within_2s_and_the_old_url_moves(
    site: tuple[Jitaku, Path, httpx.Client],
) -> None:
    server, blog, client = site
    assert client.get("/2024/05/server/").status_code == 200  # drawn and kept
    write(blog, "2024/server.md", server_post(slug="rack"))
    server.cli("blog", "import", str(blog))
    imported = time.monotonic()
    while (old := client.get("/2024/05/server/", follow_redirects=False)).status_code != 301:
        assert time.monotonic() - imported < 2.0, "the running site still shows the page at its old URL"
        time.sleep(0.05)
    assert old.headers["location"] == "/2024/05/rack/"
    landed = client.get("/2024/05/server/", follow_redirects=True)
    assert landed.status_code == 200 and str(landed.url).endswith("/2024/05/rack/")
    assert "押し入れにラックを置いた。" in landed.text


def test_a_reader_searches_the_blog_for_long_and_short_japanese_words(
    site: tuple[Jitaku, Path, httpx.Client],
) -> None:
    server, blog, client = site
    write(blog, "2024/meeting.md", "---\ntitle: 町内会\ndate: 2024-07-01\n---\n来週の会議は公民館で。\n")
    write(blog, "2024/draft.md", "---\ntitle: 下書き\ndate: 2024-07-02\ndraft: true\n---\n会議のメモ\n")
    server.cli("blog", "import", str(blog))
    home = client.get("/")
    assert '<form class="search" role="search" method="get" action="/search">' in home.text
    found = client.get("/search", params={"q": TAG})
    assert found.status_code == 200 and 'href="/2024/05/server/"' in found.text
    assert 'href="/2024/06/disk/"' not in found.text  # tagged 自宅サーバー, but its text does not say it
    short = client.get("/search", params={"q": "会議"})
    assert 'href="/2024/07/meeting/"' in short.text and "来週の<mark>会議</mark>は公民館で。" in short.text
    assert "下書き" not in short.text  # a draft is never found
    assert "見つかりませんでした" in client.get("/search", params={"q": "存在しない言葉"}).text
    assert client.get("/search", params={"q": "会" * 3000, "page": "x"}).status_code == 200
