"""ENVELOPE, BODY and BODYSTRUCTURE (RFC 3501 §7.4.2), written as IMAP data.

Header values go out as the message has them, encoded-words included: a client decodes
"=?ISO-2022-JP?B?...?=" itself, and re-encoding it here could only lose what the sender chose. Where
RFC 3501 leaves a choice (the case of "text/plain", RFC 2231 parameters, a multipart without a boundary),
we write what Dovecot writes, so that clients see what they already know; the integration tests compare
the two octet for octet.
"""

from __future__ import annotations

import re
from email.utils import getaddresses
from typing import TypeAlias

from jitaku.mail.imap.mime import FOLD, Part

NIL = b"NIL"
QUOTABLE = re.compile(rb"[\x20-\x7e]*")


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


def _raw(part: Part, name: str) -> str | None:
    """A header's value as the message has it; raw 8-bit bytes (UTF-8 headers) come through as the parser's
    surrogate escapes, which string() turns back into the same bytes."""
    wanted = name.lower()
    for field_name, raw in part.headers.raw_items():
        if field_name.lower() == wanted:
            return str(raw)
    return None


def _value(part: Part, name: str) -> str | None:
    """The value unfolded (RFC 5322 §2.2.3)."""
    raw = _raw(part, name)
    return None if raw is None else FOLD.sub("", raw).strip()


def _text(part: Part, name: str) -> bytes:
    """An envelope's text field; one that was folded goes out as a literal, as Dovecot writes it."""
    raw = _raw(part, name)
    if raw is None:
        return NIL
    value = FOLD.sub("", raw).strip()
    folded = value.encode("utf-8", "surrogateescape")
    return b"{%d}\r\n" % len(folded) + folded if "\n" in raw.strip() else string(value)


# A group, "name: members;" (RFC 5322 §3.4), tried only where a list's element starts and only up to the last
# ";", without backtracking: tried at every position, an address of 40,000 letters took a minute
GROUP = re.compile(r'(?:^|(?<=[,;]))\s*+((?:"(?:[^"\\]|\\.)*+"|[^,:;"<>])++):([^;]*+);')
# An angle-addr's obsolete source route, "<@relay1,@relay2:user@host>" (RFC 5322 §4.4), which getaddresses drops
ROUTE = re.compile(r"<\s*(@[^<>:]*):([^<>]*)>")
# ENVELOPE's four fields of an address (RFC 3501 §7.4.2): name, adl (the source route), mailbox and host
Address: TypeAlias = tuple[str | None, str | None, str | None, str | None]


def addresses(value: str) -> list[Address]:
    """An address list as ENVELOPE gives it; a group "name: members;" is its start (NIL NIL "name" NIL), its
    members and an end (NIL NIL NIL NIL). SEARCH FROM, TO, CC and BCC read it too."""
    value, routes = _unrouted(value)
    found: list[Address] = []

    def mailboxes(text: str) -> None:
        try:
            parsed = getaddresses([text])
        except RecursionError:  # it recurses at each ":" that opens a group: "a:a:a:..." has no addresses here
            return
        for display, address in parsed:
            if address or display:
                mailbox, at, host = address.rpartition("@")
                if not at:
                    mailbox, host = address, ""
                found.append((display or None, routes.get(address), mailbox, host or None))

    last = 0
    for group in GROUP.finditer(value, 0, value.rfind(";") + 1):
        mailboxes(value[last : group.start()])
        found.append((None, None, group.group(1).strip().strip('"'), None))
        mailboxes(group.group(2))
        found.append((None, None, None, None))
        last = group.end()
    mailboxes(value[last:])
    return found


def _unrouted(value: str) -> tuple[str, dict[str, str]]:
    """VALUE with the source routes taken out of its angle-addrs, and each route by the address it leads to,
    written as Dovecot writes the adl: "@relay1,@relay2"."""
    routes: dict[str, str] = {}

    def unroute(found: re.Match[str]) -> str:
        address = "".join(found.group(2).split())  # as getaddresses gives it, unless comments are in it
        routes[address] = ",".join(re.findall(r"@[^\s,@]+", found.group(1)))
        return "<" + found.group(2) + ">"

    return ROUTE.sub(unroute, value), routes


def _addresses(part: Part, name: str) -> bytes:
    """An address list in ENVELOPE; addresses follow each other without spaces, as the grammar has it."""
    value = _value(part, name)
    found = addresses(value) if value else []
    return b"(" + b"".join(listed([string(field) for field in address]) for address in found) + b")" if found else NIL


def envelope(part: Part) -> bytes:
    sender = "Sender" if part.headers.get("Sender") else "From"
    reply_to = "Reply-To" if part.headers.get("Reply-To") else "From"
    fields = [
        _text(part, "Date"),
        _text(part, "Subject"),
        _addresses(part, "From"),
        _addresses(part, sender),
        _addresses(part, reply_to),
        _addresses(part, "To"),
        _addresses(part, "Cc"),
        _addresses(part, "Bcc"),
        _text(part, "In-Reply-To"),
        _text(part, "Message-ID"),
    ]
    return b"(" + b" ".join(fields) + b")"


PARAMETER = re.compile(r'\s*([^=\s;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)\s*(?:;|$)')
CONTINUATION = re.compile(r"(.+)\*(\d+)")


def _parameters(part: Part, header: str, defaults: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A header's parameters, names and values as written; "name*0", "name*1" ... joined into "name"
    (after the others), RFC 2231's extended values passed on undecoded, as Dovecot does."""
    value = _value(part, header) or ""
    found: list[tuple[str, str]] = []
    pieces: dict[str, list[tuple[int, str]]] = {}
    for match in PARAMETER.finditer(value, value.find(";") + 1 if ";" in value else len(value)):
        name, raw = match.group(1), match.group(2).strip()
        text = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith('"') and raw.endswith('"') else raw
        continued = CONTINUATION.fullmatch(name)
        if continued:
            pieces.setdefault(continued.group(1), []).append((int(continued.group(2)), text))
        else:
            found.append((name, text))
    found += [(name, "".join(text for _n, text in sorted(parts))) for name, parts in pieces.items()]
    written = {name.lower() for name, _value in found}
    found = [(name, text) for name, text in defaults if name not in written] + found
    return listed([string(item) for pair in found for item in pair])


def _type_parameters(part: Part) -> bytes:
    """Content-Type's parameters; text without a charset is us-ascii (RFC 2045 §5.2)."""
    defaults = (("charset", "us-ascii"),) if _is_text(part) else ()
    return _parameters(part, "Content-Type", defaults)


def _is_text(part: Part) -> bool:
    """Text as written (a Content-Type that cannot be parsed is not text here, unlike in the email module)."""
    return _written_type(part)[0].lower() == "text"


def _extension(part: Part, first: bytes) -> list[bytes]:
    """The extension data after FIRST (body-fld-md5 of a single part, parameters of a multipart)."""
    return [first, _disposition(part), _language(part), string(_value(part, "Content-Location"))]


def _disposition(part: Part) -> bytes:
    value = _value(part, "Content-Disposition")
    if not value:
        return NIL
    kind = value.split(";", 1)[0].strip()
    return b"(" + string(kind) + b" " + _parameters(part, "Content-Disposition") + b")"


def _language(part: Part) -> bytes:
    value = _value(part, "Content-Language")
    if not value:
        return NIL
    tags = [string(tag.strip()) for tag in value.split(",") if tag.strip()]
    return tags[0] if len(tags) == 1 else listed(tags)


def _written_type(part: Part) -> tuple[str, str]:
    """Content-Type's type and subtype in the case the message wrote them; the default in lower case."""
    value = _value(part, "Content-Type")
    if value is None:
        kind, subtype = part.content_type
        return kind, subtype
    kind, _, subtype = value.split(";", 1)[0].partition("/")
    return kind.strip(), subtype.strip()


def body_structure(part: Part, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (EXTENSIBLE) or BODY of PART."""
    kind, subtype = _written_type(part)
    if part.is_multipart:
        fields = [body_structure(child, extensible) for child in part.children]
        inner = [b"".join(fields), string(subtype)]
        if extensible:
            inner += _extension(part, _parameters(part, "Content-Type"))
        return b"(" + b" ".join(inner) + b")"
    fields = [
        string(kind),
        string(subtype),
        _type_parameters(part),
        string(_value(part, "Content-ID")),
        string(_value(part, "Content-Description")),
        string(_value(part, "Content-Transfer-Encoding") or "7bit"),
        str(len(part.body)).encode(),
    ]
    if _is_text(part):
        fields.append(str(part.body.count(b"\n")).encode())
    elif part.message is not None:
        held = part.message
        fields += [envelope(held), body_structure(held, extensible), str(part.body.count(b"\n")).encode()]
    if extensible:
        fields += _extension(part, string(_value(part, "Content-MD5")))
    return b"(" + b" ".join(fields) + b")"
