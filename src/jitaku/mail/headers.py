"""Reading header fields of stored or arriving messages, MIME encoded-words included."""

from __future__ import annotations

from datetime import datetime
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses, parsedate_to_datetime

_parser = BytesHeaderParser()


def parse(message: bytes) -> Message:
    return _parser.parsebytes(message)


def from_addresses(message: bytes) -> list[str]:
    """Every address in the From field(s), lower-cased; empty when there is none or it cannot be parsed."""
    fields = parse(message).get_all("From") or []
    return [address.lower() for _name, address in getaddresses([str(f) for f in fields]) if address]


def decoded(value: str | None) -> str:
    """Decode RFC 2047 encoded-words (ISO-2022-JP, UTF-8, B or Q, folded) into text."""
    if not value:
        return ""
    try:
        return str(make_header(decode_header(value))).replace("\r\n", "").replace("\n", "")
    except (LookupError, UnicodeError, ValueError):
        return value


def date_of(message: Message) -> datetime | None:
    try:
        return parsedate_to_datetime(message["Date"]) if message["Date"] else None
    except (TypeError, ValueError):
        return None
