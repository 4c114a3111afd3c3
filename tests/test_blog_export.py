"""`jitaku blog export DIR` then `jitaku blog import DIR` into a fresh data directory gives the same site (issue
22: "so nobody is locked in"): every row a reader's page is drawn from compares equal, for a blog of Markdown
posts with photos, a page, a draft and aliases, a WordPress export's posts and comments, readers' comments and a
redirect made by hand; importing the export into the blog it came from changes nothing."""

from __future__ import annotations

import json
import sqlite3
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitaku.blog import comment_text, markdown
from jitaku.blog import wordpress as wp
from jitaku.blog.export import export
from jitaku.blog.importer import read_comments, read_posts
from jitaku.blog.permalink import url_of
from jitaku.store import Database, blog, comments
from jitaku.store.comments import NewComment
from tests.test_blog_cli import jitaku
from tests.test_blog_wxr import EXPORT, UPLOADS

CONFIG = 'domains = ["example.test"]\n[blog]\ntimezone = "Asia/Tokyo"\n'
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 3
# Each row a page of the site is drawn from, without the ids and times an import gives anew
SAME_SITE = {
    "posts": "SELECT path, url, title, slug, published_at, draft, source, html, kind FROM posts ORDER BY path",
    "tags": "SELECT p.path, t.tag, t.position FROM post_tags t JOIN posts p ON p.id = t.post_id ORDER BY 1, 3",
    "redirects": "SELECT old_path, new_path FROM redirects ORDER BY 1",
    "media": "SELECT path, content_type, digest, size FROM media ORDER BY 1",
    "parts": "SELECT path, n, data FROM media_parts ORDER BY 1, 2",
    "comments": (
        "SELECT c.nonce, p.path, parent.nonce, c.author, c.email, c.url, c.body, c.html, c.status, c.address,"
        " c.reason, round(c.created_at, 3) FROM comments c JOIN posts p ON p.id = c.post_id"
        " LEFT JOIN comments parent ON parent.id = c.parent_id ORDER BY 1"
    ),
}


def write(root: Path, path: str, text: str | bytes) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(text.encode() if isinstance(text, str) else text)


def fresh(root: Path) -> Path:
    data = root / "data"
    data.mkdir(parents=True)
    (data / "jitaku.toml").write_text(CONFIG)
    return data


def site(data: Path) -> dict[str, list[tuple[Any, ...]]]:
    with sqlite3.connect(data / "jitaku.db") as connection:
        return {name: connection.execute(query).fetchall() for name, query in SAME_SITE.items()}


@pytest.fixture
def owned(tmp_path: Path) -> Path:
    """A blog of everything an export must carry."""
    data = fresh(tmp_path / "first")
    posts = tmp_path / "posts"
    write(
        posts,
        "2024/自宅.md",
        "---\ntitle: 'Server: 自宅'\ndate: 2024-06-10T08:15:30.250000+09:00\ntags: [自宅サーバー, 日記]\n"
        "aliases: [/blog/2024/jitaku.html, '/old/100%25/']\n---\n![ラック](写真.jpg)\n\n本文 *です*。\n",
    )
    write(posts, "2024/写真.jpg", PHOTO)
    write(posts, "draft.md", "---\ntitle: Not yet\ndate: 2024-07-01\ndraft: true\n---\nwip\n")
    write(posts, "pages/profile.md", "---\ntitle: プロフィール\n---\n自宅から。\n")
    write(posts, "notes/colophon.md", "---\ntitle: 奥付\npage: true\nslug: colophon\n---\n手作り。\n")
    assert jitaku(data, "blog", "import", str(posts)).returncode == 0
    assert jitaku(data, "blog", "import", "--wxr", str(EXPORT), "--media", str(UPLOADS)).returncode == 0
    database = Database(f"sqlite:///{data / 'jitaku.db'}")
    with database.transaction() as connection:
        post = next(p for p in blog.posts(connection) if p.path == "2024/自宅.md")
        body = "いい記事 *です*"
        first = NewComment(
            post.id, None, "読者", "r@r.test", "", body, comment_text.render(body), "192.0.2.9", "n1", 1.7e9 + 0.123
        )
        parent = comments.add(connection, first, comments.PUBLISHED)
        reply = NewComment(
            post.id,
            parent,
            "花子",
            "h@r.test",
            "https://h.test/",
            "ありがとう",
            "<p>ありがとう</p>\n",
            "",
            "n2",
            1.7e9 + 9,
        )
        comments.add(connection, reply, comments.PENDING)
        blog.add_redirect(connection, "/feed/", "/feed.atom", 1.0)
    database.close()
    return data


def test_an_export_imported_into_a_fresh_data_dir_is_the_same_site(owned: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    result = jitaku(owned, "blog", "export", str(out))
    assert result.returncode == 0, result.stderr
    assert f"exported to {out}: 6 posts, 3 pages, 3 media files, 7 comments, 4 other redirects" in result.stdout, (
        result.stdout
    )
    assert (out / "2024/写真.jpg").read_bytes() == PHOTO
    assert (out / "uploads/2024/05/rack.jpg").read_bytes() == (UPLOADS / "2024/05/rack.jpg").read_bytes()
    front = (out / "2024/自宅.md").read_text()
    assert front.startswith("---\ntitle: 'Server: 自宅'\ndate: '2024-06-09T23:15:30.250000+00:00'\nslug: 自宅\n")
    assert "aliases:\n- /blog/2024/jitaku.html\n- /old/100%/\n---\n![ラック](写真.jpg)" in front
    assert "page: true" in (out / "notes/colophon.md").read_text()
    assert (out / "wordpress/12.html").read_text().startswith("---\ntitle: 自宅サーバーを建てた\n")
    assert {c["id"]: c["parent"] for c in json.loads((out / "comments.json").read_text())}["n2"] == "n1"
    again = fresh(tmp_path / "second")
    imported = jitaku(again, "blog", "import", str(out))
    assert imported.returncode == 0, imported.stderr
    assert "kept 7 comments: 7 new" in imported.stdout and "kept 4 other redirects" in imported.stdout
    assert site(again) == site(owned)


def test_importing_the_export_into_its_own_blog_changes_nothing(owned: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert jitaku(owned, "blog", "export", str(out)).returncode == 0
    before = site(owned)
    result = jitaku(owned, "blog", "import", str(out))
    assert result.returncode == 0, result.stderr
    assert "imported 9 posts" in result.stdout and "0 new, 0 updated, 9 unchanged" in result.stdout
    assert "kept 7 comments: 0 new" in result.stdout
    assert site(owned) == before


def test_export_refuses_a_directory_with_files_and_writes_nothing(owned: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    write(out, "mine.txt", "keep me")
    result = jitaku(owned, "blog", "export", str(out))
    assert result.returncode == 1 and "not an empty directory" in result.stderr
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_a_stored_path_that_would_leave_the_export_is_refused_before_any_file_is_written(
    owned: Path, tmp_path: Path
) -> None:
    with sqlite3.connect(owned / "jitaku.db") as connection:  # as no import makes one: a database edited by hand
        connection.execute(
            "INSERT INTO media (path, content_type, digest, size, updated_at) VALUES ('../x', 'a/b', '', 0, 0)"
        )
    out = tmp_path / "export"
    result = jitaku(owned, "blog", "export", str(out))
    assert result.returncode == 1 and "../x: not a path inside the export" in result.stderr
    assert not out.exists() or not any(out.iterdir())


def test_a_broken_comments_file_names_the_comment_and_key_and_imports_nothing(owned: Path, tmp_path: Path) -> None:
    out = tmp_path / "export"
    assert jitaku(owned, "blog", "export", str(out)).returncode == 0
    kept = json.loads((out / "comments.json").read_text())
    kept[1]["status"] = "approved"
    (out / "comments.json").write_text(json.dumps(kept))
    again = fresh(tmp_path / "second")
    result = jitaku(again, "blog", "import", str(out))
    assert result.returncode == 1
    assert f"{out / 'comments.json'}: comment 2: status: expected published, pending or spam" in result.stderr
    assert not (again / "jitaku.db").exists() or site(again)["posts"] == []


def test_a_comment_s_html_from_a_file_passes_the_comment_filter(tmp_path: Path) -> None:
    write(tmp_path, "a.md", "---\ntitle: a\ndate: 2024-05-01\n---\na\n")
    write(
        tmp_path,
        "comments.json",
        json.dumps(
            [
                {
                    "id": "x",
                    "post": "a.md",
                    "parent": None,
                    "author": "a",
                    "body": "b",
                    "status": "published",
                    "date": "2024-05-01T00:00:00Z",
                    "html": '<p onclick="x()">hi<script>alert(1)</script></p>',
                }
            ]
        ),
    )
    [kept] = read_comments(tmp_path)
    assert kept.html == "<p>hi</p>"
    assert [p.path for p in read_posts(tmp_path, "/{year}/{slug}/", None)] == ["a.md"]


_TEXT = st.text(alphabet=string.ascii_letters + "自宅サーバー *_`#[]()<>&\n-:'\"", max_size=40)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    title=_TEXT.map(str.strip).filter(bool).filter(lambda t: "\n" not in t),
    body=_TEXT,
    tags=st.lists(st.sampled_from(["自宅サーバー", "日記", "RAID", "a b"]), unique=True, max_size=3),
    draft=st.booleans(),
    seconds=st.integers(0, 2**31),
    wordpress=st.booleans(),
)
def test_any_post_comes_back_from_its_export_the_same(
    tmp_path_factory: pytest.TempPathFactory,
    title: str,
    body: str,
    tags: list[str],
    draft: bool,
    seconds: int,
    wordpress: bool,
) -> None:
    """A post as the store keeps it, whatever its title, body (Markdown, or WordPress's HTML) and date, written by
    the export and read by the importer, is the post again."""
    root = tmp_path_factory.mktemp("post")
    data = fresh(root)
    database = Database(f"sqlite:///{data / 'jitaku.db'}")
    try:
        path = "wordpress/1.html" if wordpress else "a/post.md"
        with database.transaction() as connection:
            shown = wp.render(body, wp.uploads_resolver(frozenset())) if wordpress else markdown.render(body)
            new = blog.NewPost(
                path,
                url_of("/{year}/{slug}/", "s", seconds, None),
                title,
                "s",
                float(seconds),
                draft,
                body,
                shown,
                tuple(tags),
            )
            blog.import_posts(connection, [new], 1.0)
        database.read_now(lambda connection: export(connection, root / "out"))
        [back] = read_posts(root / "out", "/{year}/{slug}/", None)
        assert back == new
    finally:
        database.close()
