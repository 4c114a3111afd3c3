"""Read a directory of Markdown posts for `jitaku blog import`: every post is read, checked and rendered before
the store is touched, so that one broken file changes nothing. The media files beside them (photos) are found
here and read one at a time as the import writes them, so that a directory of photos is never all in memory.

The files under `pages/` are static pages (About): each at `/{slug}/`, its date optional, never on the home page,
in an archive or a feed. A post's link or image that names one of the media files, relative to the post's own
file (`![](photo.jpg)` beside `2024/server.md`), points at its URL under /media/, where the site serves it.

A `.html` file that starts with front matter is a post whose body is HTML as WordPress keeps it, shown as
WordPress shows it (blog/wordpress.py): what `jitaku blog import --wxr` made and `jitaku blog export` writes
back. Beside the posts, `comments.json` and `redirects.json` (as `jitaku blog export` writes them) bring back the
comments and the redirects to anything but a post."""

from __future__ import annotations

import json
import posixpath
import unicodedata
from collections.abc import Set
from datetime import datetime, tzinfo
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jitaku.blog import comment_text, markdown, permalink, wordpress
from jitaku.blog.paths import path_url
from jitaku.blog.source import DELIMITERS, SourceError, parse
from jitaku.store import site
from jitaku.store.blog import NewPost
from jitaku.store.comments import PENDING, PUBLISHED, SPAM, KeptComment

SUFFIXES = (".md", ".markdown")
HTML = ".html"  # a post in WordPress's HTML, when it starts with front matter (a stray page does not)
COMMENTS = "comments.json"
REDIRECTS = "redirects.json"
PAGES = "pages/"  # the directory of static pages, in the directory imported
# The first segments of the site's own paths: a page's slug must not take one
RESERVED = frozenset(
    {"admin", "api", "comments", "feed.atom", "feed.rss", "health", "lists", "login", "media", "metrics", "page"}
    | {"robots.txt", "site.css", "sitemap.xml", "status.json", "tags"}
)
# The media an import keeps, by suffix: a fixed table, not the system's mime.types, so that every machine serves
# a file with the same type. Nothing a browser runs (HTML, SVG): those would be pages of the site's own origin
MEDIA_TYPES = {
    ".avif": "image/avif",
    ".gif": "image/gif",
    ".jpeg": "image/jpeg",
    ".jpg": "image/jpeg",
    ".m4a": "audio/mp4",
    ".mp3": "audio/mpeg",
    ".mp4": "video/mp4",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".webm": "video/webm",
    ".webp": "image/webp",
}


def read_posts(directory: Path, pattern: str, timezone: tzinfo | None) -> list[NewPost]:
    """The posts of DIRECTORY's Markdown files, in its subdirectories too (hidden ones skipped); a
    SourceError naming the file and line of the first problem."""
    if not directory.is_dir():
        raise SourceError(f"{directory}: not a directory")
    media = {path for _, path in _files(directory, tuple(MEDIA_TYPES))}
    uploads = wordpress.uploads_resolver(frozenset(media))
    found: list[NewPost] = []
    for file, path in _files(directory, (*SUFFIXES, HTML)):
        try:
            data = file.read_bytes()
        except OSError as error:
            raise SourceError(f"{file}: cannot read: {error.strerror or error}") from None
        html = path.lower().endswith(HTML)
        if html and not data.removeprefix(b"\xef\xbb\xbf").startswith(tuple(d.encode() for d in DELIMITERS)):
            continue
        source = parse(path, str(file), data, timezone, dated=not path.startswith(PAGES))
        page = path.startswith(PAGES) if source.page is None else source.page
        if page and source.slug in RESERVED:
            raise SourceError(f"{file}:1: slug: {source.slug!r} is a path of the site itself; give the page another")
        url = f"/{source.slug}/" if page else permalink.url_of(pattern, source.slug, source.published_at, timezone)
        found.append(
            NewPost(
                path=source.path,
                url=url,
                title=source.title,
                slug=source.slug,
                published_at=source.published_at,
                draft=source.draft,
                source=source.body,
                html=rendered(source.path, source.body, media, uploads),
                tags=source.tags,
                aliases=source.aliases,
                kind=site.PAGE if page else site.POST,
            )
        )
    return found


def rendered(path: str, body: str, media: Set[str], uploads: wordpress.Resolver | None = None) -> str:
    """The HTML of the post at PATH whose source is BODY: WordPress's HTML (an .html file: an export of an import
    --wxr) as WordPress shows it, else Markdown; a reference to one of MEDIA beside the file, or to a WordPress
    upload (UPLOADS), becomes its URL under /media/. The admin's editor renders a post again with it, so that an
    imported post keeps its photos and its kind of source."""
    beside = _media_links(path, media)
    if path.lower().endswith(HTML):
        resolve = uploads or wordpress.uploads_resolver(frozenset(media))
        return wordpress.render(body, lambda reference: resolve(reference) or beside(reference))
    return markdown.render(body, beside)


def _media_links(post: str, media: Set[str]) -> wordpress.Resolver:
    """What turns a reference relative to the file POST into its URL under /media/, when it names one of MEDIA."""
    here = posixpath.dirname(post)

    def resolve(reference: str) -> str | None:
        parts = urlsplit(reference)
        if parts.scheme or parts.netloc or not parts.path or parts.path.startswith("/"):
            return None
        path = unicodedata.normalize("NFC", posixpath.normpath(posixpath.join(here, unquote(parts.path))))
        if path not in media:
            return None
        return path_url(f"/media/{path}") + (f"#{parts.fragment}" if parts.fragment else "")

    return resolve


def media_files(directory: Path) -> list[tuple[Path, str, str]]:
    """DIRECTORY's media files, each as (file, path relative to DIRECTORY, content type)."""
    return [(file, path, MEDIA_TYPES[file.suffix.lower()]) for file, path in _files(directory, tuple(MEDIA_TYPES))]


def _files(directory: Path, suffixes: tuple[str, ...]) -> list[tuple[Path, str]]:
    """DIRECTORY's files with one of SUFFIXES, each with its path relative to DIRECTORY (with /, NFC)."""
    found: list[tuple[Path, str]] = []
    for file in sorted(directory.rglob("*")):
        relative = file.relative_to(directory)
        if file.suffix.lower() not in suffixes or not file.is_file() or _hidden(relative):
            continue
        try:
            path = unicodedata.normalize("NFC", relative.as_posix())
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise SourceError(f"{file}: the file's name is not UTF-8; rename it") from None
        found.append((file, path))
    return found


def _hidden(relative: Path) -> bool:
    """`.git`, `.obsidian`, an editor's `.#post.md`: not posts."""
    return any(part.startswith(".") for part in relative.parts)


def read_comments(directory: Path) -> list[KeptComment]:
    """The comments of DIRECTORY's comments.json (none without one), checked before the store is touched."""
    file = directory / COMMENTS
    listed = _json(file)
    if not isinstance(listed, list):
        raise SourceError(f"{file}: expected a list of comments")
    return [_comment(file, n, item) for n, item in enumerate(listed, 1)]


def _comment(file: Path, n: int, item: object) -> KeptComment:
    if not isinstance(item, dict):
        raise SourceError(f"{file}: comment {n}: expected an object with id, post, author, body, status, date, ...")

    def text(key: str, optional: bool = False) -> str:
        value = item.get(key, "" if optional else None)
        if not isinstance(value, str):
            raise SourceError(f"{file}: comment {n}: {key}: expected text, got {value!r}")
        return value

    status = text("status")
    if status not in (PENDING, PUBLISHED, SPAM):
        raise SourceError(f"{file}: comment {n}: status: expected {PUBLISHED}, {PENDING} or {SPAM}, got {status!r}")
    parent = item.get("parent")
    if parent is not None and not isinstance(parent, str):
        raise SourceError(f"{file}: comment {n}: parent: expected the id of another comment or null, got {parent!r}")
    try:
        created = datetime.fromisoformat(text("date"))
    except ValueError:
        raise SourceError(f"{file}: comment {n}: date: expected a date like 2024-05-01T09:30:00+09:00") from None
    if created.tzinfo is None:
        raise SourceError(f"{file}: comment {n}: date: {text('date')!r} needs its time zone (+09:00, Z)")
    nonce = text("id")
    if not nonce or len(nonce) > 64:
        raise SourceError(f"{file}: comment {n}: id: expected 1 to 64 characters, got {nonce!r}")
    return KeptComment(
        nonce=nonce,
        post_path=text("post"),
        parent=parent,
        author=text("author"),
        email=text("email", optional=True),
        url=comment_text.web_link(text("url", optional=True)),
        body=text("body"),
        html=comment_text.clean(text("html")),  # a file anyone could have edited: it passes as a reader's does
        status=status,
        address=text("address", optional=True),
        reason=text("reason", optional=True),
        created_at=created.timestamp(),
    )


def read_redirects(directory: Path) -> list[tuple[str, str]]:
    """The redirects of DIRECTORY's redirects.json (none without one), as (old path, new path)."""
    file = directory / REDIRECTS
    listed = _json(file)
    if not isinstance(listed, list):
        raise SourceError(f"{file}: expected a list of redirects")
    found: list[tuple[str, str]] = []
    for n, item in enumerate(listed, 1):
        old, new = (item.get("from"), item.get("to")) if isinstance(item, dict) else (None, None)
        if not (isinstance(old, str) and isinstance(new, str) and old.startswith("/") and new.startswith("/")):
            raise SourceError(f'{file}: redirect {n}: expected {{"from": "/old/path/", "to": "/new/path/"}}')
        found.append((unicodedata.normalize("NFC", old), unicodedata.normalize("NFC", new)))
    return found


def _json(file: Path) -> object:
    """FILE's JSON; an empty list when there is no FILE."""
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise SourceError(f"{file}: cannot read: {error.strerror or error}") from None
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        line = getattr(error, "lineno", 1)
        raise SourceError(f"{file}:{line}: not JSON: {error}") from None
