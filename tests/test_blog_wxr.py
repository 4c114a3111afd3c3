"""`jitaku blog import --wxr`: a WordPress export as a real WordPress writes it (tests/fixtures/wordpress/, WXR
1.2), imported with its posts, page, draft and scheduled post, comments in each state, uploads and old URLs; a
file that declares entities refused, naming itself, with nothing changed; and WordPress's content shown as
WordPress shows it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitaku.blog import wordpress, wxr, wxr_import
from jitaku.blog.wxr import Wxr, WxrComment, WxrItem
from jitaku.store import Database, blog
from tests.test_blog_cli import jitaku, listed

FIXTURES = Path(__file__).parent / "fixtures" / "wordpress"
EXPORT = FIXTURES / "export.xml"
UPLOADS = FIXTURES / "uploads"
POST = "/2024/05/自宅サーバー/"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "jitaku.toml").write_text('domains = ["example.test"]\n[blog]\ntimezone = "Asia/Tokyo"\n')
    return data


def comments(data: Path) -> list[dict[str, Any]]:
    import json

    result = jitaku(data, "blog", "comments", "--json")
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def rows(data: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row a blog import writes, to see that a refused one wrote none."""
    with sqlite3.connect(data / "jitaku.db") as connection:
        return {
            table: connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()  # noqa: S608
            for table in ("posts", "post_tags", "comments", "redirects", "media", "media_parts")
        }


def test_a_wordpress_export_brings_its_posts_pages_comments_uploads_and_old_urls(data: Path) -> None:
    result = jitaku(data, "blog", "import", "--wxr", str(EXPORT), "--media", str(UPLOADS))
    assert result.returncode == 0, result.stderr
    assert (
        f"imported from {EXPORT}: 4 posts, 1 page (5 new, 0 updated, 0 unchanged), 5 comments (5 new),"
        " 2 media files (2 new or changed), 7 old URLs redirected"
    ) in " ".join(result.stdout.split())
    assert "left out: comment 106 on post 12: pingback" in result.stdout
    assert "left out: item 40: a nav_menu_item" in result.stdout
    found = {post["title"]: post for post in listed(data)}
    assert found["自宅サーバーを建てた"] | {"id": 0} == {
        "id": 0,
        "path": "wordpress/12.html",
        "title": "自宅サーバーを建てた",
        "slug": "自宅サーバー",  # wp:post_name, percent-decoded
        "date": "2024-05-01T00:30:00+00:00",  # wp:post_date_gmt
        "tags": ["サーバー", "自宅サーバー"],  # the category, then the tag
        "draft": False,
        "url": POST,
    }
    assert found["ディスク交換 & RAID"]["tags"] == ["RAID", "自宅サーバー"]  # "Uncategorized" is no tag
    assert (found["このサイトについて"]["url"], found["このサイトについて"]["path"]) == (
        "/about/",
        "pages/wordpress/20.html",
    )
    draft = found["UPS を買うか"]  # no wp:post_name nor UTC date yet: from its title and local date
    assert (draft["draft"], draft["url"], draft["date"]) == (
        True,
        "/2024/06/ups-を買うか/",
        "2024-06-20T12:00:00+00:00",
    )
    assert found["来年の計画"]["draft"] is False  # scheduled for 2099: the site shows it from its day
    database = Database(f"sqlite:///{data / 'jitaku.db'}")
    try:
        assert database.read_now(blog.redirects) == [
            ("/2024/05/01/自宅サーバー/", POST),
            ("/2024/05/01/自宅サーバー/rack/", "/media/uploads/2024/05/rack.jpg"),  # the attachment's page
            ("/2024/06/02/disk/", "/2024/06/disk/"),
            ("/2099/01/01/plans/", "/2099/01/plans/"),  # scheduled: answers from its day
            ("/info/about/", "/about/"),
            ("/wp-content/uploads/2024/05/rack-300x200.jpg", "/media/uploads/2024/05/rack-300x200.jpg"),
            ("/wp-content/uploads/2024/05/rack.jpg", "/media/uploads/2024/05/rack.jpg"),
        ]
        rack = (UPLOADS / "2024/05/rack.jpg").read_bytes()
        assert database.read_now(lambda c: blog.media_at(c, "uploads/2024/05/rack.jpg")) == ("image/jpeg", rack)
    finally:
        database.close()
    by_author = {(c["author"], c["body"][:4]): c for c in comments(data)}
    taro = by_author[("太郎", "うちも押")]
    assert (taro["status"], taro["parent"], taro["date"]) == ("published", None, "2024-05-01T23:00:00+00:00")
    assert (taro["post"], taro["url"]) == (POST, "https://taro.example.jp/")
    assert by_author[("花子", "扇風機を")]["parent"] == taro["id"]
    assert by_author[("太郎", "なるほど")]["parent"] == taro["id"]  # a reply to the reply: under the top comment
    assert by_author[("次郎", "承認待ち")]["status"] == "pending"
    assert by_author[("cheap pills", "Buy ")]["status"] == "spam"
    assert not [c for c in comments(data) if "参考に" in c["body"]]  # the pingback


def test_importing_the_same_export_again_duplicates_nothing_and_keeps_what_the_owner_decided(data: Path) -> None:
    assert jitaku(data, "blog", "import", "--wxr", str(EXPORT), "--media", str(UPLOADS)).returncode == 0
    pending = next(c for c in comments(data) if c["status"] == "pending")
    assert jitaku(data, "blog", "comments", "approve", str(pending["id"])).returncode == 0
    before = rows(data)
    again = jitaku(data, "blog", "import", "--wxr", str(EXPORT), "--media", str(UPLOADS))
    assert again.returncode == 0, again.stderr
    assert "(0 new, 0 updated, 5 unchanged), 5 comments (0 new), 2 media files (0 new or changed)" in " ".join(
        again.stdout.split()
    )
    after = rows(data)
    assert {t: r for t, r in after.items() if t != "redirects"} == {t: r for t, r in before.items() if t != "redirects"}
    assert [r[:2] for r in after["redirects"]] == [r[:2] for r in before["redirects"]]


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("billion-laughs.xml", "billion-laughs.xml:3: declares the entity 'lol': entities are refused"),
        ("external-entity.xml", "external-entity.xml:3: declares the entity 'secret' of file:///etc/passwd"),
    ],
)
def test_an_export_that_declares_entities_is_refused_and_changes_nothing(data: Path, name: str, said: str) -> None:
    assert jitaku(data, "blog", "import", "--wxr", str(EXPORT), "--media", str(UPLOADS)).returncode == 0
    before = rows(data)
    result = jitaku(data, "blog", "import", "--wxr", str(FIXTURES / name))
    assert result.returncode == 1 and said in result.stderr and "(nothing imported)" in result.stderr
    assert "Traceback" not in result.stderr and "root:" not in result.stderr + result.stdout  # /etc/passwd unread
    assert rows(data) == before


def test_a_broken_export_names_its_line_and_changes_nothing(data: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.xml"
    broken.write_text(EXPORT.read_text().replace("</wp:post_name>", "</wp:post_nam>", 1))
    result = jitaku(data, "blog", "import", "--wxr", str(broken))
    assert result.returncode == 1
    line = next(n for n, text in enumerate(broken.read_text().splitlines(), 1) if "</wp:post_nam>" in text)
    assert f"{broken}:{line}:" in result.stderr and "not well-formed XML: mismatched tag" in result.stderr
    assert not (data / "jitaku.db").exists() or rows(data)["posts"] == []
    wrong = tmp_path / "feed.xml"
    wrong.write_text('<?xml version="1.0"?><rss version="2.0"><channel><title>a feed</title></channel></rss>')
    result = jitaku(data, "blog", "import", "--wxr", str(wrong))
    assert result.returncode == 1 and "not a WordPress export (WXR)" in result.stderr


def test_import_takes_a_directory_or_an_export() -> None:
    result = jitaku(Path("/nonexistent"), "blog", "import")
    assert result.returncode != 0 and "jitaku blog import DIR, or jitaku blog import --wxr FILE" in result.stderr


def test_a_classic_post_is_paragraphs_and_its_captioned_image_a_figure() -> None:
    resolve = wordpress.uploads_resolver({"uploads/2024/05/rack.jpg"})
    shown = wordpress.render(
        "一行目\n二行目\n\n"
        '[caption id="attachment_13" align="alignleft" width="300"]'
        '<img src="https://old.example.jp/wp-content/uploads/2024/05/rack.jpg" alt="ラック" /> ラック[/caption]'
        "\n\n<!--more-->\n<pre>a\n\nb</pre>\n<blockquote>引用\n\n続き</blockquote>\n"
        '<img src="https://old.example.jp/wp-content/uploads/2024/05/other.jpg" />',
        resolve,
    )
    assert shown == (
        "<p>一行目<br />\n二行目</p>\n"
        '<figure id="attachment_13" class="wp-caption alignleft"><img src="/media/uploads/2024/05/rack.jpg"'
        ' alt="ラック" /><figcaption class="wp-caption-text">ラック</figcaption></figure>\n'
        "<pre>a\n\nb</pre>\n"  # as written: its blank line is no paragraph
        "<blockquote><p>引用</p>\n<p>続き</p></blockquote>\n"
        '<p><img src="https://old.example.jp/wp-content/uploads/2024/05/other.jpg" /></p>\n'  # not brought along
    )


def test_a_block_editor_post_is_kept_as_its_html_without_the_block_marks() -> None:
    shown = wordpress.render(
        '<!-- wp:paragraph -->\n<p>RAID</p>\n<!-- /wp:paragraph -->\n\n<!-- wp:image {"id":13} -->\n'
        '<figure class="wp-block-image"><img src="/wp-content/uploads/2024/05/rack.jpg" srcset="/wp-content/uploads'
        '/2024/05/rack.jpg 1200w, /wp-content/uploads/2024/05/rack-300x200.jpg 300w" alt=""/></figure>\n'
        "<!-- /wp:image -->",
        wordpress.uploads_resolver({"uploads/2024/05/rack.jpg"}),
    )
    assert shown == (
        "<p>RAID</p>\n\n"
        '<figure class="wp-block-image"><img src="/media/uploads/2024/05/rack.jpg" srcset="/media/uploads/2024/05'
        '/rack.jpg 1200w, /wp-content/uploads/2024/05/rack-300x200.jpg 300w" alt=""/></figure>\n'
    )


def test_an_upload_path_never_leaves_the_uploads() -> None:
    assert wordpress.upload_path("https://old.example.jp/blog/wp-content/uploads/2024/05/%E5%86%99.jpg") == (
        "uploads/2024/05/写.jpg"
    )
    assert wordpress.upload_path("https://old.example.jp/wp-content/uploads/../../wp-config.php") is None
    assert wordpress.upload_path("https://old.example.jp/2024/05/rack.jpg") is None
    assert wordpress.media_path("2024//rack.jpg") is None


@pytest.mark.parametrize(
    "unit", ["<p", "<", "[caption]", "<pre>", '<a href="', "<script>", "<p><li", "x\n\n", "<!-- wp:", "<!--more"]
)
def test_an_exports_content_takes_time_in_proportion_to_its_size(unit: str) -> None:
    """An export is a file from elsewhere: a post of unclosed tags or shortcodes must not take the square of its
    length (it took minutes for 200 KB of `[caption]` before)."""
    started = time.monotonic()
    for content in (unit * (200_000 // len(unit)), "<!-- wp:x -->" + unit * (200_000 // len(unit))):
        wordpress.render(content, wordpress.uploads_resolver(frozenset()))
    assert time.monotonic() - started < 10


_PIECES = [*"ab <>/\"'=\n[]", "<p>", "</p>", "<pre>", "</pre>", "[caption]", "[/caption]", "<img src=x>", "<div>"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([*_PIECES, "</div>", "<!-- wp:p -->", "自宅"]), max_size=30).map("".join))
def test_any_content_renders_and_keeps_its_words(content: str) -> None:
    shown = wordpress.render(content, wordpress.uploads_resolver(frozenset()))
    assert shown.count("自宅") == content.count("自宅")


def item(post_id: int, status: str, **changed: Any) -> WxrItem:
    values: dict[str, Any] = {
        "id": post_id,
        "type": "post",
        "status": status,
        "title": f"post {post_id}",
        "link": f"https://old.example.jp/p{post_id}/",
        "name": f"p{post_id}",
        "published_at": 1.7e9,
        "content": "本文",
        "password": "",
        "terms": (),
        "attachment_url": "",
        "attached_file": "",
        "comments": (),
    }
    return WxrItem(**(values | changed))


def test_only_what_wordpress_showed_readers_is_published() -> None:
    items = (
        item(1, "publish"),
        item(2, "draft"),
        item(3, "pending"),
        item(4, "private"),
        item(5, "future", published_at=time.time() + 86400),  # tomorrow: the site shows it from then on
        item(6, "future", published_at=1.7e9),  # its day came while WordPress was exported
        item(7, "publish", password="secret"),
        item(8, "trash"),
        item(9, "auto-draft"),
        item(10, "inherit", type="revision"),
    )
    planned = wxr_import.plan(Wxr(EXPORT, "https://old.example.jp", items), None, "/{year}/{slug}/", None)
    assert {post.path: post.draft for post in planned.posts} == {
        "wordpress/1.html": False,
        "wordpress/2.html": True,
        "wordpress/3.html": True,
        "wordpress/4.html": True,
        "wordpress/5.html": False,
        "wordpress/6.html": False,
        "wordpress/7.html": True,
    }
    assert [post.aliases for post in planned.posts if not post.draft] == [("/p1/",), ("/p5/",), ("/p6/",)]
    assert planned.left_out == [
        "post 8 (post 8): trash",
        "post 9 (post 9): auto-draft",
        "item 10: a revision, not a post or page",
    ]


def test_an_export_of_an_older_wordpress_reads_the_same(tmp_path: Path) -> None:
    older = tmp_path / "wxr-1.1.xml"
    older.write_text(EXPORT.read_text().replace("wordpress.org/export/1.2/", "wordpress.org/export/1.1/"))
    assert wxr.read(older, None).items == wxr.read(EXPORT, None).items


def test_media_goes_with_wxr(data: Path) -> None:
    result = jitaku(data, "blog", "import", str(FIXTURES), "--media", str(UPLOADS))
    assert result.returncode == 1 and "--media goes with --wxr" in result.stderr


def test_a_commenters_link_that_is_not_http_is_dropped() -> None:
    def said(url: str) -> WxrComment:
        return WxrComment(1, 0, "Mallory", "m@example.jp", url, "192.0.2.1", 1.7e9, "hi", "1", "comment")

    for url, kept in (
        ("https://mallory.example.jp/", "https://mallory.example.jp/"),
        ("javascript:alert(1)", ""),
        ("JavaScript:alert(1)", ""),
        ("data:text/html,<script>", ""),
        ("http://", ""),
        ("http://a.example/ b", ""),
    ):
        planned = wxr_import.plan(
            Wxr(EXPORT, "https://old.example.jp", (item(1, "publish", comments=(said(url),)),)),
            None,
            "/{year}/{slug}/",
            None,
        )
        assert [comment.url for comment in planned.comments] == [kept], url
