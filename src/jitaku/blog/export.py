"""`jitaku blog export DIR`: the whole blog as files, so that nobody is locked in and `jitaku blog import DIR`
(blog/importer.py) into a fresh data directory with the same `[blog]` settings gives the same site: the same
URLs, titles, HTML, tags, drafts, redirects, media and comments.

- Every post and page at its own path (what keys it, so that importing the export again updates it in place):
  Markdown with its front matter (`title`, `date`, `slug`, `tags`, `draft`, `aliases`: every old URL that
  redirects to it, `page` where its directory does not say it), or, for a post that came from WordPress, the
  same front matter over the HTML WordPress kept (`.html`), which Markdown would change.
- Every media file at its path, byte for byte.
- `comments.json`: every comment, whatever its status, with its date, thread and HTML; `redirects.json`: the
  redirects to anything but a post (an upload's old URL, the owner's own).
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from jitaku.blog.importer import COMMENTS, HTML, MEDIA_TYPES, PAGES, REDIRECTS, SUFFIXES
from jitaku.blog.paths import path_url
from jitaku.store import blog, comments, site

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


class ExportError(Exception):
    """Why nothing was exported: the directory holds files already, or a stored path would leave it."""


@dataclass
class Exported:
    posts: int = 0
    pages: int = 0
    media: int = 0
    comments: int = 0
    redirects: int = 0
    not_again: list[str] = field(default_factory=list)  # media an import would not read back, and why


def export(connection: Connection, directory: Path) -> Exported:
    """Write the blog of CONNECTION (one read, so that the files agree with each other) into DIRECTORY, which
    must be empty or not yet made."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise ExportError(f"{directory}: not an empty directory; export into a new one")
    posts = sorted(blog.posts(connection), key=lambda post: post.path)
    media = blog.media_paths(connection)
    files: dict[str, str] = {}  # a post's path -> its file's path in DIRECTORY
    for post in posts:  # every name checked before the first file is written: a refusal leaves nothing behind
        name = _file_name(post.path)
        if name in files.values():
            raise ExportError(f"{post.path}: would be written over the post exported as {name}")
        files[post.path] = _inside(name)
    for path in media:
        _inside(path)
    bodies = blog.sources(connection)
    moved = blog.redirects(connection)
    to_post = {post.url for post in posts}
    done = Exported()
    for post in posts:
        name = files[post.path]
        aliases = [_alias(old) for old, new in moved if new == post.url]
        _write(directory, name, _front_matter(post, name, aliases) + bodies[post.id])
        if post.kind == site.PAGE:
            done.pages += 1
        else:
            done.posts += 1
    for path in media:
        found = blog.media_at(connection, path)
        if found is None:
            continue
        _write(directory, path, found[1])
        done.media += 1
        if posixpath.splitext(path)[1].lower() not in MEDIA_TYPES:
            done.not_again.append(f"{path}: an import reads only {' '.join(sorted(MEDIA_TYPES))}")
    kept = [_comment(comment, files) for comment in comments.kept(connection)]
    others = [{"from": old, "to": new} for old, new in moved if new not in to_post]
    _write(directory, COMMENTS, _json(kept))
    _write(directory, REDIRECTS, _json(others))
    done.comments, done.redirects = len(kept), len(others)
    return done


def _file_name(path: str) -> str:
    """The file a post keyed PATH is written to: PATH itself when an import reads it back as a post."""
    return path if path.lower().endswith((*SUFFIXES, HTML)) else f"{path}.md"


def _alias(old: str) -> str:
    """OLD as an alias the import reads back as OLD: as written unless it holds what a URL would take apart."""
    return old if unquote(urlsplit(old).path) == old else path_url(old)


def _front_matter(post: blog.Post, name: str, aliases: list[str]) -> str:
    import yaml

    keys: dict[str, Any] = {"title": post.title}
    if post.kind == site.POST or post.published_at:
        keys["date"] = datetime.fromtimestamp(post.published_at, UTC).isoformat()
    keys["slug"] = post.slug
    if post.tags:
        keys["tags"] = list(post.tags)
    if post.draft:
        keys["draft"] = True
    if aliases:
        keys["aliases"] = aliases
    if (post.kind == site.PAGE) != name.startswith(PAGES):
        keys["page"] = post.kind == site.PAGE
    text: str = yaml.safe_dump(keys, allow_unicode=True, sort_keys=False, width=2**31)
    return f"---\n{text}---\n"


def _comment(comment: comments.KeptComment, files: dict[str, str]) -> dict[str, Any]:
    return {
        "id": comment.nonce,
        "post": files.get(comment.post_path, comment.post_path),
        "parent": comment.parent,
        "author": comment.author,
        "email": comment.email,
        "url": comment.url,
        "date": datetime.fromtimestamp(comment.created_at, UTC).isoformat(),
        "status": comment.status,
        "reason": comment.reason,
        "address": comment.address,
        "body": comment.body,
        "html": comment.html,
    }


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1) + "\n"


def _inside(path: str) -> str:
    """PATH, a stored post's or media file's; an ExportError if it would leave the export's directory."""
    if path.startswith("/") or "\\" in path or any(part in {"", ".", ".."} for part in path.split("/")):
        raise ExportError(f"{path}: not a path inside the export")
    return path


def _write(directory: Path, path: str, content: str | bytes) -> None:
    """CONTENT into DIRECTORY/PATH, a path _inside checked."""
    file = directory.joinpath(*path.split("/"))
    file.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        file.write_text(content, encoding="utf-8", newline="")
    else:
        file.write_bytes(content)
