"""Reading header fields of stored or arriving messages, MIME encoded-words included."""

from __future__ import annotations

import re
from datetime import datetime
from email.header import Header
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime

from jitaku.mail import encoded_words

_parser = BytesHeaderParser()


def parse(message: bytes) -> Message:
    return _parser.parsebytes(message)


def from_addresses(message: bytes) -> list[str]:
    """Every address in the From field(s), lower-cased; empty when there is none or it cannot be parsed."""
    fields = parse(message).get_all("From") or []
    return [address.lower() for _name, address in getaddresses([str(f) for f in fields]) if address]


_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_LINE = re.compile(rb"(?<=\r\n)")
_RECEIVED = re.compile(rb"(?im)^received:")


def split_fields(message: bytes) -> tuple[list[bytes], bytes]:
    """Header fields as they are (each with its folded lines and CRLF) and the body from the blank line on."""
    end = message.find(b"\r\n\r\n")
    head, body = (message, b"") if end < 0 else (message[: end + 2], message[end + 2 :])
    fields: list[bytes] = []
    for line in _LINE.split(head):
        if not line:
            continue
        if not line.endswith(b"\r\n"):
            line += b"\r\n"
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    return fields, body


def field_name(field: bytes) -> str:
    """The field's name, lower-cased; empty for a line that is no header field."""
    match = _NAME.match(field)
    return match.group(1).decode("ascii").lower() if match else ""


def field_value(field: bytes) -> str:
    """The raw value, unfolded, as text (8-bit bytes kept as surrogates)."""
    value = field.split(b":", 1)[1] if b":" in field else b""
    return value.decode("utf-8", "surrogateescape").replace("\r\n", "").strip()


def hops(message: bytes) -> int:
    """How many servers the message has passed: its Received headers (RFC 5321 §6.3)."""
    end = message.find(b"\r\n\r\n")
    return len(_RECEIVED.findall(message if end < 0 else message[:end]))


def decoded(value: str | Header | None) -> str:
    """Decode RFC 2047 encoded-words (ISO-2022-JP, Shift_JIS, UTF-8, B or Q, folded) into text.

    Raw 8-bit bytes that are not UTF-8 become U+FFFD: the text is for people and for the database,
    which takes no lone surrogates.
    """
    if not value:
        return ""
    text = encoded_words.decode(encoded_words.source(value) if isinstance(value, Header) else value)[0]
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def date_of(message: Message) -> datetime | None:
    try:
        return parsedate_to_datetime(message["Date"]) if message["Date"] else None
    except (TypeError, ValueError):
        return None
