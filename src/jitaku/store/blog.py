"""The blog's rows: posts with their tags, the redirects that keep old URLs working, the media files the posts
show, and the counter the running site watches.

Prepared SQL on the DB-API (store/statements.py), portable to PostgreSQL, as the rest of the daemon's store:
the site will read posts without SQLAlchemy. The CLI passes its Core connections, which statements_of and tx_of
wrap, so that `jitaku blog import` writes every post in one transaction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jitaku.store import search
from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class BlogError(Exception):
    """An import that would leave two posts at one URL, or an old URL shadowing a post: nothing is written."""


@dataclass(frozen=True)
class NewPost:
    """A post as an import writes it: its file read, its URL made, its Markdown rendered."""

    path: str
    url: str
    title: str
    slug: str
    published_at: float
    draft: bool
    source: str
    html: str
    tags: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    kind: str = "post"  # or "page": a static page (About), at /{slug}/, never on the home page nor in an archive


@dataclass(frozen=True)
class Post:
    id: int
    path: str
    url: str
    title: str
    slug: str
    published_at: float
    draft: bool
    tags: tuple[str, ...]
    updated_at: float
    kind: str = "post"


@dataclass
class Imported:
    """What an import did, by file path; the redirects it recorded as (old URL, new URL)."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    redirected: list[tuple[str, str]] = field(default_factory=list)


# The bytes of a media file in each row of media_parts (the last may be shorter): what the site sends at once. The
# parts stored are cut at it; changing it takes a migration.
MEDIA_PART = 256 * 1024
_POST = "SELECT id, path, url, title, slug, published_at, draft, updated_at, kind FROM posts"
_COMPARED = "SELECT id, path, url, title, slug, published_at, draft, source, html, kind FROM posts"
_BATCH = 500  # values in one IN (...): well under SQLite's and PostgreSQL's limits on bound values


def import_posts(target: Connection | Tx, new: Sequence[NewPost], now: float) -> Imported:
    """Add or update each of NEW by its path; a published post whose URL changed, and each alias, leaves a
    permanent redirect to the post's URL. A BlogError before anything is written when two posts would share
    a URL or an alias is another post's URL."""
    tx = tx_of(target)
    _check_urls({str(path): str(url) for path, url in tx.run("SELECT path, url FROM posts")}, new)
    old = _compared(tx, [post.path for post in new])  # what a save in the admin compares: its own post alone
    old_tags = _tags_by_post(tx, [row[0] for row in old.values()])
    # Each post that moves lets go of its URL first, so that another may take it whatever their order in NEW
    # (posts.url is unique, checked at each statement)
    moving = [(f"moving:{old[p.path][0]}", old[p.path][0]) for p in new if p.path in old and old[p.path][2] != p.url]
    tx.run_many("UPDATE posts SET url = ? WHERE id = ?", moving)
    done = Imported()
    for post in new:
        before = old.get(post.path)
        values = (post.url, post.title, post.slug, post.published_at, post.draft, post.source, post.html, post.kind)
        if before is None:
            (post_id,) = tx.run(
                "INSERT INTO posts (path, url, title, slug, published_at, draft, source, html, kind, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (post.path, *values, now, now),
            )[0]
            done.added.append(post.path)
            search.index_post(tx, post_id, post.title, search.text_of_html(post.html))
        else:
            post_id = before[0]
            stored = (before[2], before[3], before[4], before[5], bool(before[6]), before[7], before[8], before[9])
            if stored == values and old_tags.get(post_id, ()) == post.tags:
                done.unchanged.append(post.path)
            else:
                tx.run(
                    "UPDATE posts SET url = ?, title = ?, slug = ?, published_at = ?, draft = ?, source = ?,"
                    " html = ?, kind = ?, updated_at = ? WHERE id = ?",
                    (*values, now, post_id),
                )
                done.updated.append(post.path)
                search.index_post(tx, post_id, post.title, search.text_of_html(post.html))
            if before[2] != post.url and not before[6]:  # a draft's URL was never published
                _redirect(tx, before[2], post.url, now)
                done.redirected.append((before[2], post.url))
        tx.run("DELETE FROM post_tags WHERE post_id = ?", (post_id,))
        tx.run_many(
            "INSERT INTO post_tags (post_id, tag, position) VALUES (?, ?, ?)",
            [(post_id, tag, position) for position, tag in enumerate(post.tags)],
        )
        for alias in post.aliases:
            if alias != post.url and redirect_for(tx, alias) != post.url:
                _redirect(tx, alias, post.url, now)
                done.redirected.append((alias, post.url))
    # A URL a published post answers at again redirects no more
    tx.run(
        "DELETE FROM redirects WHERE old_path = new_path OR old_path IN (SELECT url FROM posts WHERE draft = ?)",
        (False,),
    )
    if done.added or done.updated or done.redirected:
        changed(tx)
    return done


def _compared(tx: Tx, paths: Sequence[str]) -> dict[str, Any]:
    """The stored rows (_COMPARED) of the posts at PATHS, by path, in queries of at most _BATCH paths."""
    found: dict[str, Any] = {}
    for start in range(0, len(paths), _BATCH):
        batch = paths[start : start + _BATCH]
        marks = ", ".join("?" for _ in batch)
        found.update((row[1], row) for row in tx.run(f"{_COMPARED} WHERE path IN ({marks})", batch))
    return found


def _check_urls(urls: dict[str, str], new: Sequence[NewPost]) -> None:
    """URLS: every stored post's, by its path."""
    owner = {url: path for path, url in urls.items()}
    for post in new:  # a post that moves frees its old URL for another of this import
        if url_before := urls.get(post.path):
            owner.pop(url_before, None)
    for post in new:
        other = owner.setdefault(post.url, post.path)
        if other != post.path:
            raise BlogError(f"{post.path} and {other} would both be at {post.url}: give one a slug of its own")
    for post in new:
        for alias in post.aliases:
            other = owner.get(alias, post.path)
            if other != post.path:
                raise BlogError(f"{post.path}: the alias {alias} is the URL of {other}")


def _redirect(tx: Tx, old: str, new: str, now: float) -> None:
    """OLD answers with NEW from now on, and so does every URL that answered with OLD (no chains)."""
    tx.run("UPDATE redirects SET new_path = ? WHERE new_path = ?", (new, old))
    tx.run(
        "INSERT INTO redirects (old_path, new_path, created_at) VALUES (?, ?, ?)"
        " ON CONFLICT (old_path) DO UPDATE SET new_path = excluded.new_path",
        (old, new, now),
    )


def _tags_by_post(source: Statements, post_ids: Sequence[int] | None = None) -> dict[int, tuple[str, ...]]:
    """The tags of every post, or of those of POST_IDS, in order."""
    tags: dict[int, list[str]] = {}
    query = "SELECT post_id, tag FROM post_tags"
    batches = [None] if post_ids is None else [post_ids[at : at + _BATCH] for at in range(0, len(post_ids), _BATCH)]
    for batch in batches:
        where = "" if batch is None else f" WHERE post_id IN ({', '.join('?' for _ in batch)})"
        for post_id, tag in source.run(f"{query}{where} ORDER BY post_id, position", batch or ()):
            tags.setdefault(post_id, []).append(tag)
    return {post_id: tuple(found) for post_id, found in tags.items()}


def posts(source: Connection | Statements) -> list[Post]:
    """Every post, drafts too, newest first."""
    statements = statements_of(source)
    tags = _tags_by_post(statements)
    return [
        Post(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), tags.get(row[0], ()), row[7], row[8])
        for row in statements.run(f"{_POST} ORDER BY published_at DESC, id DESC")
    ]


def sources(source: Connection | Statements) -> dict[int, str]:
    """Each post's body as it was imported (Markdown, or WordPress's HTML), by id: what an export writes."""
    return {int(post_id): str(body) for post_id, body in statements_of(source).run("SELECT id, source FROM posts")}


def redirect_for(source: Connection | Statements, path: str) -> str | None:
    """Where the old URL PATH has moved to; None when it never moved."""
    rows = statements_of(source).run("SELECT new_path FROM redirects WHERE old_path = ?", (path,))
    return str(rows[0][0]) if rows else None


def redirects(source: Connection | Statements) -> list[tuple[str, str]]:
    """Every redirect as (old URL, new URL)."""
    return [
        (old, new)
        for old, new in statements_of(source).run("SELECT old_path, new_path FROM redirects ORDER BY old_path")
    ]


def put_media(target: Connection | Tx, path: str, content_type: str, data: bytes, now: float) -> bool:
    """Keep DATA as the media file at PATH, in parts of MEDIA_PART bytes; False when it was there already, byte
    for byte."""
    tx = tx_of(target)
    digest = hashlib.sha256(data).hexdigest()
    if tx.run("SELECT 1 FROM media WHERE path = ? AND digest = ? AND content_type = ?", (path, digest, content_type)):
        return False
    tx.run(
        "INSERT INTO media (path, content_type, digest, size, updated_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (path) DO UPDATE SET content_type = excluded.content_type, digest = excluded.digest,"
        " size = excluded.size, updated_at = excluded.updated_at",
        (path, content_type, digest, len(data), now),
    )
    tx.run("DELETE FROM media_parts WHERE path = ?", (path,))
    view = memoryview(data)
    for n, at in enumerate(range(0, len(data), MEDIA_PART)):  # one part at a time: no second copy of a video
        tx.run("INSERT INTO media_parts (path, n, data) VALUES (?, ?, ?)", (path, n, bytes(view[at : at + MEDIA_PART])))
    changed(tx)
    return True


def media_at(source: Connection | Statements, path: str) -> tuple[str, bytes] | None:
    """The media file at PATH: its content type and bytes."""
    statements = statements_of(source)
    rows = statements.run("SELECT content_type FROM media WHERE path = ?", (path,))
    if not rows:
        return None
    parts = statements.run("SELECT data FROM media_parts WHERE path = ? ORDER BY n", (path,))
    return str(rows[0][0]), b"".join(bytes(part[0]) for part in parts)


def current_version(source: Connection | Statements) -> int:
    return int(statements_of(source).run("SELECT version FROM blog_version")[0][0])


def changed(target: Connection | Tx) -> None:
    tx_of(target).run("UPDATE blog_version SET version = version + 1")


# Redirects the owner keeps by hand (`jitaku web redirect`), beside those an import records


@dataclass(frozen=True)
class Redirect:
    old: str
    new: str
    created_at: float


def kept_redirects(source: Connection | Statements) -> list[Redirect]:
    """Every redirect, by its old URL, with when it was made."""
    rows = statements_of(source).run("SELECT old_path, new_path, created_at FROM redirects ORDER BY old_path")
    return [Redirect(old, new, created_at) for old, new, created_at in rows]


def add_redirect(target: Connection | Tx, old: str, new: str, now: float) -> str:
    """OLD answers with NEW from now on, or with where NEW itself redirects to (no chains); that end is returned.
    A BlogError, and nothing written, when OLD is a published post's URL or the redirect would come back to OLD."""
    tx = tx_of(target)
    if tx.run("SELECT 1 FROM posts WHERE url = ? AND draft = ?", (old, False)):
        raise BlogError(f"{old} is a published post's URL: it cannot redirect")
    end, passed = new, set()
    while end not in passed and (further := redirect_for(tx, end)) is not None:
        passed.add(end)
        end = further
    if end == old or old in passed:
        raise BlogError(f"{old} -> {new} would lead back to {old}")
    _redirect(tx, old, end, now)
    changed(tx)
    return end


def remove_redirect(target: Connection | Tx, old: str) -> bool:
    """OLD redirects no more; False when it did not."""
    tx = tx_of(target)
    if not tx.run("DELETE FROM redirects WHERE old_path = ? RETURNING old_path", (old,)):
        return False
    changed(tx)
    return True


# What the admin's editor reads and does besides import_posts (web/admin/posts.py)


def post_with_source(source: Connection | Statements, post_id: int) -> tuple[Post, str] | None:
    """The post POST_ID, drafts too, and its Markdown as written; None when there is none."""
    statements = statements_of(source)
    rows = statements.run(
        "SELECT id, path, url, title, slug, published_at, draft, updated_at, kind, source FROM posts WHERE id = ?",
        (post_id,),
    )
    if not rows:
        return None
    row = rows[0]
    tags = tuple(
        tag for (tag,) in statements.run("SELECT tag FROM post_tags WHERE post_id = ? ORDER BY position", (post_id,))
    )
    return Post(row[0], row[1], row[2], row[3], row[4], row[5], bool(row[6]), tags, row[7], row[8]), str(row[9])


def media_paths(source: Connection | Statements) -> list[str]:
    """Every media file's path, in order: what an imported post's relative image may name (blog/importer.py), what
    an export writes."""
    return [str(path) for (path,) in statements_of(source).run("SELECT path FROM media ORDER BY path")]


def delete_post(target: Connection | Tx, post_id: int) -> str | None:
    """Remove the post POST_ID with its tags and comments, and the redirects that led to it (its old URLs answer
    404 now, not a redirect to a 404); its URL, or None when there was no such post."""
    tx = tx_of(target)
    rows = tx.run("DELETE FROM posts WHERE id = ? RETURNING url", (post_id,))  # post_tags, comments: ON DELETE CASCADE
    if not rows:
        return None
    search.forget_post(tx, post_id)
    url = str(rows[0][0])
    tx.run("DELETE FROM redirects WHERE new_path = ?", (url,))
    changed(tx)
    return url


def id_at(source: Connection | Statements, path: str) -> int | None:
    """The id of the post keyed by PATH (its file's path, or the key the admin's editor gave it)."""
    rows = statements_of(source).run("SELECT id FROM posts WHERE path = ?", (path,))
    return int(rows[0][0]) if rows else None
