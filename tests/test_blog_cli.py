"""`jitaku blog import` and `jitaku blog posts` as a person and a script use them: the shapes CONTRACTS.md
"The site" gives, and a broken file that names its line and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jitaku.store import Database, blog

HELLO = "---\ntitle: Hello\ndate: 2024-05-01T00:30:00+09:00\ntags: [diary]\n---\nHello *world*.\n"
JITAKU_POST = (
    '+++\ntitle = "自宅サーバーを建てた"\ndate = 2024-06-10\ntags = ["自宅サーバー", "日記"]\nslug = "jitaku-server"\n'
    'aliases = ["https://old.example/blog/2024/jitaku.html"]\n+++\n本文です。\n'
)
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4
DRAFT = "---\ntitle: Not yet\ndate: 2024-07-01\ndraft: true\n---\nwip\n"


def jitaku(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jitaku", *args, "--dir", str(data)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    """A data directory whose blog is in Tokyo time, and a directory of three posts to import."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "jitaku.toml").write_text('domains = ["example.test"]\n[blog]\ntimezone = "Asia/Tokyo"\n')
    posts = tmp_path / "posts"
    (posts / "2024").mkdir(parents=True)
    (posts / "hello.md").write_text(HELLO)
    (posts / "2024" / "自宅.md").write_text(JITAKU_POST)
    (posts / "draft.md").write_text(DRAFT)
    (posts / "2024" / "写真.jpg").write_bytes(PHOTO)
    (posts / ".obsidian").mkdir()
    (posts / ".obsidian" / "workspace.md").write_text("not a post")  # an editor's: hidden, skipped
    (posts / "2024" / "page.html").write_text("<script>alert(1)</script>")  # not media: a page of the site's origin
    return data, posts


def listed(data: Path) -> list[dict[str, Any]]:
    result = jitaku(data, "blog", "posts", "--json")
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def test_import_three_posts_and_list_them(site: tuple[Path, Path]) -> None:
    data, posts = site
    result = jitaku(data, "blog", "import", str(posts))
    assert result.returncode == 0, result.stderr
    assert f"imported 3 posts from {posts}: 3 new, 0 updated, 0 unchanged" in result.stdout
    assert "redirect /blog/2024/jitaku.html -> /2024/06/jitaku-server/" in result.stdout
    found = listed(data)
    assert [set(p) for p in found] == [{"id", "path", "title", "slug", "date", "tags", "draft", "url"}] * 3
    by_path = {p["path"]: p for p in found}
    assert [p["path"] for p in found] == ["draft.md", "2024/自宅.md", "hello.md"]  # newest first
    assert by_path["2024/自宅.md"] | {"id": 0} == {
        "id": 0,
        "path": "2024/自宅.md",
        "title": "自宅サーバーを建てた",
        "slug": "jitaku-server",
        "date": "2024-06-09T15:00:00+00:00",  # midnight in Tokyo
        "tags": ["自宅サーバー", "日記"],
        "draft": False,
        "url": "/2024/06/jitaku-server/",
    }
    assert by_path["hello.md"]["url"] == "/2024/05/hello/"  # 1 May in Tokyo, 30 April in UTC
    assert (by_path["draft.md"]["draft"], by_path["draft.md"]["slug"]) == (True, "draft")
    assert "kept 1 media file: 1 new or changed" in result.stdout
    database = Database(f"sqlite:///{data / 'jitaku.db'}")
    assert database.read_now(lambda c: blog.media_at(c, "2024/写真.jpg")) == ("image/jpeg", PHOTO)
    assert database.read_now(lambda c: blog.media_at(c, "2024/page.html")) is None
    database.close()
    table = jitaku(data, "blog", "posts")
    assert "自宅サーバーを建てた" in table.stdout and "/2024/06/jitaku-server/" in table.stdout


def test_reimport_with_a_changed_slug_redirects_the_old_url(site: tuple[Path, Path]) -> None:
    data, posts = site
    assert jitaku(data, "blog", "import", str(posts)).returncode == 0
    before = {p["path"]: p["id"] for p in listed(data)}
    (posts / "hello.md").write_text(HELLO.replace("tags:", "slug: hello-world\ntags:"))
    result = jitaku(data, "blog", "import", str(posts))
    assert result.returncode == 0, result.stderr
    assert "redirect /2024/05/hello/ -> /2024/05/hello-world/" in result.stdout
    assert "0 new, 1 updated, 2 unchanged" in result.stdout
    assert "kept 1 media file: 0 new or changed" in result.stdout
    assert {p["path"]: p["id"] for p in listed(data)} == before  # updated in place
    database = Database(f"sqlite:///{data / 'jitaku.db'}")
    assert database.read_now(blog.redirects) == [
        ("/2024/05/hello/", "/2024/05/hello-world/"),
        ("/blog/2024/jitaku.html", "/2024/06/jitaku-server/"),  # the alias
    ]
    database.close()


def test_a_new_permalink_pattern_moves_every_published_post_and_redirects_its_old_url(site: tuple[Path, Path]) -> None:
    data, posts = site
    assert jitaku(data, "blog", "import", str(posts)).returncode == 0
    config = data / "jitaku.toml"
    config.write_text(config.read_text() + 'permalink = "/posts/{year}/{slug}/"\n')
    result = jitaku(data, "blog", "import", str(posts))
    assert result.returncode == 0, result.stderr
    assert "redirect /2024/05/hello/ -> /posts/2024/hello/" in result.stdout
    assert "redirect /2024/06/jitaku-server/ -> /posts/2024/jitaku-server/" in result.stdout
    assert "/2024/07/draft/" not in result.stdout  # a draft's URL was never published
    assert {p["path"]: p["url"] for p in listed(data)}["draft.md"] == "/posts/2024/draft/"


def test_broken_front_matter_names_file_and_line_and_stores_nothing(site: tuple[Path, Path]) -> None:
    data, posts = site
    assert jitaku(data, "blog", "import", str(posts)).returncode == 0
    before = listed(data)
    (posts / "hello.md").write_text(HELLO.replace("Hello", "Changed"))  # a good change that must not land
    broken = posts / "2024" / "broken.md"
    broken.write_text("---\ntitle: 壊れた\ndate: 2024-08-01\ntags: [a, b\n---\n")
    result = jitaku(data, "blog", "import", str(posts))
    assert result.returncode == 1
    assert result.stderr.startswith(f"jitaku: {broken}:4: front matter is not valid YAML")
    assert result.stderr.rstrip().endswith("(nothing imported)") and "Traceback" not in result.stderr
    assert listed(data) == before


def test_two_posts_at_one_url_are_refused_by_name(site: tuple[Path, Path]) -> None:
    data, posts = site
    (posts / "again.md").write_text(HELLO.replace("tags:", "slug: hello\ntags:"))
    result = jitaku(data, "blog", "import", str(posts))
    assert result.returncode == 1
    assert "hello.md and again.md would both be at /2024/05/hello/" in result.stderr
    assert listed(data) == []


def test_no_posts_yet(site: tuple[Path, Path]) -> None:
    data, _ = site
    assert jitaku(data, "blog", "posts").stdout.strip() == "no posts yet: jitaku blog import DIR"
    assert listed(data) == []
