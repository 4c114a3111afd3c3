"""SEARCH (RFC 3501 §6.4.4) over one mailbox's messages. Text keys match decoded text, case-insensitively:
a Japanese subject in ISO-2022-JP encoded-words is found by the UTF-8 words the client sends."""

from __future__ import annotations

import datetime
import email
from collections.abc import Collection
from dataclasses import dataclass
from email.message import Message
from functools import cached_property

from jitaku.mail import headers
from jitaku.mail.imap.parser import SearchKey

FLAG_KEYS = {"ANSWERED": "\\Answered", "DELETED": "\\Deleted", "DRAFT": "\\Draft", "FLAGGED": "\\Flagged"}
FLAG_KEYS |= {"SEEN": "\\Seen"}
# keys that need the message's bytes; the others come from the index
TEXT_KEYS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO", "HEADER", "SENTBEFORE", "SENTON", "SENTSINCE"}


def uses_modseq(key: SearchKey) -> bool:
    return key.name == "MODSEQ" or any(uses_modseq(inner) for inner in key.keys)


def needs_body(key: SearchKey) -> bool:
    return key.name in TEXT_KEYS or any(needs_body(inner) for inner in key.keys)


@dataclass
class Candidate:
    number: int
    uid: int
    flags: frozenset[str]
    modseq: int
    size: int
    received_at: float
    body: bytes
    largest: int  # the mailbox's highest message number: what "*" means in a sequence set
    largest_uid: int  # its highest UID: what "*" means in a UID set
    saved: Collection[int] = ()  # the UIDs "$" names (SEARCHRES)

    @cached_property
    def parsed(self) -> Message:
        """Parsed with compat32, which leaves encoded-words alone for our own decoder (Japanese quirks)."""
        return email.message_from_bytes(self.body)

    def header(self, name: str) -> str:
        return " ".join(headers.decoded(value) for value in self.parsed.get_all(name, [])).casefold()

    @cached_property
    def text(self) -> str:
        """The text parts, decoded from their transfer encoding and charset."""
        found = []
        for part in self.parsed.walk():
            payload = part.get_payload(decode=True) if part.get_content_maintype() == "text" else None
            if isinstance(payload, bytes):
                try:
                    found.append(payload.decode(part.get_content_charset() or "us-ascii", "replace"))
                except LookupError:
                    found.append(payload.decode("utf-8", "replace"))
        return "\n".join(found).casefold()


def matches(key: SearchKey, message: Candidate) -> bool:
    name = key.name
    if name == "AND":
        return all(matches(inner, message) for inner in key.keys)
    if name == "OR":
        return matches(key.keys[0], message) or matches(key.keys[1], message)
    if name == "NOT":
        return not matches(key.keys[0], message)
    if name == "ALL":
        return True
    recent = "\\Recent" in message.flags
    if name in ("RECENT", "OLD"):
        return recent == (name == "RECENT")
    if name == "NEW":  # RFC 3501 §6.4.4: RECENT UNSEEN
        return recent and "\\Seen" not in message.flags
    if name in FLAG_KEYS:
        return FLAG_KEYS[name] in message.flags
    if name.startswith("UN") and name[2:] in FLAG_KEYS:
        return FLAG_KEYS[name[2:]] not in message.flags
    if name == "KEYWORD":
        return key.text in message.flags
    if name == "UNKEYWORD":
        return key.text not in message.flags
    if name in ("SEQ", "UID") and key.sequence is not None and key.sequence.saved:
        return message.uid in message.saved
    if name == "SEQ" and key.sequence is not None:
        return key.sequence.contains(message.number, message.largest)
    if name == "UID" and key.sequence is not None:
        return key.sequence.contains(message.uid, message.largest_uid)
    if name == "LARGER":
        return message.size > key.number
    if name == "SMALLER":
        return message.size < key.number
    if name == "MODSEQ":
        return message.modseq >= key.number
    if name in ("BEFORE", "ON", "SINCE"):
        return _compare(name, datetime.datetime.fromtimestamp(message.received_at, datetime.UTC).date(), key.text)
    if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
        sent = headers.date_of(message.parsed)
        return sent is not None and _compare(name.removeprefix("SENT"), sent.date(), key.text)
    wanted = key.text.casefold()
    if name == "HEADER":
        return (key.field in message.parsed) and wanted in message.header(key.field)
    if name in ("FROM", "TO", "CC", "BCC", "SUBJECT"):
        return wanted in message.header(name)
    if name == "BODY":
        return wanted in message.text
    if name == "TEXT":
        return wanted in message.text or any(wanted in message.header(field) for field in set(message.parsed.keys()))
    return False


def _compare(how: str, day: datetime.date, text: str) -> bool:
    wanted = datetime.date.fromisoformat(text)
    return day < wanted if how == "BEFORE" else day == wanted if how == "ON" else day >= wanted
