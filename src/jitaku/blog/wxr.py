"""A WordPress export (WXR, "WordPress eXtended RSS", versions 1.0 to 1.2) read as plain data, in the shapes
WordPress's own importer reads: RSS 2.0 items with the `wp:`, `content:`, `excerpt:` and `dc:` namespaces.

Parsed with defusedxml: a file that declares an entity (the "billion laughs", or one that would read a local
file or a URL) is refused whole, naming the file and line, before anything is read from it; WordPress never
writes a DTD. blog/wxr_import.py turns what is read here into posts, comments, media and redirects.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING

from jitaku.blog.source import SourceError

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

MAX_BYTES = 512 * 1024 * 1024  # a site's export with thousands of posts is tens of MB; the uploads are apart
_NAMESPACES = {
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
}
_WP = re.compile(r"^\{(http://wordpress\.org/export/1\.[0-9]+/)\}wxr_version$")
_NO_DATE = "0000-00-00 00:00:00"
_AT = re.compile(r": line [0-9]+, column [0-9]+$")  # the parser's own place, said once before


@dataclass(frozen=True)
class WxrComment:
    id: int
    parent: int  # 0: none
    author: str
    email: str
    url: str
    address: str  # the writer's IP address
    created_at: float  # UTC timestamp
    content: str
    approved: str  # "1", "0", "spam", "trash"
    type: str  # "comment" ("" before WordPress 5.5), "pingback", "trackback"


@dataclass(frozen=True)
class WxrItem:
    id: int
    type: str  # "post", "page", "attachment", "nav_menu_item", ...
    status: str  # "publish", "draft", "future", "private", "pending", "inherit", "trash", "auto-draft"
    title: str
    link: str  # the old permalink, absolute
    name: str  # wp:post_name: the slug, percent-encoded as WordPress keeps it
    published_at: float  # UTC timestamp
    content: str
    password: str
    terms: tuple[tuple[str, str, str], ...]  # (domain, nicename, name): category or post_tag
    attachment_url: str
    attached_file: str  # the postmeta _wp_attached_file: the path under wp-content/uploads/
    comments: tuple[WxrComment, ...]


@dataclass(frozen=True)
class Wxr:
    file: Path
    base_url: str  # wp:base_site_url
    items: tuple[WxrItem, ...]


def read(file: Path, timezone: tzinfo | None) -> Wxr:
    """The export in FILE; a SourceError naming the file (and the line, where the parser knows it) for a file
    that is not one, or declares entities. A local date without its UTC one is in TIMEZONE."""
    import defusedxml.ElementTree as SafeTree
    from defusedxml import DefusedXmlException, EntitiesForbidden

    try:
        with file.open("rb") as opened:
            data = opened.read(MAX_BYTES + 1)
    except OSError as error:
        raise SourceError(f"{file}: cannot read: {error.strerror or error}") from None
    if len(data) > MAX_BYTES:
        raise SourceError(f"{file}: over {MAX_BYTES // (1024 * 1024)} MB: not read")
    try:
        root = SafeTree.fromstring(data)
    except EntitiesForbidden as error:
        line = data.count(b"\n", 0, max(data.find(b"<!ENTITY"), 0)) + 1
        raise SourceError(
            f"{file}:{line}: declares the entity {error.name!r}"
            f"{f' of {error.sysid}' if error.sysid else ''}: entities are refused (a WordPress export has"
            " none; one can expand into gigabytes or read a local file)"
        ) from None
    except DefusedXmlException as error:
        raise SourceError(f"{file}: {error}: refused") from None
    except SafeTree.ParseError as error:
        line, column = error.position
        reason = _AT.sub("", str(error.msg))
        raise SourceError(f"{file}:{line}:{column}: not well-formed XML: {reason}") from None
    channel = root.find("channel")
    wp = _wp_namespace(channel)
    if root.tag != "rss" or channel is None or wp is None:
        raise SourceError(f"{file}: not a WordPress export (WXR): no <rss><channel> with <wp:wxr_version>")
    names = {**_NAMESPACES, "wp": wp, "excerpt": f"{wp}excerpt/"}
    return Wxr(
        file=file,
        base_url=_text(channel, "wp:base_site_url", names) or _text(channel, "link", names),
        items=tuple(_item(file, item, names, timezone) for item in channel.findall("item")),
    )


def _wp_namespace(channel: Element | None) -> str | None:
    for child in channel if channel is not None else ():
        if isinstance(child.tag, str) and (found := _WP.match(child.tag)):
            return found.group(1)
    return None


def _text(element: Element, path: str, names: dict[str, str]) -> str:
    found = element.find(path, names)
    return (found.text or "") if found is not None else ""


def _item(file: Path, item: Element, names: dict[str, str], timezone: tzinfo | None) -> WxrItem:
    def text(path: str) -> str:
        return _text(item, path, names)

    post_id = _number(file, text("wp:post_id"), "wp:post_id", "an item")
    where = f"item wp:post_id {post_id}"
    meta = {
        _text(entry, "wp:meta_key", names): _text(entry, "wp:meta_value", names)
        for entry in item.findall("wp:postmeta", names)
    }
    return WxrItem(
        id=post_id,
        type=text("wp:post_type").strip(),
        status=text("wp:status").strip(),
        title=text("title"),
        link=text("link").strip(),
        name=text("wp:post_name").strip(),
        published_at=_date(
            file, where, text("wp:post_date_gmt"), text("wp:post_date"), timezone, "wp:post_date_gmt", optional=True
        ),
        content=text("content:encoded"),
        password=text("wp:post_password"),
        terms=tuple(
            (term.get("domain", ""), term.get("nicename", ""), term.text or "") for term in item.findall("category")
        ),
        attachment_url=text("wp:attachment_url").strip(),
        attached_file=meta.get("_wp_attached_file", "").strip(),
        comments=tuple(_comment(file, where, entry, names, timezone) for entry in item.findall("wp:comment", names)),
    )


def _comment(file: Path, where: str, entry: Element, names: dict[str, str], timezone: tzinfo | None) -> WxrComment:
    def text(path: str) -> str:
        return _text(entry, path, names)

    comment_id = _number(file, text("wp:comment_id"), "wp:comment_id", where)
    return WxrComment(
        id=comment_id,
        parent=_number(file, text("wp:comment_parent") or "0", "wp:comment_parent", f"{where}, comment {comment_id}"),
        author=text("wp:comment_author").strip(),
        email=text("wp:comment_author_email").strip(),
        url=text("wp:comment_author_url").strip(),
        address=text("wp:comment_author_IP").strip(),
        created_at=_date(
            file,
            f"{where}, comment {comment_id}",
            text("wp:comment_date_gmt"),
            text("wp:comment_date"),
            timezone,
            "wp:comment_date_gmt",
        ),
        content=text("wp:comment_content"),
        approved=text("wp:comment_approved").strip(),
        type=text("wp:comment_type").strip(),
    )


def _number(file: Path, value: str, key: str, where: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise SourceError(f"{file}: {where}: {key}: expected a number, got {value!r}") from None


def _date(
    file: Path, where: str, utc: str, local: str, timezone: tzinfo | None, key: str, optional: bool = False
) -> float:
    """The UTC date, else the local one in TIMEZONE (a draft has no UTC date yet); 0 when OPTIONAL and neither
    is set."""
    if (when := _parsed(file, where, key, utc)) is not None:
        return float(calendar.timegm(when.timetuple()))
    if (when := _parsed(file, where, key, local)) is not None:
        return (when.replace(tzinfo=timezone) if timezone else when.astimezone()).timestamp()
    if optional:
        return 0.0
    raise SourceError(f"{file}: {where}: {key}: no date")


def _parsed(file: Path, where: str, key: str, value: str) -> datetime | None:
    value = value.strip()
    if not value or value == _NO_DATE:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise SourceError(f"{file}: {where}: {key}: expected a date like 2024-05-01 09:30:00, got {value!r}") from None
