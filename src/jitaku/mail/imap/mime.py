"""A stored message's MIME tree as IMAP addresses it (RFC 3501 §6.4.5): every part's exact bytes, so that
BODY[1.2], BODY[1.2.MIME] and partial fetches return what the message holds, octet for octet.

The standard library's email parser rebuilds what it parses (and may re-fold headers), so the tree here is
cut from the raw bytes; only header values are parsed, with email.headerregistry's parameter parsing.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

from jitaku.mail.imap.parser import Section

NOT_BASE64 = re.compile(rb"[^A-Za-z0-9+/]")
FOLD = re.compile(r"\r?\n(?=[ \t])")  # a line break that folds a header field (RFC 5322 §2.2.3)
MAX_DEPTH = 40  # nested multiparts deeper than this are served as opaque bodies
# Parts of one message's tree: past them, the rest is not cut into parts (Dovecot's default limit). A
# stranger's 25 MB message of 700,000 tiny parts took 20 s to parse, each FETCH BODYSTRUCTURE of it.
MAX_PARTS = 10_000


@dataclass
class Part:
    header: bytes  # the header block with the empty line that ends it ("" when the part has none)
    body: bytes
    headers: Message
    children: list[Part] = field(default_factory=list)  # of a multipart
    message: Part | None = None  # the message a message/rfc822 part holds
    at: int = 0  # where the part's header starts in the message parsed

    @property
    def content_type(self) -> tuple[str, str]:
        """(type, subtype), lower-case: the part's default (RFC 2045 §5.2, RFC 2046 §5.1.5) when it has none."""
        kind, _, subtype = self.headers.get_content_type().partition("/")
        return kind, subtype

    @property
    def is_multipart(self) -> bool:
        return bool(self.children)

    @property
    def whole(self) -> bytes:
        return self.header + self.body


def split(raw: bytes) -> tuple[bytes, bytes]:
    """The header block (with the empty line that ends it) and the body."""
    if raw.startswith((b"\r\n", b"\n")):  # no header fields: the empty line alone ends the header
        cut = raw.index(b"\n") + 1
        return raw[:cut], raw[cut:]
    # the first empty line (LF, CRLF, or one of each), found with bytes.find: a regular expression tried at
    # each position of a header of megabytes holds the interpreter, and so the event loop, for long
    ends = [at for at in (raw.find(b"\n\n"), raw.find(b"\n\r\n")) if at >= 0]
    if not ends:
        return raw, b""
    cut = min(ends) + (2 if raw[min(ends) + 1] == 0x0A else 3)
    return raw[:cut], raw[cut:]


def top_section(raw: bytes, wanted: Section) -> bytes | None:
    """BODY[], [HEADER], [TEXT] and [HEADER.FIELDS ...] of a whole message, without parsing it: what a
    client listing a mailbox asks for, thousands of times."""
    if wanted.part or wanted.text == "MIME":
        return None
    header, body = split(raw)
    if not wanted.text:
        return raw
    if wanted.text == "HEADER":
        return header
    if wanted.text == "TEXT":
        return body
    return header_fields(header, set(wanted.fields), keep=wanted.text == "HEADER.FIELDS")


def parse(raw: bytes, default: str = "text/plain") -> Part:
    """RAW as a tree; DEFAULT is the content type a part without one has (message/rfc822 in a digest)."""
    return _parse(raw, default, 0, [MAX_PARTS], 0)


def _parse(raw: bytes, default: str, depth: int, parts_left: list[int], at: int) -> Part:
    parts_left[0] -= 1
    header, body = split(raw)
    headers = BytesHeaderParser(policy=compat32).parsebytes(header)
    headers.set_default_type(default)
    part = Part(header, body, headers, at=at)
    body_at = at + len(header)
    kind, subtype = part.content_type
    if depth >= MAX_DEPTH or parts_left[0] <= 0:
        return part
    if kind == "multipart":
        boundary = headers.get_param("boundary")
        if isinstance(boundary, str):  # folded inside its quotes: unfolding keeps the space (RFC 5322 §2.2.3)
            boundary = FOLD.sub("", boundary)
        inner = "message/rfc822" if subtype == "digest" else "text/plain"
        spans = _split(body, boundary.encode(), parts_left[0]) if isinstance(boundary, str) and boundary else []
        # without parts (no boundary, or it never appears) there is one empty part, as Dovecot has it
        part.children = [
            _parse(body[start:end], inner, depth + 1, parts_left, body_at + start) for start, end in spans or [(0, 0)]
        ]
    elif (kind, subtype) == ("message", "rfc822"):
        part.message = _parse(body, "text/plain", depth + 1, parts_left, body_at)
    return part


def _split(body: bytes, boundary: bytes, most: int) -> list[tuple[int, int]]:
    """Where the parts between "--BOUNDARY" lines start and end, each without the line break that belongs to
    the delimiter (RFC 2046 §5.1.1), MOST of them at most; the preamble and epilogue are not parts."""
    delimiter = re.compile(rb"(?:^|\r?\n)--" + re.escape(boundary) + rb"(--)?[ \t]*(?=\r?\n|$)")
    spans: list[tuple[int, int]] = []
    start: int | None = None
    for found in delimiter.finditer(body):
        if start is not None:
            spans.append((start, found.start()))
            if len(spans) >= most:
                return spans
        if found.group(1):  # the close delimiter
            return spans
        newline = body.find(b"\n", found.end())
        start = len(body) if newline < 0 else newline + 1
    if start is not None:
        spans.append((start, len(body)))
    return spans


def locate(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part at PATH (RFC 3501 §6.4.5): a message's part 1 is its body when it is not multipart, and a
    message/rfc822 part's numbers go on inside the message it holds. A part that is neither multipart nor
    a message has only the number 1 below it, itself, and only when that is the last number (as Dovecot
    reads the RFC: a one-part message has a part 1 but no part 1.1)."""
    part = root
    for index, number in enumerate(path):
        more = index < len(path) - 1
        if part.is_multipart:
            if number > len(part.children):
                return None
            part = part.children[number - 1]
        elif number != 1 or (more and part.message is None):
            return None
        if more and part.message is not None:
            part = part.message
    return part


def section(root: Part, wanted: Section) -> bytes | None:
    """The bytes BODY[WANTED] names, or None when the message has no such part."""
    part = locate(root, wanted.part)
    if part is None:
        return None
    if not wanted.text:
        return part.whole if not wanted.part else part.body
    if wanted.text == "MIME":
        return part.header
    target = part if not wanted.part else part.message
    if target is None:  # HEADER and TEXT of a part number apply to a message/rfc822 part only
        return None
    if wanted.text == "TEXT":
        return target.body
    if wanted.text == "HEADER":
        return target.header
    return header_fields(target.header, set(wanted.fields), keep=wanted.text == "HEADER.FIELDS")


class UnknownEncoding(Exception):
    """A Content-Transfer-Encoding BINARY cannot undo (IMAP's [UNKNOWN-CTE], RFC 3516 §4.3)."""


def decoded(root: Part, path: tuple[int, ...]) -> bytes | None:
    """BINARY[PATH] (RFC 3516): the part's content with its Content-Transfer-Encoding undone; the whole
    message, as it is, for an empty path; None when there is no such part."""
    if not path:
        return root.whole
    part = locate(root, path)
    if part is None:
        return None
    encoding = str(part.headers.get("content-transfer-encoding", "7bit")).strip().lower()
    if part.is_multipart or part.message is not None or encoding in ("7bit", "8bit", "binary"):
        return part.body
    if encoding == "base64":  # leniently, as mail readers do: stray characters and missing padding happen
        letters = NOT_BASE64.sub(b"", part.body.partition(b"=")[0])
        letters = letters[: len(letters) - (len(letters) % 4 == 1)]  # a lone last letter carries no octet
        return binascii.a2b_base64(letters + b"=" * (-len(letters) % 4))
    if encoding == "quoted-printable":
        return _unquoted(part.body)
    raise UnknownEncoding(f"the part's Content-Transfer-Encoding {encoding[:40]!r} is not one BINARY knows")


def _unquoted(body: bytes) -> bytes:
    """Quoted-printable undone. Whitespace that ends a line was added in transport and goes first (RFC 2045
    §6.7 rule 3), which binascii keeps: so "a= " is a soft line break and "hello  " is "hello", as Dovecot has
    them. The lines are stripped one by one, not by a regular expression, which is quadratic in a long run
    of blanks."""
    lines = (line.rstrip(b" \t\r") + (b"\r" if line.endswith(b"\r") else b"") for line in body.split(b"\n"))
    return binascii.a2b_qp(b"\n".join(lines))


def header_fields(header: bytes, names: set[str], keep: bool) -> bytes:
    """The header fields named in NAMES (upper-case), or all but those, each with its continuation lines,
    and the empty line that ends a header."""
    lines = re.split(rb"(?<=\n)", header)
    kept: list[bytes] = []
    taking = False
    for line in lines:
        if not line.strip():
            continue
        if line[:1] in (b" ", b"\t"):
            if taking:
                kept.append(line)
            continue
        name = line.split(b":", 1)[0].strip().decode("ascii", "replace").upper()
        taking = (name in names) == keep
        if taking:
            kept.append(line)
    return b"".join(kept) + b"\r\n"
