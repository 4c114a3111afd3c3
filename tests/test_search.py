"""Search that works for Japanese: words of three characters or more through FTS5's trigram index, of one or two
(会議, 鯖) by the fallback, full-width and half-width alike, drafts and scheduled posts never found, and whatever a
visitor types taken as text, never as FTS5's query syntax."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.engine import Connection

from jitaku.store import Database, blog, search
from tests.postgres import database_url, on_postgresql
from tests.test_blog import imported, post

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

NOW = 1_900_000_000.0  # 2030


@pytest.fixture
def database(tmp_path: Path) -> Database:
    database = Database(database_url(tmp_path))
    imported(
        database,
        post("a.md", "a", title="自宅サーバーを建てた", html="<p>押し入れの<b>自宅サーバー</b>が二十年目。</p>"),
        post("b.md", "b", title="町内会", html="<p>来週の会議は公民館で。鯖の味噌煮。</p>"),
        post("c.md", "c", title="Draft", draft=True, html="<p>下書きの会議メモ</p>"),
        post("d.md", "d", title="ＳＯＴＡ運用", html="<p>50%_off &lt;script&gt; FT8 で交信</p>"),
    )
    return database


def titles(database: Database, query: str, now: float = NOW) -> list[str]:
    return [found.title for found in database.read_now(lambda c: search.find_posts(c, query, now, 20))]


def test_a_long_japanese_word_is_found_through_the_trigram_index(database: Database) -> None:
    assert titles(database, "自宅サーバー") == ["自宅サーバーを建てた"]
    (found,) = database.read_now(lambda c: search.find_posts(c, "自宅サーバー", NOW, 20))
    assert "<mark>自宅サーバー</mark>が二十年目" in found.snippet


def test_one_and_two_character_words_are_found_without_the_index(database: Database) -> None:
    assert titles(database, "会議") == ["町内会"]  # the draft's 会議 is not found
    assert titles(database, "鯖") == ["町内会"]
    assert titles(database, "会議 公民館") == ["町内会"]  # every word, short and long together
    assert titles(database, "会議 自宅サーバー") == []


def test_full_width_and_half_width_find_each_other(database: Database) -> None:
    assert titles(database, "SOTA") == ["SOTA運用"]  # the title as indexed, NFKC
    assert titles(database, "ｆｔ８") == ["SOTA運用"]
    assert titles(database, "自宅　サーバー") == ["自宅サーバーを建てた"]  # an ideographic space separates words


def test_what_a_visitor_types_is_text_never_query_syntax(database: Database) -> None:
    assert titles(database, '"会議') == []
    assert titles(database, "NEAR(a b)") == []
    assert titles(database, "50%_") == ["SOTA運用"]
    assert titles(database, "会%議") == []  # a LIKE wildcard matches only itself
    assert titles(database, "   ") == []
    (found,) = database.read_now(lambda c: search.find_posts(c, "script", NOW, 20))
    assert "&lt;<mark>script</mark>&gt;" in found.snippet  # the post's text, escaped


def test_a_scheduled_post_is_found_once_its_time_has_come(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    imported(database, post("s.md", "s", date="2031-01-01T00:00:00", title="予約投稿", html="<p>会議</p>"))
    assert titles(database, "会議", now=NOW) == []
    assert titles(database, "会議", now=NOW + 86400 * 365 * 3) == ["予約投稿"]


def test_an_updated_post_is_found_by_its_new_words_only(database: Database) -> None:
    imported(database, post("b.md", "b", title="町内会", html="<p>会合は中止</p>"))
    assert titles(database, "会議") == []
    assert titles(database, "会合") == ["町内会"]


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_any_query_answers_without_an_error(query: str) -> None:
    found = search.words(query)
    assert len(found) <= search.MAX_WORDS and all(word and " " not in word for word in found)
    assert "<" not in search.snippet("<b>" + query, found).replace("<mark>", "").replace("</mark>", "")


def test_any_query_runs_against_the_index(database: Database) -> None:
    for query in ['"', "*", "a OR b", "-x", "^", "AND", "(", "会議*", "'; DROP TABLE posts; --", "x" * 500]:
        database.read_now(lambda c, q=query: search.find_posts(c, q, NOW, 20))
    assert len(database.read_now(blog.posts)) == 4


def test_posts_imported_before_the_upgrade_are_found_after_it(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine, text

    from jitaku.store.engine import migrations_config

    url = database_url(tmp_path)
    config = migrations_config()
    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        if on_postgresql():  # a new database of the tests' server is at the newest revision already
            command.downgrade(config, "0020")
        else:
            command.upgrade(config, "0020")
        connection.execute(
            text(
                "INSERT INTO posts (path, url, title, slug, published_at, draft, source, html, created_at, updated_at)"
                " VALUES ('a.md', '/a/', '古い記事', 'a', 1, :draft, '', '<p>自宅サーバーの<em>会議</em></p>', 1, 1)"
            ),
            {"draft": False},
        )
    engine.dispose()
    database = Database(url)  # upgraded, as `jitaku serve` does
    assert titles(database, "自宅サーバー") == titles(database, "会議") == ["古い記事"]


@pytest.mark.skipif(not on_postgresql(), reason="PostgreSQL's index: SQLite's is FTS5's own")
def test_on_postgresql_a_long_word_is_found_through_pg_trgms_index(database: Database) -> None:
    def plan(connection: Connection) -> str:
        connection.execute(text("SET LOCAL enable_seqscan = off"))  # a few rows: the planner would scan them
        query = "EXPLAIN SELECT rowid FROM search_posts WHERE body ILIKE '%自宅サーバー%'"
        return "\n".join(row[0] for row in connection.execute(text(query)))

    assert "search_posts_body_trigrams" in database.read_now(plan)
    assert titles(database, "自宅サーバー") == ["自宅サーバーを建てた"]
