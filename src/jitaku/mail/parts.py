"""The parts of a stored message a person reads, found within bounds: the list archive's pages show them and
search indexes their text. A stored post was written by a stranger, so it is parsed only up to MAX_BODY bytes,
MAX_PARTS parts and MAX_DEPTH levels of nesting, and only off the event loop (callers run these in a thread).
"""

from __future__ import annotations

import re
from email.message import Message
from email.parser import BytesParser
from email.policy import compat32

from jitaku.mail.encoded_words import decode_body

MAX_BODY = 32 * 1024 * 1024  # bytes of a stored message parsed
MAX_PARTS = 100  # leaf parts looked at
MAX_DEPTH = 8  # multipart levels descended
_TAG = re.compile(r"<[^>]*>")
_HIDDEN = re.compile(r"<(script|style|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def parse(body: bytes) -> Message:
    return BytesParser(policy=compat32).parsebytes(body)


def leaves(message: Message) -> tuple[list[Message], bool]:
    """The parts that hold content, in order, and whether some were left out past the bounds. Of a
    multipart/alternative only the plain text is kept (its HTML says the same), or the HTML when there is none."""
    found: list[Message] = []
    cut = False

    def walk(part: Message, depth: int) -> None:
        nonlocal cut
        if len(found) >= MAX_PARTS:
            cut = True
            return
        if not part.is_multipart():
            found.append(part)
            return
        if depth >= MAX_DEPTH:
            cut = True
            return
        children = [child for child in part.get_payload() if isinstance(child, Message)]
        if part.get_content_type() == "multipart/alternative" and children:
            children = [_best_alternative(children)]
        for child in children:
            walk(child, depth + 1)

    walk(message, 0)
    return found, cut


def _best_alternative(children: list[Message]) -> Message:
    for wanted in ("text/plain", "text/html"):
        for child in children:
            if child.get_content_type() == wanted:
                return child
    return children[-1]


def is_attachment(part: Message) -> bool:
    """What is offered for download rather than shown: anything but text/plain and text/html, and those too
    when sent as an attachment or with a filename."""
    if part.get_content_type() not in ("text/plain", "text/html"):
        return True
    disposition = (part.get("Content-Disposition") or "").split(";")[0].strip().lower()
    return disposition == "attachment" or part.get_filename() is not None


def payload(part: Message) -> bytes:
    """The part's octets, its transfer encoding (base64, quoted-printable) undone."""
    octets = part.get_payload(decode=True)
    return octets if isinstance(octets, bytes) else b""


def text(part: Message) -> str:
    """A text part as text, in its charset (ISO-2022-JP, Shift_JIS, UTF-8, ...: mail/encoded_words.py)."""
    return decode_body(payload(part), part.get_content_charset())


def plain_text(body: bytes, limit: int = 100_000) -> str:
    """The words of the message BODY, for search: its text parts, an HTML part's without tags; at most LIMIT
    characters."""
    if len(body) > MAX_BODY:
        return ""
    pieces: list[str] = []
    size = 0
    for part in leaves(parse(body))[0]:
        if is_attachment(part):
            continue
        shown = text(part)
        if part.get_content_type() == "text/html":
            import html

            shown = html.unescape(_TAG.sub(" ", _HIDDEN.sub(" ", shown)))
        pieces.append(shown)
        size += len(shown)
        if size >= limit:
            break
    return "\n".join(pieces)[:limit]
