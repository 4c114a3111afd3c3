"""One archived post as its page shows it: the text parts decoded (ISO-2022-JP, Shift_JIS, UTF-8, ...), the HTML
parts sanitized by nh3's allow-list (no script, no style attribute, no image: a remote image tells its sender who
reads), and the attachments listed, never shown; and one attachment's bytes, for its download.

A stored post was written by a stranger: it is parsed within mail/parts.py's bounds, and always off the event loop
(the pages call these functions through asyncio.to_thread).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jitaku.addresses import obfuscated
from jitaku.mail.headers import decoded
from jitaku.mail.parts import MAX_BODY, Part, is_attachment, leaves

MAX_TEXT = 256 * 1024  # characters of one text part shown
MAX_FILENAME = 200  # characters of an attachment's name kept
_UNSAFE_NAME = re.compile(r'[\x00-\x1f\x7f/\\"]')
_HIDDEN_TAGS = {"img", "map", "area"}  # images load from elsewhere; an image map is nothing without its image


@dataclass(frozen=True)
class Shown:
    """A part shown on the page: plain TEXT (escaped by the template) or HTML already sanitized."""

    html: bool
    content: str
    truncated: bool = False


@dataclass(frozen=True)
class Attachment:
    index: int  # its place among the post's attachments, which names its URL
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Rendered:
    parts: list[Shown]
    attachments: list[Attachment]
    too_large: bool = False  # over MAX_BODY: nothing of the body is shown
    more_parts: bool = False  # parts past MAX_PARTS or MAX_DEPTH were left out


def render(body: bytes, obfuscate: bool) -> Rendered:
    """What the page of the post BODY shows; addresses OBFUSCATEd on a public archive's page."""
    if len(body) > MAX_BODY:
        return Rendered([], [], too_large=True)
    found, cut = leaves(body)
    parts: list[Shown] = []
    attachments: list[Attachment] = []
    for part in found:
        if is_attachment(part):
            number = len(attachments) + 1  # its size counted, not decoded: the page shows only that
            attachments.append(Attachment(number, _filename(part, number), part.content_type(), part.size()))
            continue
        written = part.text()
        truncated = len(written) > MAX_TEXT or part.is_long()
        written = written[:MAX_TEXT]
        if part.content_type() == "text/html":
            parts.append(Shown(True, _sanitized(written, obfuscate), truncated))
        else:
            written = written.rstrip()  # the blank lines mail ends with would only pad the page
            parts.append(Shown(False, obfuscated(written) if obfuscate else written, truncated))
    return Rendered(parts, attachments, more_parts=cut)


def attachment(body: bytes, index: int) -> tuple[Attachment, bytes] | None:
    """Attachment INDEX (from 1) of the post BODY and its bytes; None when there is no such one."""
    if len(body) > MAX_BODY or index < 1:
        return None
    found = [part for part in leaves(body)[0] if is_attachment(part)]
    if index > len(found):
        return None
    part = found[index - 1]
    octets = part.payload()
    return Attachment(index, _filename(part, index), part.content_type(), len(octets)), octets


def _filename(part: Part, index: int) -> str:
    """The name the sender gave (RFC 2231, or RFC 2047 as Japanese mail programs write it), without path or
    control characters; `attachment-N` when there is none."""
    raw = part.headers.get_filename()
    name = decoded(str(raw)) if raw else ""
    name = _UNSAFE_NAME.sub("_", name).strip(" .")[:MAX_FILENAME]
    return name or f"attachment-{index}"


def _sanitized(markup: str, obfuscate: bool) -> str:
    import nh3  # only a page with an HTML part loads it

    tags = set(nh3.ALLOWED_TAGS) - _HIDDEN_TAGS
    attributes = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items() if tag not in _HIDDEN_TAGS}
    schemes = {"http", "https"} if obfuscate else {"http", "https", "mailto"}
    clean = nh3.clean(
        markup,
        tags=tags,
        clean_content_tags={"script", "style", "title"},
        attributes=attributes,
        url_schemes=schemes,
        link_rel="noopener noreferrer nofollow",
    )
    return obfuscated(clean) if obfuscate else clean
