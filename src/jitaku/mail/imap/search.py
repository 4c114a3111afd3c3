"""SEARCH (RFC 3501 §6.4.4) over one mailbox's messages. Text keys match decoded text, case-insensitively:
a Japanese subject in ISO-2022-JP encoded-words is found by the UTF-8 words the client sends. FROM, TO, CC
and BCC also match the field's addresses as parsed and written again, as Dovecot's do.

Messages come from strangers, so a search costs time linear in what it reads and reads a bounded part of
each message: a Program learns once which header fields and text its keys need, reads each message's header
in one pass over its fields (issue 15: looking each field name up again was quadratic, 18 s for 20,000
fields), and checks its budget between pieces, since it runs in a worker thread that cannot be cancelled.
"""

from __future__ import annotations

import bisect
import datetime
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesFeedParser
from email.policy import compat32
from email.utils import parsedate_to_datetime

from jitaku.mail import headers
from jitaku.mail.imap import mime, structure
from jitaku.mail.imap.budget import Budget
from jitaku.mail.imap.parser import SearchKey

FLAG_KEYS = {"ANSWERED": "\\Answered", "DELETED": "\\Deleted", "DRAFT": "\\Draft", "FLAGGED": "\\Flagged"}
FLAG_KEYS |= {"SEEN": "\\Seen"}
# keys that need the message's bytes; the others come from the index
TEXT_KEYS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO", "HEADER", "SENTBEFORE", "SENTON", "SENTSINCE"}
# keys that need the stored message, its bytes or its internal date; the others, what a session's view holds
STORED_KEYS = TEXT_KEYS | {"BEFORE", "ON", "SINCE"}
FIELD_KEYS = {"BCC", "CC", "FROM", "SUBJECT", "TO"}
ADDRESS_KEYS = {"BCC", "CC", "FROM", "TO"}
# One header field with its continuation lines (RFC 5322 §2.2): anchored at a line's start, so a long line
# is read once, whatever it holds
FIELD = re.compile(rb"^([!-9;-~]+)[ \t]*:(.*(?:\r?\n[ \t].*)*)", re.MULTILINE)
FOLD = re.compile(rb"\r?\n(?=[ \t])")
SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')
MIME_FIELDS = {"content-type", "content-transfer-encoding", "mime-version"}
FIELDS_PER_CHECK = 1024  # header fields read between two looks at the budget
BYTES_PER_CHECK = 64 * 1024  # bytes given to the MIME parser between two looks at the budget


def uses_modseq(key: SearchKey) -> bool:
    return key.name == "MODSEQ" or any(uses_modseq(inner) for inner in key.keys)


def needs_body(key: SearchKey) -> bool:
    return key.name in TEXT_KEYS or any(needs_body(inner) for inner in key.keys)


def needs_stored(key: SearchKey) -> bool:
    """Whether KEY is answered from the stored message, not from flags, UIDs, numbers, sizes and mod-sequences
    alone: a message another session expunged, that a session still shows, cannot be searched so."""
    return key.name in STORED_KEYS or any(needs_stored(inner) for inner in key.keys)


@dataclass(frozen=True)
class Mailbox:
    """What sequence sets mean in the mailbox searched."""

    largest: int  # its highest message number: what "*" means in a sequence set
    largest_uid: int  # its highest UID: what "*" means in a UID set
    saved: frozenset[int] = frozenset()  # the UIDs "$" names (SEARCHRES)


@dataclass
class Candidate:
    """A message as a search sees it. RECEIVED_AT and BODY come from the store, read only for a key that
    needs_stored(); otherwise they are left empty (0, b"")."""

    number: int
    uid: int
    flags: frozenset[str]
    modseq: int
    size: int
    received_at: float
    body: bytes  # the part of the message a search reads: its first max_search_bytes


@dataclass
class _Read:
    """What a program has read of one message, so far: each part is read once, when a key first needs it."""

    message: Candidate
    fields: dict[str, list[str]] | None = None  # the values of the fields the program names
    addresses: dict[str, list[str]] = field(default_factory=dict)  # of the fields address keys name: written()
    header_hits: set[str] = field(default_factory=set)  # the TEXT strings some header field holds
    text: str | None = None  # the decoded text parts


class Program:
    """A search key made ready to run over many messages: the header fields and text it needs, and its
    sequence sets resolved once for the mailbox."""

    def __init__(self, key: SearchKey, mailbox: Mailbox, budget: Budget) -> None:
        self.key = key
        self.mailbox = mailbox
        self.budget = budget
        self._fields: set[str] = set()  # header fields the keys name, lower-case
        self._address_fields: set[str] = set()  # those FROM, TO, CC or BCC name
        self._texts: set[str] = set()  # TEXT strings, case-folded: looked for in every header field
        self._ranges: dict[int, tuple[list[int], list[int]]] = {}  # id(SEQ or UID key) -> starts, ends
        pending = [key]
        while pending:
            node = pending.pop()
            pending.extend(node.keys)
            if node.name in FIELD_KEYS:
                self._fields.add(node.name.lower())
                if node.name in ADDRESS_KEYS:
                    self._address_fields.add(node.name.lower())
            elif node.name == "HEADER":
                self._fields.add(node.field.lower())
            elif node.name.startswith("SENT"):
                self._fields.add("date")
            elif node.name == "TEXT":
                self._texts.add(node.text.casefold())
            elif node.name in ("SEQ", "UID") and node.sequence is not None and not node.sequence.saved:
                largest = mailbox.largest if node.name == "SEQ" else mailbox.largest_uid
                self._ranges[id(node)] = _merged(node.sequence.resolve(largest))

    def matches(self, message: Candidate) -> bool:
        return self._match(self.key, _Read(message))

    def _match(self, key: SearchKey, read: _Read) -> bool:
        message = read.message
        name = key.name
        if name == "AND":
            return all(self._match(inner, read) for inner in key.keys)
        if name == "OR":
            return self._match(key.keys[0], read) or self._match(key.keys[1], read)
        if name == "NOT":
            return not self._match(key.keys[0], read)
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
        if name in ("SEQ", "UID") and key.sequence is not None:
            if key.sequence.saved:
                return message.uid in self.mailbox.saved
            starts, ends = self._ranges[id(key)]
            number = message.number if name == "SEQ" else message.uid
            at = bisect.bisect_right(starts, number) - 1
            return at >= 0 and number <= ends[at]
        if name == "LARGER":
            return message.size > key.number
        if name == "SMALLER":
            return message.size < key.number
        if name == "MODSEQ":
            return message.modseq >= key.number
        if name in ("BEFORE", "ON", "SINCE"):
            return _compare(name, datetime.datetime.fromtimestamp(message.received_at, datetime.UTC).date(), key.text)
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            sent = _date(self._header(read).get("date", []))
            return sent is not None and _compare(name.removeprefix("SENT"), sent.date(), key.text)
        wanted = key.text.casefold()
        if name in FIELD_KEYS or name == "HEADER":
            field_name = key.field.lower() if name == "HEADER" else name.lower()
            values = self._header(read).get(field_name, [])
            if name in ADDRESS_KEYS:
                values = values + read.addresses.get(field_name, [])
            return any(wanted in value for value in values)
        if name == "BODY":
            return wanted in self._text(read)
        if name == "TEXT":
            self._header(read)
            return wanted in read.header_hits or wanted in self._text(read)
        return False

    def _header(self, read: _Read) -> dict[str, list[str]]:
        """The decoded, case-folded values of the fields the program names, read in one pass over the header,
        which also notes the TEXT strings some field holds."""
        if read.fields is not None:
            return read.fields
        read.fields = {}
        head, _body = mime.split(read.message.body)
        for count, found in enumerate(FIELD.finditer(head)):
            if count % FIELDS_PER_CHECK == 0:
                self.budget.check()
            name = found.group(1).decode("ascii").lower()
            if name not in self._fields and not self._texts:
                continue
            value = _decoded(found.group(2))
            if name in self._fields:
                read.fields.setdefault(name, []).append(value)
            if name in self._address_fields:
                read.addresses.setdefault(name, []).append(_written(found.group(2)))
            read.header_hits.update(text for text in self._texts if text in value)
        return read.fields

    def _text(self, read: _Read) -> str:
        """The text parts, decoded from their transfer encoding and charset."""
        if read.text is None:
            found = []
            for part in self._parsed(read.message).walk():
                payload = part.get_payload(decode=True) if part.get_content_maintype() == "text" else None
                if isinstance(payload, bytes):
                    try:
                        found.append(payload.decode(part.get_content_charset() or "us-ascii", "replace"))
                    except LookupError:
                        found.append(payload.decode("utf-8", "replace"))
            read.text = "\n".join(found).casefold()
        return read.text

    def _parsed(self, message: Candidate) -> Message:
        """The message's MIME structure, parsed with compat32 (which leaves encoded-words alone for our own
        decoder) from the fields that shape it and the body: the rest of the header is no text part's."""
        head, body = mime.split(message.body)
        shape = [
            found.group(0).rstrip(b"\r") + b"\r\n"
            for found in FIELD.finditer(head)
            if found.group(1).decode("ascii").lower() in MIME_FIELDS
        ]
        parser = BytesFeedParser(policy=compat32)
        parser.feed(b"".join(shape) + b"\r\n")
        for start in range(0, len(body), BYTES_PER_CHECK):
            self.budget.check()
            parser.feed(body[start : start + BYTES_PER_CHECK])
        return parser.close()


def _decoded(raw: bytes) -> str:
    """A field's value unfolded (RFC 5322 §2.2.3), its encoded-words decoded, case-folded."""
    return headers.decoded(FOLD.sub(b"", raw).decode("utf-8", "surrogateescape").strip()).casefold()


def _written(raw: bytes) -> str:
    """An address field as FROM, TO, CC and BCC match it besides its text: RFC 3501 §6.4.4 looks in the
    envelope's addresses, which Dovecot writes again, each "name <@route:mailbox@host>", a group "name: <a@b>,
    <c@d>;", and decodes. So "<user (comment)@ (comment) host>" is found as "user@host", and "user@host
    (Name)" as "name <user@host"."""
    written: list[str] = []
    separator = ""  # before the next address: none after a group's start
    for name, route, mailbox, host in structure.addresses(FOLD.sub(b"", raw).decode("utf-8", "surrogateescape")):
        if mailbox is None:  # a group's end
            written.append(";")
            separator = ", "
        elif host is None:  # a group's start
            written.append(f"{separator}{_phrase(mailbox)}: ")
            separator = ""
        else:
            display = f"{_phrase(name)} " if name else ""
            written.append(f"{separator}{display}<{route + ':' if route else ''}{mailbox}@{host}>")
            separator = ", "
    return headers.decoded("".join(written)).casefold()


def _phrase(name: str) -> str:
    """NAME as an address writes it: quoted when it holds a special (RFC 5322 §3.2.3)."""
    if not SPECIALS.search(name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _date(values: list[str]) -> datetime.datetime | None:
    try:
        return parsedate_to_datetime(values[0]) if values else None
    except (TypeError, ValueError):
        return None


def _merged(ranges: list[tuple[int, int]]) -> tuple[list[int], list[int]]:
    """RANGES sorted and joined where they overlap or touch: each message is then found by bisection (a UID
    set of thousands of ranges, tried against each of thousands of messages, was quadratic)."""
    starts: list[int] = []
    ends: list[int] = []
    for low, high in sorted(ranges):
        if ends and low <= ends[-1] + 1:
            ends[-1] = max(ends[-1], high)
        else:
            starts.append(low)
            ends.append(high)
    return starts, ends


def _compare(how: str, day: datetime.date, text: str) -> bool:
    wanted = datetime.date.fromisoformat(text)
    return day < wanted if how == "BEFORE" else day == wanted if how == "ON" else day >= wanted
