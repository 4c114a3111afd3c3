"""One message's FETCH data items (RFC 3501 §7.4.2), from its stored bytes."""

from __future__ import annotations

import calendar
import time
from dataclasses import dataclass
from functools import cached_property

from jitaku.mail.imap import mime, structure
from jitaku.mail.imap.parser import FetchItem, Section

# Items that need the message's bytes; the others come from the index (flags, size, date).
NEEDS_BODY = {"ENVELOPE", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "BINARY", "BINARY.SIZE"}


# Items a session's view holds for each message: a FETCH of these alone needs no read of the messages
VIEW_ITEMS = frozenset({"UID", "FLAGS", "MODSEQ", "RFC822.SIZE"})


def view_item(name: str, uid: int, flags: frozenset[str], modseq: int, size: int) -> bytes:
    """One of VIEW_ITEMS as it goes in the FETCH response."""
    if name == "UID":
        return b"UID %d" % uid
    if name == "FLAGS":
        return b"FLAGS (" + " ".join(sorted(flags)).encode() + b")"
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % modseq
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % size
    raise ValueError(f"{name} is not an item a view holds")


def needs_body(items: tuple[FetchItem, ...]) -> bool:
    return any(item.name in NEEDS_BODY for item in items)


def sets_seen(items: tuple[FetchItem, ...]) -> bool:
    """BODY[...] and BINARY[...] without PEEK, RFC822 and RFC822.TEXT mark the message \\Seen (RFC 3501 §6.4.5)."""
    return any(
        (item.name in ("BODY", "BINARY") and item.section is not None and not item.peek)
        or item.name in ("RFC822", "RFC822.TEXT")
        for item in items
    )


def internal_date(timestamp: float) -> str:
    moment = time.gmtime(timestamp)
    return f"{moment.tm_mday:2d}-{calendar.month_abbr[moment.tm_mon]}-{moment.tm_year} " + time.strftime(
        "%H:%M:%S +0000", moment
    )


def section_name(section: Section) -> str:
    """The section as the response names it: "1.2.MIME", "HEADER.FIELDS (FROM SUBJECT)"."""
    spec = ".".join([*(str(number) for number in section.part), *([section.text] if section.text else [])])
    if section.fields:
        spec += " (" + " ".join(section.fields) + ")"
    return spec


@dataclass
class Fetched:
    uid: int
    flags: frozenset[str]
    modseq: int
    size: int
    received_at: float
    body: bytes  # empty when no item needed it

    @cached_property
    def tree(self) -> mime.Part:
        return mime.parse(self.body)

    def item(self, item: FetchItem) -> tuple[bytes, ...]:
        """The item as it goes in the FETCH response, in pieces: a literal's bytes are a piece of their own,
        as they were read, never copied into a larger one (a message can be tens of megabytes)."""
        name = item.name
        if name in VIEW_ITEMS:
            return (view_item(name, self.uid, self.flags, self.modseq, self.size),)
        if name == "INTERNALDATE":
            return (b'INTERNALDATE "' + internal_date(self.received_at).encode() + b'"',)
        if name == "ENVELOPE":
            return (b"ENVELOPE " + structure.envelope(self.tree),)
        if name == "BODYSTRUCTURE":
            return (b"BODYSTRUCTURE " + structure.body_structure(self.tree),)
        if name == "RFC822":
            return _literal(b"RFC822 ", self.body)
        if name == "RFC822.HEADER":
            return _literal(b"RFC822.HEADER ", mime.split(self.body)[0])
        if name == "RFC822.TEXT":
            return _literal(b"RFC822.TEXT ", mime.split(self.body)[1])
        if item.section is None:  # BODY alone: the non-extensible structure
            return (b"BODY " + structure.body_structure(self.tree, extensible=False),)
        label = name.encode() + b"[" + section_name(item.section).encode() + b"]"
        if name == "BINARY.SIZE":
            data = mime.decoded(self.tree, item.section.part)
            return (label + b" %d" % len(data or b""),)  # RFC 3516's grammar has a number, never NIL
        if name == "BINARY":
            data = mime.decoded(self.tree, item.section.part)
        else:
            data = mime.top_section(self.body, item.section) if not item.section.part else None
            if data is None:
                data = mime.section(self.tree, item.section)
        if data is not None and item.partial is not None:
            first, count = item.partial
            data = data[first : first + count]
            label += b"<%d>" % first
        if data is None:
            return (label + b" " + structure.NIL,)
        return _literal(label + b" ", data, binary=name == "BINARY")


def _literal(label: bytes, data: bytes, binary: bool = False) -> tuple[bytes, bytes]:
    """LABEL and DATA as a literal, which may not hold NUL (RFC 3501 §4.3): BINARY's goes as a literal8 then
    (RFC 3516 §4.2), the others with each NUL sent as 0x80, as Dovecot sends them. Mail that came by SMTP, or
    by APPEND of a plain literal, can hold NUL; one byte for another keeps sizes and partial ranges right."""
    if b"\0" not in data:  # nearly every message: its bytes go out as they were read, not copied
        return label + b"{%d}\r\n" % len(data), data
    if binary:
        return label + b"~{%d}\r\n" % len(data), data
    return label + b"{%d}\r\n" % len(data), data.replace(b"\0", b"\x80")
