"""Full-text search over the blog's posts and the lists' archives that works for Japanese, which puts no spaces
between its words. SQLite's FTS5 with the trigram tokenizer indexes every run of three characters, so any
substring of three or more (自宅サーバー) is found through the index; a word of one or two characters (会議, 鯖)
has no trigram, and is found by LIKE over the same table, which reads every row: on a home server's thousands of
posts that is milliseconds. Both sides are NFKC-normalized, so full-width ＳＯＴＡ and half-width ｻｰﾊﾞｰ match
what was written either way.

search_posts holds a row per post (rowid = posts.id) and search_list_posts one per archived list post (rowid =
list_posts.id), written in the transaction that writes the post. On PostgreSQL the tables are plain, with
pg_trgm's GIN index of trigrams on each column where the server has pg_trgm (migration 0021): every word is
found by ILIKE over the same normalized text, which that index answers for three characters or more and a scan
for fewer, without case as FTS5's trigrams and SQLite's LIKE find ASCII; the newest first, PostgreSQL having no
bm25.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

MAX_QUERY = 200  # characters: what a search box sends, bounded
MAX_WORDS = 8
TRIGRAM = 3  # the shortest word the index finds
SNIPPET = 60  # characters of text on each side of the first word found
# The tags that end a line of text: a word never runs across them. Any other tag (<b>, <a>) sits inside a word.
_BREAK = re.compile(
    r"</?(?:p|div|br|hr|li|dt|dd|h[1-6]|tr|td|th|blockquote|pre|ul|ol|table|figure|figcaption)\b[^>]*>", re.I
)
_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Found:
    ref: int  # posts.id or list_posts.id
    title: str
    snippet: str  # HTML: the text around the first word found, each word found in <mark>


def normalized(text: str) -> str:
    """TEXT as it is indexed and searched: NFKC, one space for each run of white space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text)).strip()


def words(query: str) -> list[str]:
    """The words of QUERY (at most MAX_WORDS of its first MAX_QUERY characters), each found as a substring:
    "自宅 サーバー" finds posts holding both. An ideographic space separates words too (NFKC makes it a space)."""
    return [word for word in normalized(query[:MAX_QUERY]).split(" ") if word][:MAX_WORDS]


def text_of_html(markup: str) -> str:
    """The words of an HTML page the site made (a post's rendering, the owner's own): tags dropped, entities read.
    Japanese has no spaces to lose: <b>自宅</b>サーバー stays one word, and a paragraph's end a space."""
    return html.unescape(_TAG.sub("", _BREAK.sub(" ", markup)))


def index_post(target: Connection | Tx, post_id: int, title: str, text: str) -> None:
    _put(tx_of(target), "search_posts", post_id, title, text)


def forget_post(target: Connection | Tx, post_id: int) -> None:
    tx_of(target).run("DELETE FROM search_posts WHERE rowid = ?", (post_id,))


def index_list_post(target: Connection | Tx, list_post_id: int, subject: str, text: str) -> None:
    """TEXT: the post's author and its decoded plain text."""
    _put(tx_of(target), "search_list_posts", list_post_id, subject, text)


def _put(tx: Tx, table: str, rowid: int, title: str, text: str) -> None:
    tx.run(f"DELETE FROM {table} WHERE rowid = ?", (rowid,))
    tx.run(f"INSERT INTO {table} (rowid, title, body) VALUES (?, ?, ?)", (rowid, normalized(title), normalized(text)))


def find_posts(source: Connection | Statements, query: str, now: float, limit: int, offset: int = 0) -> list[Found]:
    """The published posts and pages (not drafts, not scheduled after NOW) holding every word of QUERY, the best
    matches first."""
    joined = "JOIN posts p ON p.id = s.rowid AND p.draft = ? AND p.published_at <= ?"
    return _find(statements_of(source), "search_posts", joined, [False, now], query, limit, offset)


def find_list_posts(
    source: Connection | Statements, list_ids: Sequence[int], query: str, limit: int, offset: int = 0
) -> list[Found]:
    """The archived posts of the lists LIST_IDS holding every word of QUERY, the best matches first."""
    if not list_ids:
        return []
    marks = ", ".join("?" for _ in list_ids)
    joined = f"JOIN list_posts p ON p.id = s.rowid AND p.list_id IN ({marks})"
    return _find(statements_of(source), "search_list_posts", joined, list(list_ids), query, limit, offset)


def _find(
    statements: Statements,
    table: str,
    joined: str,
    values: list[object],
    query: str,
    limit: int,
    offset: int,
) -> list[Found]:
    found = words(query)
    if not found:
        return []
    indexed = statements.dialect.name == "sqlite"
    like = "LIKE" if indexed else "ILIKE"  # SQLite's LIKE ignores the case of ASCII letters; PostgreSQL's does not
    long = [word for word in found if indexed and len(word) >= TRIGRAM]
    conditions, parameters = [], list(values)
    if long:
        conditions.append(f"{table} MATCH ?")
        parameters.append(" AND ".join(_phrase(word) for word in long))
    for word in found:
        if word not in long:
            conditions.append(f"(s.title {like} ? ESCAPE '\\' OR s.body {like} ? ESCAPE '\\')")
            parameters += [_pattern(word)] * 2
    order = "s.rank" if long else "s.rowid DESC"  # bm25 where the index was asked; else the newest first
    rows = statements.run(
        f"SELECT s.rowid, s.title, s.body FROM {table} s {joined} WHERE {' AND '.join(conditions)}"
        f" ORDER BY {order} LIMIT ? OFFSET ?",
        [*parameters, limit, offset],
    )
    return [Found(int(rowid), str(title), snippet(str(body), found)) for rowid, title, body in rows]


def _phrase(word: str) -> str:
    """WORD as an FTS5 string: its characters taken as they are, whatever FTS5's query syntax makes of them."""
    return '"' + word.replace('"', '""') + '"'


def _pattern(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def snippet(text: str, found: Sequence[str]) -> str:
    """HTML: up to SNIPPET characters each side of the first of FOUND in TEXT, every one of FOUND marked."""
    pattern = re.compile("|".join(re.escape(word) for word in sorted(found, key=len, reverse=True)), re.IGNORECASE)
    first = match.start() if (match := pattern.search(text)) else 0
    start, end = max(0, first - SNIPPET), min(len(text), first + SNIPPET * 2)
    shown = ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")
    parts, at = [], 0
    for match in pattern.finditer(shown):
        parts += [html.escape(shown[at : match.start()]), f"<mark>{html.escape(match.group())}</mark>"]
        at = match.end()
    return "".join(parts) + html.escape(shown[at:])


@dataclass(frozen=True)
class Archived:
    """Where an archived list post found is read: its list, the hash of its page's URL, when it was posted."""

    list_address: str
    message_hash: str
    posted_at: float
    author: str


def public_lists(source: Connection | Statements) -> list[int]:
    """The lists whose archive anyone may read, and so search from the site."""
    return [int(row[0]) for row in statements_of(source).run("SELECT id FROM lists WHERE archive = ?", ("public",))]


def archived(source: Connection | Statements, refs: Sequence[int]) -> dict[int, Archived]:
    """The archive page of each of REFS (list_posts.id) that has one (a post archived before its hash was kept
    has none until it is given one)."""
    if not refs:
        return {}
    marks = ", ".join("?" for _ in refs)
    rows = statements_of(source).run(
        "SELECT p.id, l.address, p.message_hash, p.posted_at, p.author FROM list_posts p JOIN lists l"
        f" ON l.id = p.list_id WHERE p.id IN ({marks}) AND p.message_hash IS NOT NULL",
        list(refs),
    )
    return {int(row[0]): Archived(str(row[1]), str(row[2]), float(row[3]), str(row[4])) for row in rows}
