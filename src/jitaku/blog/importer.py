"""Read a directory of Markdown posts for `jitaku blog import`: every post is read, checked and rendered before
the store is touched, so that one broken file changes nothing. The media files beside them (photos) are found
here and read one at a time as the import writes them, so that a directory of photos is never all in memory.

The files under `pages/` are static pages (About): each at `/{slug}/`, its date optional, never on the home page,
in an archive or a feed. A post's link or image that names one of the media files, relative to the post's own
file (`![](photo.jpg)` beside `2024/server.md`), points at its URL under /media/, where the site serves it."""

from __future__ import annotations

import posixpath
import unicodedata
from collections.abc import Set
from datetime import tzinfo
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jitaku.blog import markdown, permalink
from jitaku.blog.paths import path_url
from jitaku.blog.source import SourceError, parse
from jitaku.store import site
from jitaku.store.blog import NewPost

SUFFIXES = (".md", ".markdown")
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
    found: list[NewPost] = []
    for file, path in _files(directory, SUFFIXES):
        try:
            data = file.read_bytes()
        except OSError as error:
            raise SourceError(f"{file}: cannot read: {error.strerror or error}") from None
        page = path.startswith(PAGES)
        source = parse(path, str(file), data, timezone, dated=not page)
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
                html=markdown.render(source.body, media_links(source.path, media)),
                tags=source.tags,
                aliases=source.aliases,
                kind=site.PAGE if page else site.POST,
            )
        )
    return found


def media_links(post: str, media: Set[str]) -> markdown.Resolver:
    """What turns a reference relative to the file POST into its URL under /media/, when it names one of MEDIA; the
    admin's editor renders an imported post again with it, so that its photos stay where they were."""
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
