"""The parts of a stored message a person reads, found within bounds: the list archive's pages show them and
search indexes their text. A stored post was written by a stranger, so it is parsed only up to MAX_BODY bytes,
MAX_PARTS parts and MAX_DEPTH levels of nesting, and only off the event loop (callers run these in a thread).

The parts are cut from the message's bytes, where only header fields are parsed: a part's body stays where it
is, and is decoded only when it is read. The standard library's parser copies every line of a message: a post of
25 MB with an 18 MB attachment took 200 MB and two seconds of CPU for each view of its page, which only shows the
attachment's size.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from jitaku.mail.encoded_words import decode_body

MAX_BODY = 32 * 1024 * 1024  # bytes of a stored message parsed
MAX_PARTS = 100  # leaf parts looked at
MAX_DEPTH = 8  # multipart levels descended
MAX_TEXT_OCTETS = 2 * 1024 * 1024  # encoded bytes of one text part read: more than a page shows, in any charset
_TAG = re.compile(r"<[^>]*>")
_HIDDEN = re.compile(r"<(script|style|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
_FOLD = re.compile(r"\r?\n(?=[ \t])")  # a line break that folds a header field (RFC 5322 §2.2.3)
# the start of a line that is neither a field, nor its continuation, nor an mbox "From " line: email.feedparser's
_NOT_A_FIELD = re.compile(rb"^(?!From |[\x21-\x39\x3b-\x7e]*:|[\t ])", re.MULTILINE)
_DELIMITER_END = re.compile(rb"(--)?[ \t]*(?:\r?\n|\Z)")  # what may follow "--BOUNDARY" on its line


@dataclass(frozen=True)
class Part:
    """A part that holds content: its header fields, and where its body lies in the MESSAGE's bytes."""

    message: bytes
    headers: Message
    start: int
    end: int

    def content_type(self) -> str:
        return self.headers.get_content_type()

    def encoding(self) -> str:
        return str(self.headers.get("Content-Transfer-Encoding", "7bit")).strip().lower()

    def payload(self, most: int | None = None) -> bytes:
        """The body's octets, its transfer encoding (base64, quoted-printable) undone; of the first MOST
        encoded bytes only, when given."""
        end = self.end if most is None else min(self.end, self.start + most)
        encoded = memoryview(self.message)[self.start : end]
        encoding = self.encoding()
        if encoding == "base64":
            try:
                return binascii.a2b_base64(encoded)
            except binascii.Error:  # padding lost or a stray letter at the end: leniently, as mail readers do
                letters = _NOT_BASE64.sub(b"", bytes(encoded).partition(b"=")[0])
                letters = letters[: len(letters) - (len(letters) % 4 == 1)]  # a lone last letter carries no octet
                return binascii.a2b_base64(letters + b"=" * (-len(letters) % 4))
        if encoding == "quoted-printable":
            return binascii.a2b_qp(encoded)
        return bytes(encoded)

    def size(self) -> int:
        """The decoded body's size, counted on the encoded bytes without decoding them: exact for base64 and
        quoted-printable as they are written."""
        message, start, end = self.message, self.start, self.end
        encoding = self.encoding()
        if encoding == "base64":
            ignored = sum(message.count(c, start, end) for c in (b"\n", b"\r", b" ", b"\t", b"="))
            return (end - start - ignored) * 3 // 4
        if encoding == "quoted-printable":  # "=XX" is one octet, "=" ending a line no octet at all
            escapes = 2 * message.count(b"=", start, end) + message.count(b"=\r\n", start, end)
            return max(0, end - start - escapes)  # a stray "=" at the very end is no escape
        return end - start

    def text(self) -> str:
        """A text part as text, in its charset (ISO-2022-JP, Shift_JIS, UTF-8, ...: mail/encoded_words.py), of its
        first MAX_TEXT_OCTETS encoded bytes."""
        return decode_body(self.payload(MAX_TEXT_OCTETS), self.headers.get_content_charset())

    def is_long(self) -> bool:
        """Whether text() leaves some of it out."""
        return self.end - self.start > MAX_TEXT_OCTETS


def leaves(message: bytes) -> tuple[list[Part], bool]:
    """The parts of MESSAGE that hold content, in order, and whether some were left out past the bounds. Of a
    multipart/alternative only the plain text is kept (its HTML says the same), or the HTML when there is none.
    A message/rfc822 part (a forwarded message) is looked into, as the standard library's parser did."""
    found: list[Part] = []
    cut = False

    def walk(start: int, end: int, default: str, depth: int) -> None:
        nonlocal cut
        if len(found) >= MAX_PARTS:
            cut = True
            return
        part = _part(message, start, end, default)
        kind = part.content_type()
        if kind.startswith("multipart/") or kind == "message/rfc822":
            if depth >= MAX_DEPTH:
                cut = True
                return
            if kind == "message/rfc822":
                walk(part.start, part.end, "text/plain", depth + 1)
                return
            spans, more = _spans(part, MAX_PARTS - len(found))
            cut = cut or more
            if spans:
                inner = "message/rfc822" if kind == "multipart/digest" else "text/plain"
                if kind == "multipart/alternative":
                    spans = [_best_alternative(message, spans, inner)]
                for child_start, child_end in spans:
                    walk(child_start, child_end, inner, depth + 1)
                return
        found.append(part)  # a multipart without its parts (no boundary, or it never appears) is offered whole

    walk(0, len(message), "text/plain", 0)
    return found, cut


def _part(message: bytes, start: int, end: int, default: str) -> Part:
    """The part at [START, END) of MESSAGE: its header fields parsed, its body's place found."""
    body_at = _header_end(message, start, end)
    headers = BytesHeaderParser(policy=compat32).parsebytes(message[start:body_at])
    headers.set_default_type(default)
    return Part(message, headers, body_at, end)


def _header_end(message: bytes, start: int, end: int) -> int:
    """Where the body begins, as the standard library's parser has it: after the empty line that ends the header
    fields, or at the first line that is no header field (mail programs do leave the empty line out)."""
    found = _NOT_A_FIELD.search(message, start, end)
    if found is None:
        return end
    at = found.start()
    if message.startswith(b"\r\n", at, end):
        return at + 2
    return at + 1 if message.startswith((b"\n", b"\r"), at, end) else at


def _spans(part: Part, most: int) -> tuple[list[tuple[int, int]], bool]:
    """Where the parts of a multipart begin and end in the message, each without the line break that belongs to
    the delimiter (RFC 2046 §5.1.1), MOST of them at most, and whether there were more; the preamble and epilogue
    are not parts. The delimiters are found with bytes.find, tens of times faster through megabytes of base64
    than a regular expression tried at each line."""
    boundary = part.headers.get_boundary()  # unquoted, and RFC 2231's form read
    if not boundary:
        return [], False
    boundary = _FOLD.sub("", boundary)  # folded inside its quotes: unfolding keeps the space (RFC 5322 §2.2.3)
    dashes = b"--" + boundary.encode("utf-8", "surrogateescape")
    message, end = part.message, part.end
    spans: list[tuple[int, int]] = []
    start: int | None = None
    at = part.start
    while (found := message.find(dashes, at, end)) >= 0:
        at = found + len(dashes)
        if found > part.start and message[found - 1] != 0x0A:
            continue  # not at the start of a line
        rest = _DELIMITER_END.match(message, at, end)
        if rest is None:
            continue  # a line that only begins with the boundary
        if start is not None:
            before = found  # the line break before the delimiter belongs to it
            if found > start:
                before -= 2 if found - 2 >= start and message[found - 2] == 0x0D else 1
            if before > start:  # two delimiters in a row hold no part, as the standard library has it
                spans.append((start, before))
            if len(spans) >= most:
                return spans, True
        if rest.group(1):  # the close delimiter
            return spans, False
        start = at = rest.end()
    if start is not None and end > start:
        spans.append((start, end))
    return spans, False


def _best_alternative(message: bytes, spans: list[tuple[int, int]], default: str) -> tuple[int, int]:
    types = [_part(message, start, end, default).content_type() for start, end in spans]
    for wanted in ("text/plain", "text/html"):
        if wanted in types:
            return spans[types.index(wanted)]
    return spans[-1]


def is_attachment(part: Part) -> bool:
    """What is offered for download rather than shown: anything but text/plain and text/html, and those too
    when sent as an attachment or with a filename."""
    if part.content_type() not in ("text/plain", "text/html"):
        return True
    disposition = (part.headers.get("Content-Disposition") or "").split(";")[0].strip().lower()
    return disposition == "attachment" or part.headers.get_filename() is not None


def plain_text(body: bytes, limit: int = 100_000) -> str:
    """The words of the message BODY, for search: its text parts, an HTML part's without tags; at most LIMIT
    characters."""
    if len(body) > MAX_BODY:
        return ""
    pieces: list[str] = []
    size = 0
    for part in leaves(body)[0]:
        if is_attachment(part):
            continue
        shown = part.text()
        if part.content_type() == "text/html":
            import html

            shown = html.unescape(_TAG.sub(" ", _HIDDEN.sub(" ", shown)))
        pieces.append(shown)
        size += len(shown)
        if size >= limit:
            break
    return "\n".join(pieces)[:limit]
