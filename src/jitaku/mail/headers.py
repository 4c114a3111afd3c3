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


_RECEIVED = re.compile(rb"(?im)^received:")


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
