"""A WordPress site moved to jitaku (issue 22, "Must show"): the export a real WordPress writes
(tests/fixtures/wordpress/export.xml, WXR 1.2) and its uploads imported with the CLI, then a real `jitaku serve`
as readers and old links meet it: each old permalink answers 301 at the post's new URL, the comments WordPress
published are on the post, threaded, the others not, and the images are served from /media/. Then `jitaku blog
export` of it imported into a fresh server serves the same site."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.harness import Jitaku

FIXTURES = Path(__file__).parents[1] / "fixtures" / "wordpress"
POST = "/2024/05/自宅サーバー/"


# The ids an import gives anew: a post's comment form, a comment's anchor
_IDS = re.compile(r"(/comments/|comment-)[0-9]+")


def blog_server(jitaku_factory: Any, name: str, *imported: str) -> Jitaku:
    server: Jitaku = jitaku_factory(name=name)
    server.settings["blog"] = {"timezone": "Asia/Tokyo", "title": "自宅日記"}
    server.write_config()
    server.init("alice@example.test")
    server.cli("blog", "import", *imported)
    server.start()
    return server


@pytest.fixture
def server(jitaku_factory: Any) -> Jitaku:
    return blog_server(
        jitaku_factory, "wordpress", "--wxr", str(FIXTURES / "export.xml"), "--media", str(FIXTURES / "uploads")
    )


@pytest.fixture
def moved(server: Jitaku) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", timeout=10) as client:
        yield client


def test_each_old_permalink_answers_301_at_the_posts_new_url(moved: httpx.Client) -> None:
    for old, new in (
        ("/2024/05/01/%e8%87%aa%e5%ae%85%e3%82%b5%e3%83%bc%e3%83%90%e3%83%bc/", POST),  # as WordPress links it
        ("/2024/06/02/disk/", "/2024/06/disk/"),
        ("/info/about/", "/about/"),  # a page under a parent page
        ("/wp-content/uploads/2024/05/rack.jpg", "/media/uploads/2024/05/rack.jpg"),
        ("/2024/05/01/%e8%87%aa%e5%ae%85%e3%82%b5%e3%83%bc%e3%83%90%e3%83%bc/rack/", "/media/uploads/2024/05/rack.jpg"),
    ):
        answer = moved.get(old, follow_redirects=False)
        assert (answer.status_code, answer.headers["location"]) == (301, quote(new)), old
        assert moved.get(old, follow_redirects=True).status_code == 200


def test_the_post_shows_its_text_image_and_the_comments_wordpress_published(moved: httpx.Client) -> None:
    page = moved.get(POST)
    assert page.status_code == 200
    assert "押し入れにラックを置いて、自宅サーバーを建てた。<br />\n電気代は月に千円ほど。" in page.text
    assert (
        '<img class="size-medium wp-image-13" src="/media/uploads/2024/05/rack-300x200.jpg" alt="ラック"' in page.text
    )
    assert '<figcaption class="wp-caption-text">押し入れのラック</figcaption>' in page.text
    assert f'<a href="/tags/{quote("自宅サーバー")}/" rel="tag">' in page.text
    comments = page.text[page.text.index('id="comments"') :]
    taro = comments.index("<strong>排熱</strong>はどうしていますか？")
    reply = comments.index("扇風機を回しています。")
    second = comments.index("なるほど、真似します。")
    assert taro < reply < second
    assert comments[taro:second].count('class="comment reply"') == 2  # both under 太郎's comment
    assert '<a href="https://taro.example.jp/" rel="nofollow ugc noopener">太郎</a>' in comments
    assert "2024" in comments[taro - 300 : taro]  # dated as on WordPress
    for hidden in ("承認待ちのコメントです。", "cheap pills", "参考に"):  # pending, spam, the pingback
        assert hidden not in page.text
    image = moved.get("/media/uploads/2024/05/rack.jpg")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert image.content == (FIXTURES / "uploads/2024/05/rack.jpg").read_bytes()


def test_the_page_is_a_page_and_drafts_stay_hidden(moved: httpx.Client) -> None:
    about = moved.get("/about/")
    assert (
        about.status_code == 200
        and "<p>押し入れのサーバーから配信しています。</p>\n<p>連絡はメールで。</p>" in about.text
    )
    home = moved.get("/")
    assert "自宅サーバーを建てた" in home.text and "ディスク交換 &amp; RAID" in home.text
    assert "押し入れのサーバーから配信しています。" not in home.text  # a page is no post
    for hidden in ("/2099/01/plans/", f"/2024/06/{quote('ups-を買うか')}/"):  # scheduled for 2099, a draft
        assert moved.get(hidden).status_code == 404
    assert "予約投稿です。" not in home.text and "まだ書きかけ。" not in home.text


def test_its_export_imported_into_a_fresh_server_serves_the_same_site(
    server: Jitaku, moved: httpx.Client, jitaku_factory: Any, tmp_path: Path
) -> None:
    out = tmp_path / "export"
    server.cli("blog", "export", str(out))
    fresh = blog_server(jitaku_factory, "fresh", str(out))
    posts = [p | {"id": 0} for p in json.loads(server.cli("blog", "posts", "--json").stdout)]
    assert [p | {"id": 0} for p in json.loads(fresh.cli("blog", "posts", "--json").stdout)] == posts
    shown = [p["url"] for p in posts if not p["draft"] and not p["url"].startswith("/2099/")]  # 2099: scheduled
    shown += ["/", f"/tags/{quote('自宅サーバー')}/", "/2024/05/"]
    moves = ["/2024/05/01/%e8%87%aa%e5%ae%85%e3%82%b5%e3%83%bc%e3%83%90%e3%83%bc/", "/info/about/"]
    moves += ["/wp-content/uploads/2024/05/rack.jpg", "/2024/06/02/disk/"]
    with httpx.Client(base_url=f"http://127.0.0.1:{fresh.web_port}", timeout=10) as again:
        for url in shown:
            first, second = moved.get(url), again.get(url)
            assert first.status_code == second.status_code == 200, url
            assert _IDS.sub(r"\1N", second.text) == _IDS.sub(r"\1N", first.text), url
        assert "なるほど、真似します。" in again.get(POST).text
        for url in moves:
            first, second = moved.get(url), again.get(url)
            assert (second.status_code, second.headers["location"]) == (301, first.headers["location"]), url
        for url in ("/media/uploads/2024/05/rack.jpg", "/media/uploads/2024/05/rack-300x200.jpg"):
            assert (
                again.get(url).content
                == moved.get(url).content
                == (FIXTURES / url.removeprefix("/media/")).read_bytes()
            )
