"""`jitaku blog import` for the site: the files under pages/ become static pages at /{slug}/, and a post's
photos and files beside it are linked at their URL under /media/, where the site serves them."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from jitaku.blog.importer import read_posts
from jitaku.blog.source import SourceError
from jitaku.store import Database, blog

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

TOKYO = ZoneInfo("Asia/Tokyo")
PATTERN = "/{year}/{month}/{slug}/"


def write(root: Path, path: str, text: str | bytes) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(text.encode() if isinstance(text, str) else text)


@pytest.fixture
def blog_dir(tmp_path: Path) -> Path:
    root = tmp_path / "blog"
    write(
        root,
        "2024/server.md",
        "---\ntitle: サーバー\ndate: 2024-05-01\n---\n"
        "![ラック](photo.jpg)\n\n[手順書](../docs/手順.pdf#p2) [外](https://example.org/photo.jpg)"
        " [無い](missing.jpg) [上](/2024/photo.jpg) [同じ](./photo.jpg)\n",
    )
    write(root, "2024/photo.jpg", b"\xff\xd8jpeg")
    write(root, "docs/手順.pdf", b"%PDF-1.4")
    write(root, "pages/about.md", "---\ntitle: このサイトについて\n---\n![私](me.png)\n")
    write(root, "pages/me.png", b"\x89PNG")
    return root


def test_a_posts_photo_beside_it_is_linked_at_its_url_under_media(blog_dir: Path) -> None:
    found = {post.path: post for post in read_posts(blog_dir, PATTERN, TOKYO)}
    html = found["2024/server.md"].html
    assert '<img src="/media/2024/photo.jpg" alt="ラック"' in html
    assert 'href="/media/docs/%E6%89%8B%E9%A0%86.pdf#p2"' in html  # up a directory, quoted, its fragment kept
    assert 'href="https://example.org/photo.jpg"' in html  # another site's: as written
    assert 'href="missing.jpg"' in html  # no such media file: as written
    assert 'href="/2024/photo.jpg"' in html  # already a path of the site
    assert html.count('"/media/2024/photo.jpg"') == 2  # ./photo.jpg too
    assert '<img src="/media/pages/me.png"' in found["pages/about.md"].html


def test_a_file_under_pages_is_a_static_page_at_its_slug_and_needs_no_date(blog_dir: Path) -> None:
    found = {post.path: post for post in read_posts(blog_dir, PATTERN, TOKYO)}
    about = found["pages/about.md"]
    assert (about.kind, about.url, about.title, about.published_at) == ("page", "/about/", "このサイトについて", 0.0)
    assert (found["2024/server.md"].kind, found["2024/server.md"].url) == ("post", "/2024/05/server/")


def test_a_post_still_needs_its_date(blog_dir: Path) -> None:
    write(blog_dir, "2024/undated.md", "---\ntitle: 日付なし\n---\n本文\n")
    with pytest.raises(SourceError, match=r"2024/undated\.md:1: missing key date"):
        read_posts(blog_dir, PATTERN, TOKYO)


def test_a_page_may_not_take_a_path_of_the_site_itself(blog_dir: Path) -> None:
    write(blog_dir, "pages/tags.md", "---\ntitle: タグ\n---\n")
    with pytest.raises(SourceError, match=r"pages/tags\.md:1: slug: 'tags' is a path of the site itself"):
        read_posts(blog_dir, PATTERN, TOKYO)


def test_a_pages_kind_is_stored_and_a_post_turned_page_is_updated(blog_dir: Path, database: Database) -> None:
    found = read_posts(blog_dir, PATTERN, TOKYO)
    with database.transaction() as connection:
        blog.import_posts(connection, found, 1000.0)
    kinds = {post.path: (post.kind, post.url) for post in database.read_now(blog.posts)}
    assert kinds == {"2024/server.md": ("post", "/2024/05/server/"), "pages/about.md": ("page", "/about/")}
    again = [blog.NewPost(**{**vars(post), "kind": "page", "url": "/server/"}) for post in found[:1]]
    with database.transaction() as connection:
        done = blog.import_posts(connection, again, 2000.0)
    assert done.updated == ["2024/server.md"]
    assert done.redirected == [("/2024/05/server/", "/server/")]
