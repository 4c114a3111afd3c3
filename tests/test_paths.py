"""One way of quoting the site's paths (blog/paths.py): a page's links, its canonical URL, the feeds and a post's
links to its photos all quote a path the same way, each once."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from jitaku.blog.importer import read_posts
from jitaku.blog.paths import absolute, path_url, tag_path


def test_a_path_is_quoted_once_as_utf8_and_keeps_what_a_path_may_hold() -> None:
    assert path_url("/2024/05/自宅/") == "/2024/05/%E8%87%AA%E5%AE%85/"
    assert path_url("/media/a b(1)'s.jpg") == "/media/a%20b(1)'s.jpg"
    assert path_url("/a%20b?c#d") == "/a%2520b%3Fc%23d"  # a path's own %, ? and # are text, not syntax
    assert path_url(tag_path("自宅 サーバー")) == "/tags/%E8%87%AA%E5%AE%85%20%E3%82%B5%E3%83%BC%E3%83%90%E3%83%BC/"
    assert absolute("https://blog.example.test", "/日記/") == "https://blog.example.test/%E6%97%A5%E8%A8%98/"


def test_a_path_never_names_another_site() -> None:
    """`//evil.example/` in a Location is another site to a browser: leading slashes are one."""
    assert path_url("//evil.example/x/") == "/evil.example/x/"
    assert path_url("////evil.example") == "/evil.example"
    assert path_url("/a//b/") == "/a//b/"  # only the leading run: the rest of a path is as it was


def test_a_posts_link_to_its_photo_is_quoted_as_the_site_quotes_paths(tmp_path: Path) -> None:
    (tmp_path / "2024").mkdir()
    (tmp_path / "2024" / "ラック (1).jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "2024" / "post.md").write_text("---\ntitle: t\ndate: 2024-05-01\n---\n![](<ラック (1).jpg>)\n")
    [post] = read_posts(tmp_path, "/{year}/{month}/{slug}/", ZoneInfo("Asia/Tokyo"))
    assert f'src="{path_url("/media/2024/ラック (1).jpg")}"' in post.html
    assert "%28" not in post.html  # "(" may stand for itself in a path, as in the site's own links
