"""A post as its Markdown file has it: front matter (`---` YAML or `+++` TOML) with the keys `title`, `date`,
`tags`, `slug`, `draft` and `aliases`, then the body. Any other key is left alone, so that files kept for Hugo
or Jekyll (`description`, `categories`, `layout`) import as they are.

A problem is a SourceError naming the file, the line and the key, for `jitaku blog import` to print before it
changes anything.
"""

from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any
from urllib.parse import unquote, urlsplit

DELIMITERS = ("---", "+++")
_AT_LINE = re.compile(r"\s*\(at line (\d+), column \d+\)$")
_AT_END = re.compile(r"\s*\(at end of document\)$")
# Characters a slug cannot hold: they would end or split the path segment it becomes, or need quoting in it
_NOT_IN_SEGMENT = re.compile(r"[\s/?#%\\\x00-\x1f\x7f]")
# A tag may hold spaces (its archive's URL quotes them)
_NOT_IN_TAG = re.compile(r"[/?#%\\\x00-\x1f\x7f]")
_RUNS_NOT_IN_SEGMENT = re.compile(r"[\s/?#%\\\x00-\x1f\x7f]+")
SLUG_LENGTH = 80  # characters of a slug made from a title: a whole sentence would make an unwieldy URL
_NOT_IN_PATH = re.compile(r"[\\\x00-\x1f\x7f]")


class SourceError(Exception):
    """What is wrong with a post's file: `FILE:LINE: what`."""


@dataclass(frozen=True)
class Source:
    path: str  # the file's path relative to the directory imported, with /: what keys the post
    title: str
    published_at: float  # UTC timestamp
    tags: tuple[str, ...]
    slug: str
    draft: bool
    aliases: tuple[str, ...]  # old URLs as paths ("/2019/old-name/"), each to redirect to the post
    body: str  # Markdown


def parse(path: str, shown: str, data: bytes, timezone: tzinfo | None, dated: bool = True) -> Source:
    """The post in DATA, the file at PATH (relative) that errors call SHOWN. A date without a time zone is
    in TIMEZONE (None: the system's). Unless DATED, the date may be left out (a static page's URL has none):
    its published_at is then 0."""
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise SourceError(f"{shown}:{line}: not UTF-8 text (byte {error.start})") from None
    lines = text.split("\n")
    opening = lines[0].rstrip()
    if opening not in DELIMITERS:
        raise SourceError(f"{shown}:1: no front matter: the first line must be --- (YAML) or +++ (TOML)")
    closing = next((n for n in range(1, len(lines)) if lines[n].rstrip() == opening), None)
    if closing is None:
        raise SourceError(f"{shown}:1: the front matter opened by {opening} is never closed by another {opening}")
    block = lines[1:closing]
    keys = _yaml(shown, block) if opening == "---" else _toml(shown, block, closing + 1)
    fields = _Fields(shown, block, keys)
    return Source(
        path=path,
        title=fields.title(),
        published_at=fields.date(timezone, dated),
        tags=fields.tags(),
        slug=fields.slug(default=_default_slug(path)),
        draft=fields.draft(),
        aliases=fields.aliases(),
        body="\n".join(lines[closing + 1 :]),
    )


def _yaml(shown: str, block: list[str]) -> dict[str, Any]:
    import yaml

    try:
        keys = yaml.safe_load("\n".join(block))
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 2 if error.problem_mark else 2  # the block starts on the file's line 2
        raise SourceError(f"{shown}:{line}: front matter is not valid YAML: {error.problem or error.context}") from None
    except yaml.YAMLError as error:
        raise SourceError(f"{shown}:2: front matter is not valid YAML: {error}") from None
    if keys is None:
        return {}
    if not isinstance(keys, dict):
        raise SourceError(f"{shown}:2: front matter must be keys with values (title: ..., date: ...)")
    return keys


def _toml(shown: str, block: list[str], closing_line: int) -> dict[str, Any]:
    try:
        return tomllib.loads("\n".join(block))
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        found = _AT_LINE.search(message)
        line = int(found.group(1)) + 1 if found else closing_line
        message = _AT_END.sub("", _AT_LINE.sub("", message))
        raise SourceError(f"{shown}:{line}: front matter is not valid TOML: {message}") from None


def _default_slug(path: str) -> str:
    """The file's name without its suffix; a page bundle's (`NAME/index.md`) directory name."""
    parts = path.split("/")
    stem = parts[-1].rsplit(".", 1)[0]
    if stem == "index" and len(parts) > 1:
        stem = parts[-2]
    return _NOT_IN_SEGMENT.sub("-", unicodedata.normalize("NFC", stem)).strip("-") or "post"


class _Fields:
    """The known keys of one front matter, each checked, each error naming the key's line."""

    def __init__(self, shown: str, block: list[str], keys: dict[str, Any]) -> None:
        self._shown = shown
        self._block = block
        self._keys = keys

    def _error(self, key: str, problem: str) -> SourceError:
        pattern = re.compile(rf"""\s*["']?{key}["']?\s*[:=]""")
        line = next((n + 2 for n, text in enumerate(self._block) if pattern.match(text)), 1)
        return SourceError(f"{self._shown}:{line}: {key}: {problem}")

    def _text(self, key: str, value: Any) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise self._error(key, f"expected text, got {value!r}")
        return unicodedata.normalize("NFC", str(value)).strip()

    def title(self) -> str:
        if "title" not in self._keys:
            raise SourceError(f"{self._shown}:1: missing key title")
        title = self._text("title", self._keys["title"])
        if not title:
            raise self._error("title", "must not be empty")
        return title

    def date(self, timezone: tzinfo | None, required: bool) -> float:
        """Required for a post: the URL is made from it, so a file's copy time must not stand in for it."""
        if "date" not in self._keys:
            if not required:
                return 0.0
            raise SourceError(f"{self._shown}:1: missing key date")
        value = self._keys["date"]
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value.strip())
            except ValueError:
                raise self._error(
                    "date", f"expected a date like 2024-05-01 or 2024-05-01T09:30:00+09:00, got {value!r}"
                ) from None
        if isinstance(value, date) and not isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day)
        if not isinstance(value, datetime):
            raise self._error("date", f"expected a date like 2024-05-01, got {value!r}")
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone) if timezone else value.astimezone()
        return value.timestamp()

    def tags(self) -> tuple[str, ...]:
        value = self._keys.get("tags", [])
        if not isinstance(value, list):
            raise self._error("tags", f"expected a list like [自宅サーバー, 日記], got {value!r}")
        tags: list[str] = []
        for item in value:
            tag = self._text("tags", item)
            if problem := tag_problem(tag):
                raise self._error("tags", problem)
            if tag not in tags:
                tags.append(tag)
        return tuple(tags)

    def slug(self, default: str) -> str:
        if "slug" not in self._keys:
            return default
        slug = self._text("slug", self._keys["slug"])
        if problem := slug_problem(slug):
            raise self._error("slug", problem)
        return slug

    def draft(self) -> bool:
        value = self._keys.get("draft", False)
        if not isinstance(value, bool):
            raise self._error("draft", f"expected true or false, got {value!r}")
        return value

    def aliases(self) -> tuple[str, ...]:
        value = self._keys.get("aliases", [])
        if not isinstance(value, list):
            raise self._error("aliases", f"expected a list of old URLs, got {value!r}")
        paths: list[str] = []
        for item in value:
            text = self._text("aliases", item)
            path = unquote(urlsplit(text).path)
            if not path or _NOT_IN_PATH.search(path):
                raise self._error("aliases", f"{text!r} is not a URL or path of this site")
            paths.append(unicodedata.normalize("NFC", path if path.startswith("/") else f"/{path}"))
        return tuple(paths)


# The same rules for what the admin's editor takes (web/admin/posts.py), so that a post written there could have
# been imported from a file, and exported to one


def slug_problem(slug: str) -> str | None:
    """What is wrong with SLUG as one segment of a URL; None: nothing."""
    if not slug or slug in {".", ".."} or _NOT_IN_SEGMENT.search(slug):
        return f"{slug!r}: a slug must not be empty nor hold spaces, / ? # % \\ or control characters"
    return None


def tag_problem(tag: str) -> str | None:
    """What is wrong with TAG (its archive is /tags/TAG/); None: nothing."""
    if not tag or _NOT_IN_TAG.search(tag):
        return f"{tag!r}: a tag must not be empty nor hold / ? # % \\ or control characters"
    return None


def slug_from(title: str) -> str:
    """A slug for a post given none: its title with each run of what a URL segment cannot hold made one "-",
    cut at SLUG_LENGTH characters (a Japanese title stays Japanese, as a file's name does)."""
    slug = _RUNS_NOT_IN_SEGMENT.sub("-", unicodedata.normalize("NFC", title)).strip("-")
    return slug[:SLUG_LENGTH].rstrip("-") or "post"
