"""ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501 §7.4.2), written as IMAP data.

Header values go out as the message has them, encoded-words included: a client decodes
"=?ISO-2022-JP?B?...?=" itself, and re-encoding it here could only lose what the sender chose.
"""

from __future__ import annotations

import re
from email.utils import collapse_rfc2231_value, getaddresses

from jitaku.mail.imap.mime import Part

NIL = b"NIL"
QUOTABLE = re.compile(rb"[\x20-\x7e]*")
FOLD = re.compile(r"\r?\n(?=[ \t])")


def string(value: str | bytes | None) -> bytes:
    """An nstring: NIL, a quoted string when it can be one, else a literal (8-bit text, CR or LF)."""
    if value is None:
        return NIL
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if QUOTABLE.fullmatch(data) and len(data) < 1024:
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def listed(items: list[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")" if items else NIL


def _value(part: Part, name: str) -> str | None:
    """A header's value as the message has it, unfolded (RFC 5322 §2.2.3)."""
    raw = part.headers.get(name)
    if raw is None:
        return None
    return FOLD.sub("", str(raw)).strip()


def _addresses(part: Part, name: str) -> bytes:
    value = _value(part, name)
    if not value:
        return NIL
    found = []
    for display, address in getaddresses([value]):
        if not address and not display:
            continue
        mailbox, at, host = address.rpartition("@")
        if not at:
            mailbox, host = address, ""
        found.append(listed([string(display or None), NIL, string(mailbox), string(host or None)]))
    return listed(found)


def envelope(part: Part) -> bytes:
    sender = "Sender" if part.headers.get("Sender") else "From"
    reply_to = "Reply-To" if part.headers.get("Reply-To") else "From"
    fields = [
        string(_value(part, "Date")),
        string(_value(part, "Subject")),
        _addresses(part, "From"),
        _addresses(part, sender),
        _addresses(part, reply_to),
        _addresses(part, "To"),
        _addresses(part, "Cc"),
        _addresses(part, "Bcc"),
        string(_value(part, "In-Reply-To")),
        string(_value(part, "Message-ID")),
    ]
    return b"(" + b" ".join(fields) + b")"


def _parameters(part: Part, header: str, defaults: tuple[tuple[str, str], ...] = ()) -> bytes:
    params = (part.headers.get_params(header=header) or [])[1:]  # the first is the value itself, text/plain
    found = [
        (name.lower(), collapse_rfc2231_value(value) if isinstance(value, tuple) else value) for name, value in params
    ]
    missing = [(name, value) for name, value in defaults if name not in dict(found)]
    return listed([string(item) for pair in missing + found for item in pair])


def _type_parameters(part: Part) -> bytes:
    """Content-Type's parameters; text without a charset is us-ascii (RFC 2045 §5.2), said as Dovecot says it."""
    defaults = (("charset", "us-ascii"),) if part.content_type[0] == "text" else ()
    return _parameters(part, "Content-Type", defaults)


def _extension(part: Part, first: bytes) -> list[bytes]:
    """The extension data after FIRST (body-fld-md5 of a single part, parameters of a multipart)."""
    return [first, _disposition(part), _language(part), string(_value(part, "Content-Location"))]


def _disposition(part: Part) -> bytes:
    value = _value(part, "Content-Disposition")
    if not value:
        return NIL
    kind = value.split(";", 1)[0].strip().lower()
    return b"(" + string(kind) + b" " + _parameters(part, "Content-Disposition") + b")"


def _language(part: Part) -> bytes:
    value = _value(part, "Content-Language")
    if not value:
        return NIL
    tags = [string(tag.strip()) for tag in value.split(",") if tag.strip()]
    return tags[0] if len(tags) == 1 else listed(tags)


def body_structure(part: Part, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (EXTENSIBLE) or BODY of PART."""
    kind, subtype = part.content_type
    if part.is_multipart:
        fields = [body_structure(child, extensible) for child in part.children]
        inner = [b"".join(fields), string(subtype.upper())]
        if extensible:
            inner += _extension(part, _parameters(part, "Content-Type"))
        return b"(" + b" ".join(inner) + b")"
    encoding = (_value(part, "Content-Transfer-Encoding") or "7BIT").upper()
    fields = [
        string(kind.upper()),
        string(subtype.upper()),
        _type_parameters(part),
        string(_value(part, "Content-ID")),
        string(_value(part, "Content-Description")),
        string(encoding),
        str(len(part.body)).encode(),
    ]
    if kind == "text":
        fields.append(str(part.body.count(b"\n")).encode())
    elif part.message is not None:
        held = part.message
        fields += [envelope(held), body_structure(held, extensible), str(part.body.count(b"\n")).encode()]
    if extensible:
        fields += _extension(part, string(_value(part, "Content-MD5")))
    return b"(" + b" ".join(fields) + b")"
