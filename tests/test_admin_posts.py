"""The admin's posts (issue 22, "Posts"): the editor's Preview draws the post and saves nothing, Save stores it as
the import does (tags in order, a 301 from the old URL after a slug change, the site showing it at once), bad
input is a 400 with the form kept that changes nothing, a POST without the page's CSRF field is a 403 that changes
nothing, images are kept in the database's media (never an SVG or what is no image), a scheduled post appears on
the site once its time passes, and a post can be deleted."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from jitaku.config import Settings
from jitaku.store import Database, blog, comments, search
from jitaku.web import auth, csrf
from jitaku.web.admin import posts
from jitaku.web.admin.page import AdminPages
from jitaku.web.bodies import BodyLimit
from jitaku.web.headers import SecurityHeaders
from jitaku.web.page_cache import FastPages, PageCache
from jitaku.web.site import Site
from tests.integration.forms import csrf_of
from tests.integration.test_site_browser import png

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

TOKYO = ZoneInfo("Asia/Tokyo")
SETTINGS = Settings(
    domains=["example.test"], web={"url": "https://blog.example.test/"}, blog={"timezone": "Asia/Tokyo"}
)
TITLE = "自宅サーバーの引っ越し"
FORM = {
    "title": TITLE,
    "slug": "",
    "tags": "自宅サーバー, 日記、メール",
    "date": "2026-05-03T21:15",
    "state": "published",
    "kind": "post",
    "body": "# 見出し\n\n新しい**ラック**に移しました。\r\n",
}


def app_of(database: Database) -> Any:
    """The admin's posts and the blog, with the middlewares web/status.py puts in front of them."""
    secret = "k" * 64
    admin = AdminPages(SETTINGS, auth.Gate(database, True, None))  # type: ignore[arg-type]  # no login here
    pages = PageCache(database)
    routes = [*posts.Posts(SETTINGS, database, admin, pages).routes(), *Site(SETTINGS, database, pages).routes()]
    middleware = [
        Middleware(BodyLimit, max_bytes=65536, own=("/comments/",), larger=posts.LARGER),
        Middleware(csrf.Protect, secret=secret),
        Middleware(auth.CookieSessions, secret=secret),
    ]
    return FastPages(SecurityHeaders(Starlette(routes=routes, middleware=middleware)), pages)


@pytest.fixture
def client(database: Database) -> Iterator[TestClient]:
    """The owner's browser on this machine (loopback is trusted: no login)."""
    with TestClient(app_of(database), base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as client:
        yield client


def send(client: TestClient, page: str, action: str, fields: dict[str, str], **files: Any) -> Any:
    """The editor's form at PAGE sent as a browser sends it (multipart, with the page's CSRF field), by ACTION."""
    field = csrf_of(client.get(page).text)
    target = page.split("?")[0]
    data = {**fields, "csrf": field, "action": action}
    return client.post(
        target, data=data, files=files or {"image": ("", b"", "application/octet-stream")}, follow_redirects=False
    )


def stored(database: Database) -> list[tuple[Any, ...]]:
    """Everything the blog keeps that an admin's form may change: posts, tags, redirects, media, version."""
    return [
        *database.query_now(
            lambda s: s.run(
                "SELECT id, path, url, title, slug, published_at, draft, source, html FROM posts ORDER BY id"
            )
        ),
        *database.query_now(lambda s: s.run("SELECT * FROM post_tags ORDER BY post_id, position")),
        *database.query_now(lambda s: s.run("SELECT * FROM redirects ORDER BY old_path")),
        *database.query_now(lambda s: s.run("SELECT path, digest FROM media ORDER BY path")),
        *database.query_now(lambda s: s.run("SELECT version FROM blog_version")),
    ]


def saved_id(answer: Any) -> int:
    assert answer.status_code == 303, answer.text[:2000]
    found = re.fullmatch(r"/admin/posts/([0-9]+)\?saved=1", answer.headers["location"])
    assert found is not None, answer.headers["location"]
    return int(found.group(1))


def test_preview_draws_the_post_and_saves_nothing_then_save_puts_it_on_the_site(
    client: TestClient, database: Database
) -> None:
    before = stored(database)
    preview = send(client, "/admin/posts/new", "preview", FORM)
    assert preview.status_code == 200
    assert "<h1>見出し</h1>" in preview.text and "<strong>ラック</strong>" in preview.text
    assert f'value="{TITLE}"' in preview.text and "日記、メール" in preview.text  # the form kept as sent
    assert "Saved" not in preview.text
    assert stored(database) == before

    post_id = saved_id(send(client, "/admin/posts/new", "save", FORM))
    page = client.get(f"/admin/posts/{post_id}?saved=1").text
    assert "Saved." in page and 'value="自宅サーバー, 日記, メール"' in page
    assert 'value="2026-05-03T21:15"' in page
    [post] = database.query_now(blog.posts)
    assert post.path.startswith("admin/") and post.path.endswith(".md")
    assert (post.url, post.tags, post.draft) == (f"/2026/05/{TITLE}/", ("自宅サーバー", "日記", "メール"), False)
    assert post.published_at == datetime(2026, 5, 3, 21, 15, tzinfo=TOKYO).timestamp()
    source = database.query_now(lambda s: blog.post_with_source(s, post_id))
    assert source is not None and source[1] == "# 見出し\n\n新しい**ラック**に移しました。\n"  # LF, as a file's

    found = database.query_now(lambda s: search.find_posts(s, "ラック", time.time(), 10))
    assert [f.ref for f in found] == [post_id]  # indexed for the site's search as it was saved
    home = client.get("/").text  # the site's kept home page was dropped by the save
    assert TITLE in home
    shown = client.get(f"/2026/05/{TITLE}/")
    assert shown.status_code == 200 and "<strong>ラック</strong>" in shown.text
    listing = client.get("/admin/posts").text
    assert f'<a href="/admin/posts/{post_id}">{TITLE}</a>' in listing and "2026-05-03 21:15" in listing


def test_a_changed_slug_leaves_a_301_from_the_old_url_and_keeps_the_posts_key(
    client: TestClient, database: Database
) -> None:
    post_id = saved_id(send(client, "/admin/posts/new", "save", FORM))
    assert client.get(f"/2026/05/{TITLE}/").status_code == 200
    [before] = database.query_now(blog.posts)
    assert saved_id(send(client, f"/admin/posts/{post_id}", "save", {**FORM, "slug": "moving"})) == post_id
    [after] = database.query_now(blog.posts)
    assert (after.id, after.path, after.url) == (before.id, before.path, "/2026/05/moving/")
    moved = client.get(f"/2026/05/{TITLE}/", follow_redirects=False)
    assert moved.status_code == 301 and moved.headers["location"] == "/2026/05/moving/"
    assert client.get("/2026/05/moving/").status_code == 200


def test_bad_input_is_a_400_with_the_form_kept_and_changes_nothing(client: TestClient, database: Database) -> None:
    saved_id(send(client, "/admin/posts/new", "save", {**FORM, "slug": "taken"}))
    before = stored(database)
    cases = {
        "Give it a title": {**FORM, "title": "  "},
        "is not a date and time": {**FORM, "date": "2026-13-45T99:00"},
        "a slug must not be empty nor hold": {**FORM, "slug": "a/b"},
        "a tag must not be empty nor hold": {**FORM, "tags": "TCP/IP"},
        "is at /2026/05/taken/ already": {**FORM, "title": "別の記事", "slug": "taken"},
        "is a path of the site itself": {**FORM, "kind": "page", "slug": "admin"},
        "Choose draft or published": {**FORM, "state": "gone"},
    }
    for message, fields in cases.items():
        answer = send(client, "/admin/posts/new", "save", fields)
        assert answer.status_code == 400, (message, answer.status_code)
        assert message in answer.text and "Nothing was saved" in answer.text, message
        assert 'name="body"' in answer.text and "新しい**ラック**に移しました。" in answer.text  # the form kept
        assert stored(database) == before, message


def test_a_post_without_the_pages_csrf_field_is_refused_and_changes_nothing(
    client: TestClient, database: Database
) -> None:
    post_id = saved_id(send(client, "/admin/posts/new", "save", FORM))
    before = stored(database)
    field = csrf_of(client.get("/admin/posts/new").text)
    image = {"image": ("photo.png", png(4, 4), "image/png")}
    forged = [
        client.post("/admin/posts/new", data={**FORM, "action": "save"}, files=image),
        client.post("/admin/posts/new", data={**FORM, "action": "save"}),
        client.post(f"/admin/posts/{post_id}", data={**FORM, "action": "save", "csrf": "0" * len(field)}),
        client.post(f"/admin/posts/{post_id}", data={"action": "delete"}),
        client.post(f"/admin/posts/{post_id}", data={"action": "upload"}, files=image),
    ]
    with TestClient(app_of(database), base_url="http://127.0.0.1", client=("127.0.0.1", 50001)) as elsewhere:
        forged.append(elsewhere.post(f"/admin/posts/{post_id}", data={"action": "delete", "csrf": field}))
    for answer in forged:
        assert answer.status_code == 403, (answer.request.url, answer.status_code, answer.text[:300])
        assert "Form refused" in answer.text
    assert stored(database) == before


def test_a_stranger_is_sent_to_the_login_before_the_form_is_read(database: Database) -> None:
    with TestClient(app_of(database), base_url="http://blog.example.test", client=("192.0.2.7", 50000)) as stranger:
        answer = stranger.post("/admin/posts/new", data={**FORM, "action": "save"}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
        assert stranger.get("/admin/posts", follow_redirects=False).status_code == 303
    assert database.query_now(blog.posts) == []


def test_an_image_is_kept_in_the_media_and_the_markdown_to_paste_is_shown(
    client: TestClient, database: Database
) -> None:
    month = datetime.now(TOKYO).strftime("%Y/%m")
    data = png(40, 30)
    answer = send(client, "/admin/posts/new", "upload", FORM, image=("サーバー 写真.PNG", data, "image/png"))
    assert answer.status_code == 200, answer.text[:2000]
    url = f"/media/uploads/{month}/%E3%82%B5%E3%83%BC%E3%83%90%E3%83%BC-%E5%86%99%E7%9C%9F.png"
    assert f'<code class="paste">![]({url})</code>' in answer.text
    assert "新しい**ラック**に移しました。" in answer.text and f'value="{TITLE}"' in answer.text  # nothing typed lost
    served = client.get(url)
    assert served.status_code == 200 and served.headers["content-type"] == "image/png" and served.content == data
    assert database.query_now(blog.posts) == []  # the post itself is not saved by an upload

    again = send(client, "/admin/posts/new", "upload", FORM, image=("サーバー 写真.PNG", data, "image/png"))
    assert url in again.text  # the same bytes: the same file
    other = send(client, "/admin/posts/new", "upload", FORM, image=("サーバー 写真.PNG", png(8, 8), "image/png"))
    assert url.replace(".png", "-2.png") in other.text  # another image of that name is not overwritten


def test_an_svg_or_anything_but_an_image_is_refused_with_a_400_and_nothing_kept(
    client: TestClient, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = stored(database)
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    cases = {
        "SVG images are refused": ("logo.svg", svg, "image/svg+xml"),
        "is not an image this site keeps": ("notes.png", b"just text, named .png", "image/png"),
    }
    for message, image in cases.items():
        answer = send(client, "/admin/posts/new", "upload", FORM, image=image)
        assert answer.status_code == 400 and message in answer.text, (message, answer.text[:2000])
        assert "新しい**ラック**に移しました。" in answer.text
    monkeypatch.setattr(posts, "UPLOAD_MAX", 1024)
    large = send(
        client, "/admin/posts/new", "upload", FORM, image=("big.png", png(200, 200) + b"\0" * 2048, "image/png")
    )
    assert large.status_code == 400 and "big.png: over 1 KB" in large.text and "make the image smaller" in large.text
    nothing = send(client, "/admin/posts/new", "upload", FORM)
    assert nothing.status_code == 400 and "Choose an image file first" in nothing.text
    assert stored(database) == before


def test_a_body_past_the_editors_bound_is_413_before_anything_is_read(client: TestClient, database: Database) -> None:
    bound = posts.LARGER["/admin/posts/"]
    answer = client.post(
        "/admin/posts/new", content=b"x" * (bound + 1), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert answer.status_code == 413
    assert database.query_now(blog.posts) == []


def test_a_scheduled_post_is_listed_as_such_and_appears_on_the_site_once_its_time_passes(
    client: TestClient, database: Database
) -> None:
    due = time.time() + 2
    when = datetime.fromtimestamp(due, TOKYO)
    # datetime-local to the minute: the next whole minute would be too far for a test; the seconds are sent too,
    # as a browser does with step="1"
    fields = {**FORM, "title": "予約投稿", "slug": "scheduled", "date": when.strftime("%Y-%m-%dT%H:%M:%S")}
    saved_id(send(client, "/admin/posts/new", "save", fields))
    assert "予約投稿" not in client.get("/").text
    assert ">scheduled<" in client.get("/admin/posts").text
    url = when.strftime("/%Y/%m/scheduled/")
    assert client.get(url).status_code == 404
    while time.time() < due + 1.5:
        if "予約投稿" in client.get("/").text:
            break
        time.sleep(0.1)
    assert "予約投稿" in client.get("/").text
    assert client.get(url).status_code == 200
    assert ">published<" in client.get("/admin/posts").text


def test_deleting_asks_first_then_removes_the_post_its_tags_and_comments(
    client: TestClient, database: Database
) -> None:
    post_id = saved_id(send(client, "/admin/posts/new", "save", FORM))
    with database.transaction() as connection:
        connection.exec_driver_sql(
            "INSERT INTO comments (post_id, author, email, url, body, html, status, address, nonce, created_at)"
            f" VALUES ({post_id}, 'Hana', '', '', 'x', '<p>x</p>', 'published', '192.0.2.1', 'n1', 0)"
        )
    asked = client.get(f"/admin/posts/{post_id}/delete")
    assert asked.status_code == 200 and "its 1 comment" in asked.text
    assert len(database.query_now(blog.posts)) == 1  # asking deleted nothing
    answer = client.post(
        f"/admin/posts/{post_id}", data={"action": "delete", "csrf": csrf_of(asked.text)}, follow_redirects=False
    )
    assert answer.status_code == 303 and answer.headers["location"] == "/admin/posts?deleted=1"
    assert "Deleted." in client.get("/admin/posts?deleted=1").text
    assert database.query_now(blog.posts) == []
    assert database.query_now(lambda s: comments.published(s, post_id)) == []
    assert database.query_now(lambda s: s.run("SELECT COUNT(*) FROM search_posts WHERE rowid = ?", (post_id,))) == [
        (0,)
    ]
    assert client.get(f"/2026/05/{TITLE}/").status_code == 404
    assert client.get(f"/admin/posts/{post_id}").status_code == 404


def test_an_imported_post_edited_keeps_its_file_key_and_its_photos_beside_it(
    client: TestClient, database: Database
) -> None:
    new = blog.NewPost(
        "2024/server.md",
        "/2024/05/server/",
        "サーバー",
        "server",
        1714521600.0,
        False,
        "![ラック](rack.png)",
        '<p><img src="/media/2024/rack.png" alt="ラック"></p>\n',
    )
    with database.transaction() as connection:
        blog.import_posts(connection, [new], 1.0)
        blog.put_media(connection, "2024/rack.png", "image/png", png(2, 2), 1.0)
    [post] = database.query_now(blog.posts)
    page = client.get(f"/admin/posts/{post.id}").text
    fields = {
        "title": "サーバー",
        "slug": "server",
        "tags": "",
        "date": re.search(r'name="date" value="([^"]*)"', page).group(1),
        "state": "published",
        "kind": "post",
        "body": "![ラック](rack.png)\n\n追記。",
    }
    saved_id(send(client, f"/admin/posts/{post.id}", "save", fields))
    [after] = database.query_now(blog.posts)
    assert (after.path, after.url, after.published_at) == ("2024/server.md", "/2024/05/server/", 1714521600.0)
    assert '<img src="/media/2024/rack.png" alt="ラック"' in client.get("/2024/05/server/").text
    assert database.query_now(lambda s: s.run("SELECT COUNT(*) FROM redirects"))[0][0] == 0


def test_an_uploaded_files_name_keeps_no_directory_and_nothing_a_path_trips_on() -> None:
    assert posts.media_name("C:\\Users\\hana\\写真 1.JPG") == "写真-1"
    assert posts.media_name("../../etc/passwd") == "passwd"
    assert posts.media_name(".htaccess") == "image" and posts.media_name("..") == "image"
    assert posts.media_name("a b?c#d%e.png") == "a-b-c-d-e"


def test_a_slug_made_from_a_title_is_one_url_segment() -> None:
    from jitaku.blog.source import SLUG_LENGTH, slug_from, slug_problem

    assert slug_from("自宅サーバーの引っ越し") == "自宅サーバーの引っ越し"
    assert slug_from("  Raspberry Pi / 4 で #自宅 ") == "Raspberry-Pi-4-で-自宅"
    assert slug_from("?#/") == "post"
    long = slug_from("あ" * 200)
    assert len(long) == SLUG_LENGTH and slug_problem(long) is None


def test_a_post_saved_without_a_date_is_dated_now_to_the_second_as_a_file_can_say_it(
    client: TestClient, database: Database
) -> None:
    before = time.time()
    saved_id(send(client, "/admin/posts/new", "save", {**FORM, "date": ""}))
    [post] = database.query_now(blog.posts)
    assert post.published_at == int(post.published_at) and before - 1 <= post.published_at <= time.time()
