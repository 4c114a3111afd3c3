"""What the feeds and the sitemap read besides the posts the pages show (store/site.py's newest and tagged): the
newest published comments, and every published URL with when it last changed.

Prepared SQL on the DB-API (store/statements.py), as the rest of the daemon's store, which imports no
SQLAlchemy. Only published rows: a draft's URL was never published, nor a scheduled post's (dated after NOW) yet;
a page (kind "page", the About page) is in the sitemap but never in a feed.
"""

from __future__ import annotations

from dataclasses import dataclass

from jitaku.store.statements import Statements


@dataclass(frozen=True)
class FeedComment:
    """A published comment, without the email its writer gave (never shown)."""

    id: int
    post_url: str
    post_title: str
    author: str
    url: str  # the writer's own site, "" for none
    html: str  # the body, sanitized at submission
    created_at: float


@dataclass(frozen=True)
class Published:
    """Every URL the sitemap lists, each with when it last changed: posts and pages, and the tags' archives."""

    posts: list[tuple[str, float]]
    tags: list[tuple[str, float]]
    dated: list[tuple[float, float]]  # each post's published_at and updated_at, for the months' archives


_PUBLISHED = "p.draft = ? AND p.published_at <= ? AND p.kind = 'post'"


def newest_comments(source: Statements, now: float, limit: int) -> list[FeedComment]:
    """The LIMIT newest published comments on published posts and pages, newest first."""
    rows = source.run(
        "SELECT c.id, p.url, p.title, c.author, c.url, c.html, c.created_at FROM comments c"
        " JOIN posts p ON p.id = c.post_id WHERE c.status = 'published' AND p.draft = ? AND p.published_at <= ?"
        " ORDER BY c.created_at DESC, c.id DESC LIMIT ?",
        (False, now, limit),
    )
    return [FeedComment(*row) for row in rows]


def published(source: Statements, now: float) -> Published:
    """Every published post's and page's URL, and every tag of a published post, with its newest change; and
    when each post was published, for the months' archives (months fall by the blog's time zone, not SQL's)."""
    posts = source.run(
        "SELECT url, updated_at FROM posts WHERE draft = ? AND published_at <= ? ORDER BY published_at DESC, id DESC",
        (False, now),
    )
    tags = source.run(
        "SELECT t.tag, MAX(p.updated_at) FROM post_tags t JOIN posts p ON p.id = t.post_id"
        f" WHERE {_PUBLISHED} GROUP BY t.tag ORDER BY t.tag",
        (False, now),
    )
    dated = source.run(f"SELECT p.published_at, p.updated_at FROM posts p WHERE {_PUBLISHED}", (False, now))
    return Published(
        [(url, at) for url, at in posts], [(tag, at) for tag, at in tags], [(pub, at) for pub, at in dated]
    )
