"""The blog's store and its posts' files: front matter read as CONTRACTS.md "The site" says, posts keyed by
their path, and every URL once published answering with a redirect to where its post is now."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from sqlalchemy import create_engine, text

from jitaku.blog.permalink import check_pattern, url_of
from jitaku.blog.source import SourceError, parse
from jitaku.store import Database, blog, site
from jitaku.store.engine import migrations_config
from jitaku.store.revision import SCHEMA_REVISION, stored_revision
from jitaku.store.statements import Statements

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

TOKYO = ZoneInfo("Asia/Tokyo")
PATTERN = "/{year}/{month}/{slug}/"


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def post(path: str, slug: str, date: str = "2024-05-01T00:00:00", **fields: object) -> blog.NewPost:
    published_at = utc(date)
    values: dict[str, object] = {
        "title": path,
        "draft": False,
        "source": "body",
        "html": "<p>body</p>\n",
        "tags": (),
        "aliases": (),
    }
    values.update(fields)
    return blog.NewPost(
        path=path,
        url=url_of(PATTERN, slug, published_at, UTC),
        slug=slug,
        published_at=published_at,
        **values,  # type: ignore[arg-type]
    )


def imported(database: Database, *posts: blog.NewPost) -> blog.Imported:
    with database.transaction() as connection:
        return blog.import_posts(connection, posts, 1000.0)


def test_yaml_front_matter_with_a_japanese_title_and_tags_and_a_date_in_the_blogs_time_zone() -> None:
    data = "---\ntitle: 自宅サーバーを建てた\ndate: 2024-05-01 00:30\ntags: [自宅サーバー, 日記, 日記]\n---\n本文\n"
    source = parse("2024/自宅.md", "posts/2024/自宅.md", data.encode(), TOKYO)
    assert source.title == "自宅サーバーを建てた"
    assert source.tags == ("自宅サーバー", "日記")
    assert source.slug == "自宅"  # the file's name
    assert source.published_at == utc("2024-04-30T15:30:00")
    assert url_of(PATTERN, source.slug, source.published_at, TOKYO) == "/2024/05/自宅/"  # May in Tokyo
    assert (source.draft, source.aliases, source.body) == (False, (), "本文\n")


def test_toml_front_matter_with_slug_draft_and_aliases() -> None:
    data = (
        '+++\ntitle = "Moved"\ndate = 2024-06-10T09:00:00+09:00\nslug = "new-name"\ndraft = true\n'
        'aliases = ["https://old.example/blog/%E8%87%AA%E5%AE%85.html", "2019/old/"]\ndescription = "kept for Hugo"\n'
        "+++\nBody\n"
    )
    source = parse("moved.md", "moved.md", data.encode(), TOKYO)
    assert (source.slug, source.draft) == ("new-name", True)
    assert source.aliases == ("/blog/自宅.html", "/2019/old/")
    assert source.published_at == utc("2024-06-10T00:00:00")


def test_a_page_bundle_takes_its_directorys_name_as_slug() -> None:
    source = parse("my trip/index.md", "x", b"---\ntitle: t\ndate: 2024-01-01\n---\n", UTC)
    assert source.slug == "my-trip"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("---\ntitle: t\ndate: 2024-01-01\ntags: [a, b\n---\n", "y.md:4: front matter is not valid YAML"),
        ('+++\ntitle = "t"\ndate = 2024-01-01\nx = = 3\n+++\n', "y.md:4: front matter is not valid TOML"),
        ("---\ntitle: t\n\ndate: next tuesday\n---\n", "y.md:4: date: expected a date"),
        ("---\ntitle: t\ndate: 2024-01-01\ntags: 日記\n---\n", "y.md:4: tags: expected a list"),
        ("---\ntitle: t\ndate: 2024-01-01\nslug: a/b\n---\n", "y.md:4: slug: 'a/b'"),
        # uvicorn decodes %2F: the archive /tags/TCP%2FIP/ would be asked for as /tags/TCP/IP/, never found
        ("---\ntitle: t\ndate: 2024-01-01\ntags: [TCP/IP]\n---\n", "y.md:4: tags: 'TCP/IP': a tag must not"),
        ("---\ntitle: t\ndate: 2024-01-01\ndraft: maybe\n---\n", "y.md:4: draft: expected true or false"),
        ("---\ndate: 2024-01-01\n---\n", "y.md:1: missing key title"),
        ("---\ntitle: t\n", "y.md:1: the front matter opened by --- is never closed"),
        ("# just Markdown\n", "y.md:1: no front matter"),
    ],
)
def test_broken_front_matter_names_the_file_line_and_key(text: str, said: str) -> None:
    with pytest.raises(SourceError) as raised:
        parse("y.md", "y.md", text.encode(), UTC)
    assert str(raised.value).startswith(said)


def test_a_file_that_is_not_utf8_names_its_line() -> None:
    with pytest.raises(SourceError, match=r"^y.md:2: not UTF-8 text"):
        parse("y.md", "y.md", "---\ntitle: 自宅\ndate: 2024-01-01\n---\n日記".encode("shift_jis"), UTC)


def test_a_permalink_pattern_needs_the_slug() -> None:
    with pytest.raises(ValueError, match="needs {slug}"):
        check_pattern("/{year}/{month}/")
    with pytest.raises(ValueError, match="unknown field {title}"):
        check_pattern("/{title}/")


def test_importing_again_updates_a_post_in_place_and_counts_what_changed(database: Database) -> None:
    first = imported(database, post("a.md", "a", tags=("自宅サーバー", "日記")), post("b.md", "b"))
    assert (first.added, first.updated) == (["a.md", "b.md"], [])
    (a,) = [p for p in database.read_now(blog.posts) if p.path == "a.md"]
    again = imported(database, post("a.md", "a", title="新しい題", tags=("日記",)), post("b.md", "b"))
    assert (again.added, again.updated, again.unchanged, again.redirected) == ([], ["a.md"], ["b.md"], [])
    (now,) = [p for p in database.read_now(blog.posts) if p.path == "a.md"]
    assert (now.id, now.title, now.tags) == (a.id, "新しい題", ("日記",))  # comments keep their post


def test_a_changed_slug_or_date_redirects_the_old_url_and_no_redirect_chains(database: Database) -> None:
    version = database.read_now(blog.current_version)
    imported(database, post("a.md", "first"))
    moved = imported(database, post("a.md", "second"))
    assert moved.redirected == [("/2024/05/first/", "/2024/05/second/")]
    imported(database, post("a.md", "second", date="2025-01-02T00:00:00"))
    assert database.read_now(blog.redirects) == [
        ("/2024/05/first/", "/2025/01/second/"),  # straight to the post, not through /2024/05/second/
        ("/2024/05/second/", "/2025/01/second/"),
    ]
    imported(database, post("a.md", "first"))  # back where it began: that URL is live again
    assert database.read_now(lambda c: blog.redirect_for(c, "/2024/05/first/")) is None
    assert database.read_now(lambda c: blog.redirect_for(c, "/2025/01/second/")) == "/2024/05/first/"
    assert database.read_now(blog.current_version) > version  # the running site drops its cached pages


def test_a_drafts_url_was_never_published_so_moving_it_leaves_no_redirect(database: Database) -> None:
    imported(database, post("a.md", "working-title", draft=True))
    assert imported(database, post("a.md", "final", draft=True)).redirected == []
    assert database.read_now(blog.redirects) == []


def test_aliases_redirect_to_the_post(database: Database) -> None:
    first = imported(database, post("a.md", "a", aliases=("/blog/old.html",)))
    assert first.redirected == [("/blog/old.html", "/2024/05/a/")]
    assert imported(database, post("a.md", "a", aliases=("/blog/old.html",))).redirected == []


def test_two_posts_at_one_url_or_an_alias_on_a_post_change_nothing(database: Database) -> None:
    imported(database, post("a.md", "a"))
    with pytest.raises(blog.BlogError, match="b.md and a.md would both be at /2024/05/a/"):
        imported(database, post("b.md", "a"))
    with pytest.raises(blog.BlogError, match="the alias /2024/05/a/ is the URL of a.md"):
        imported(database, post("c.md", "c"), post("b.md", "b", aliases=("/2024/05/a/",)))
    assert [p.path for p in database.read_now(blog.posts)] == ["a.md"]
    # a post that moves frees its URL for another in the same import, in whatever order they come
    imported(database, post("b.md", "a"), post("a.md", "b"))
    urls = {p.path: p.url for p in database.read_now(blog.posts)}
    assert urls == {"a.md": "/2024/05/b/", "b.md": "/2024/05/a/"}
    assert database.read_now(blog.redirects) == []  # /2024/05/a/ is b.md's now, not a redirect to a.md
    imported(database, post("a.md", "a"), post("b.md", "b"))  # and back: each takes the other's URL
    urls = {p.path: p.url for p in database.read_now(blog.posts)}
    assert urls == {"a.md": "/2024/05/a/", "b.md": "/2024/05/b/"}
    assert database.read_now(blog.redirects) == []


def test_media_are_kept_by_path_and_rewritten_only_when_they_change(database: Database) -> None:
    jpeg = b"\xff\xd8\xff" + bytes(range(256)) * 10
    with database.transaction() as connection:
        assert blog.put_media(connection, "2024/写真.jpg", "image/jpeg", jpeg, 1.0)
    version = database.read_now(blog.current_version)
    with database.transaction() as connection:
        assert not blog.put_media(connection, "2024/写真.jpg", "image/jpeg", jpeg, 2.0)
    assert database.read_now(blog.current_version) == version  # nothing changed: cached pages stay
    with database.transaction() as connection:
        assert blog.put_media(connection, "2024/写真.jpg", "image/jpeg", jpeg[:100], 3.0)
    assert database.read_now(lambda c: blog.media_at(c, "2024/写真.jpg")) == ("image/jpeg", jpeg[:100])
    assert database.read_now(lambda c: blog.media_at(c, "2024/other.jpg")) is None


VIDEO = bytes(range(256)) * (blog.MEDIA_PART * 5 // 2 // 256) + b"tail"  # two parts and a half, and 4 bytes


def test_a_file_of_several_parts_is_kept_and_read_byte_for_byte(database: Database) -> None:
    with database.transaction() as connection:
        assert blog.put_media(connection, "2024/video.mp4", "video/mp4", VIDEO, 1.0)
    assert database.read_now(lambda c: blog.media_at(c, "2024/video.mp4")) == ("video/mp4", VIDEO)
    assert database.query_now(lambda s: site.media(s, "2024/video.mp4")) == site.Media(
        "video/mp4", hashlib.sha256(VIDEO).hexdigest(), len(VIDEO)
    )
    boundary = blog.MEDIA_PART - 10
    assert database.query_now(lambda s: site.media_part(s, "2024/video.mp4", boundary, 20)) == VIDEO[boundary:][:20]
    with database.transaction() as connection:  # a shorter file in its place leaves none of the old parts
        assert blog.put_media(connection, "2024/video.mp4", "video/mp4", b"short", 2.0)
    assert database.read_now(lambda c: blog.media_at(c, "2024/video.mp4")) == ("video/mp4", b"short")
    assert database.query_now(lambda s: site.media_part(s, "2024/video.mp4", 0, 100)) == b"short"


def test_a_range_of_a_large_file_reads_only_the_parts_it_covers(database: Database) -> None:
    with database.transaction() as connection:
        blog.put_media(connection, "video.mp4", "video/mp4", VIDEO, 1.0)
    read: list[int] = []  # the bytes of each statement's rows
    at = blog.MEDIA_PART * 2 + 1
    assert database.query_now(lambda s: counted_part(s, read, at, 3)) == VIDEO[at : at + 3]
    assert read == [len(VIDEO) - 2 * blog.MEDIA_PART]  # one statement, the last part's bytes only
    read.clear()
    at = blog.MEDIA_PART - 1
    assert database.query_now(lambda s: counted_part(s, read, at, 2)) == VIDEO[at : at + 2]
    assert read == [2 * blog.MEDIA_PART]  # across a boundary: the two parts it spans


def counted_part(statements: Statements, read: list[int], offset: int, length: int) -> bytes:
    run = statements.run

    def recorded(statement: str, parameters: Sequence[Any] = ()) -> list[Any]:
        rows = run(statement, parameters)
        read.append(sum(len(row[0]) for row in rows))
        return rows

    statements.run = recorded  # type: ignore[method-assign]
    return site.media_part(statements, "video.mp4", offset, length)


def test_a_database_at_0019_moves_its_media_into_parts_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = migrations_config()
    engine = create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0019")
        connection.execute(
            text(
                "INSERT INTO media (path, content_type, digest, data, updated_at) VALUES (:p, 'video/mp4', 'd', :d, 1)"
            ),
            [{"p": "video.mp4", "d": VIDEO}, {"p": "empty.txt", "d": b""}],
        )
    engine.dispose()
    database = Database(url)
    assert database.read_now(lambda c: blog.media_at(c, "video.mp4")) == ("video/mp4", VIDEO)
    assert database.read_now(lambda c: blog.media_at(c, "empty.txt")) == ("video/mp4", b"")
    assert database.query_now(lambda s: site.media(s, "video.mp4")) == site.Media("video/mp4", "d", len(VIDEO))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0019")
        data = connection.execute(text("SELECT data FROM media WHERE path = 'video.mp4'")).scalar_one()
        assert bytes(data) == VIDEO
        command.upgrade(config, "head")
    assert database.read_now(lambda c: blog.media_at(c, "video.mp4")) == ("video/mp4", VIDEO)
    database.close()


def test_a_database_at_0017_upgrades_to_the_blogs_tables_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = migrations_config()
    engine = create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0017")
    engine.dispose()
    database = Database(url)  # brings it to the newest revision, as `jitaku serve` does
    assert database.query_now(stored_revision) == SCHEMA_REVISION
    imported(database, post("a.md", "自宅", tags=("自宅サーバー",)))
    assert database.read_now(blog.posts)[0].tags == ("自宅サーバー",)
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0017")
        assert not connection.execute(text("SELECT name FROM sqlite_master WHERE name LIKE 'post%'")).all()
        command.upgrade(config, "head")
    assert database.read_now(blog.posts) == []
    database.close()
