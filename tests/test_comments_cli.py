"""`jitaku blog comments` as a script and the owner use it: the JSON shape CONTRACTS.md "The site" gives,
approve, spam and delete, each moving the blog's version (the running site drops its pages), and a clear error
for an id that is no comment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jitaku.store import Database, blog, comments
from jitaku.store.comments import NewComment
from tests.test_blog_cli import jitaku
from tests.test_web_cli import version

POST = "---\ntitle: 自宅サーバー\ndate: 2024-05-01\nslug: jitaku\n---\n本文\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A blog of one post with two comments: one published, one held."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "jitaku.toml").write_text('domains = ["example.test"]\n')
    (tmp_path / "posts").mkdir()
    (tmp_path / "posts" / "a.md").write_text(POST)
    assert jitaku(data, "blog", "import", str(tmp_path / "posts")).returncode == 0
    database = Database(f"sqlite:///{data / 'jitaku.db'}")
    with database.transaction() as connection:
        [post] = blog.posts(connection)
        for number, (author, status) in enumerate((("Hana", "published"), ("Spammer", "pending"))):
            new = NewComment(
                post.id, None, author, f"{author}@r.test", "", f"body {number}", "", "192.0.2.1", str(number), 1.0
            )
            comments.add(connection, new, status, "" if status == "published" else "First comment from this author.")
    database.close()
    return data


def listed(data: Path, *options: str) -> list[dict[str, Any]]:
    result = jitaku(data, "blog", "comments", "--json", *options)
    assert result.returncode == 0, result.stderr
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def test_comments_as_json_have_the_contract_s_keys(data: Path) -> None:
    found = listed(data)
    assert all({"id", "post", "author", "body", "status"} <= set(c) for c in found)
    assert [(c["post"], c["author"], c["body"], c["status"]) for c in found] == [
        ("/2024/05/jitaku/", "Hana", "body 0", "published"),
        ("/2024/05/jitaku/", "Spammer", "body 1", "pending"),
    ]
    assert [(c["author"], c["reason"]) for c in listed(data, "--pending")] == [
        ("Spammer", "First comment from this author.")
    ]
    table = jitaku(data, "blog", "comments")
    assert "Spammer" in table.stdout and "pending" in table.stdout


def test_approve_spam_and_delete_change_the_comment_and_the_blog_s_version(data: Path) -> None:
    held = listed(data, "--pending")[0]["id"]
    before = version(data)
    result = jitaku(data, "blog", "comments", "approve", str(held))
    assert result.returncode == 0 and f"comment {held} is published" in result.stdout
    assert listed(data, "--pending") == [] and version(data) > before
    assert jitaku(data, "blog", "comments", "spam", str(held)).returncode == 0
    assert [c["status"] for c in listed(data)] == ["published", "spam"]
    assert jitaku(data, "blog", "comments", "delete", str(held)).returncode == 0
    assert [c["author"] for c in listed(data)] == ["Hana"]


def test_an_unknown_id_is_a_clear_error(data: Path) -> None:
    result = jitaku(data, "blog", "comments", "approve", "999")
    assert result.returncode == 1
    assert "no comment 999" in result.stderr and "Traceback" not in result.stderr
    missing = jitaku(data, "blog", "comments", "delete")
    assert missing.returncode == 1 and "which comment?" in missing.stderr
