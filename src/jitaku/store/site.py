"""What the site reads to draw its pages: published posts by URL, newest first, by tag and by month, and the
media files they show. Where an old URL moved to, and the counter that says the blog changed, are store/blog.py's
(redirect_for, current_version).

Prepared SQL on the DB-API, as the rest of the daemon's store (the daemon never imports SQLAlchemy). A draft
is never read here, nor a post dated after NOW (a scheduled one: the admin's editor sets its date ahead); a static
page (kind "page") only by its URL. Each function is one Query for Database.query, which the site runs only when
a page is not in its cache (web/page_cache.py, which drops its pages when the next scheduled post comes due).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from jitaku.store.blog import MEDIA_PART
from jitaku.store.statements import Statements

POST = "post"
PAGE = "page"


@dataclass(frozen=True)
class Shown:
    """A published post or page, as a page of the site shows it."""

    id: int
    url: str
    title: str
    published_at: float
    updated_at: float
    kind: str
    html: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Media:
    """What the site says of a media file before it reads any of it."""

    content_type: str
    digest: str  # SHA-256, hex: the ETag
    size: int


_SHOWN = "SELECT id, url, title, published_at, updated_at, kind, html FROM posts"
_LISTED = f"{_SHOWN} WHERE draft = ? AND kind = ? AND published_at <= ?"
_NEWEST = "ORDER BY published_at DESC, id DESC"


def _shown(statements: Statements, rows: Sequence[Sequence[object]]) -> list[Shown]:
    """ROWS of _SHOWN with each post's tags, in their front matter's order."""
    tags: dict[int, list[str]] = {}
    if rows:
        ids = [int(str(row[0])) for row in rows]
        marks = ", ".join("?" * len(ids))
        for post_id, tag in statements.run(
            f"SELECT post_id, tag FROM post_tags WHERE post_id IN ({marks}) ORDER BY post_id, position", ids
        ):
            tags.setdefault(post_id, []).append(tag)
    return [
        Shown(
            id=int(str(row[0])),
            url=str(row[1]),
            title=str(row[2]),
            published_at=float(str(row[3])),
            updated_at=float(str(row[4])),
            kind=str(row[5]),
            html=str(row[6]),
            tags=tuple(tags.get(int(str(row[0])), ())),
        )
        for row in rows
    ]


def newest(statements: Statements, now: float, offset: int, limit: int) -> list[Shown]:
    """The home page's posts: LIMIT of them after the OFFSET newest."""
    rows = statements.run(f"{_LISTED} {_NEWEST} LIMIT ? OFFSET ?", (False, POST, now, limit, offset))
    return _shown(statements, rows)


def at_url(statements: Statements, now: float, url: str) -> Shown | None:
    """The published post or page at URL."""
    rows = statements.run(f"{_SHOWN} WHERE url = ? AND draft = ? AND published_at <= ?", (url, False, now))
    found = _shown(statements, rows)
    return found[0] if found else None


def tagged(statements: Statements, now: float, tag: str, offset: int, limit: int) -> list[Shown]:
    """The posts tagged TAG, newest first: LIMIT of them after the OFFSET newest (its archive's page, its feed)."""
    rows = statements.run(
        f"{_LISTED} AND id IN (SELECT post_id FROM post_tags WHERE tag = ?) {_NEWEST} LIMIT ? OFFSET ?",
        (False, POST, now, tag, limit, offset),
    )
    return _shown(statements, rows)


def between(statements: Statements, now: float, start: float, end: float, offset: int, limit: int) -> list[Shown]:
    """The posts published from START until before END (a month in the blog's time zone), newest first: LIMIT of
    them after the OFFSET newest."""
    rows = statements.run(
        f"{_LISTED} AND published_at >= ? AND published_at < ? {_NEWEST} LIMIT ? OFFSET ?",
        (False, POST, now, start, end, limit, offset),
    )
    return _shown(statements, rows)


def next_due(statements: Statements, now: float) -> float | None:
    """When the next scheduled post or page (not a draft, dated after NOW) is to appear; None: none is."""
    rows = statements.run("SELECT MIN(published_at) FROM posts WHERE draft = ? AND published_at > ?", (False, now))
    return None if rows[0][0] is None else float(rows[0][0])


def media(statements: Statements, path: str) -> Media | None:
    """The file at PATH under /media/, without its bytes."""
    rows = statements.run("SELECT content_type, digest, size FROM media WHERE path = ?", (path,))
    return Media(str(rows[0][0]), str(rows[0][1]), int(str(rows[0][2]))) if rows else None


def media_part(statements: Statements, path: str, offset: int, length: int) -> bytes:
    """LENGTH bytes of the file at PATH from OFFSET (0 first), in one query of the stored parts they cover and no
    others: a second of a 500 MB video reads its own megabyte, not the file (web/page_cache.py asks for one part
    at a time; a small file is read whole, all its parts at once)."""
    if length <= 0:
        return b""
    first, last = offset // MEDIA_PART, (offset + length - 1) // MEDIA_PART
    rows = statements.run(
        "SELECT data FROM media_parts WHERE path = ? AND n >= ? AND n <= ? ORDER BY n", (path, first, last)
    )
    start = offset - first * MEDIA_PART
    return b"".join(bytes(row[0]) for row in rows)[start : start + length]
