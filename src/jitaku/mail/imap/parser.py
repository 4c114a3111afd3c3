"""IMAP commands from the wire (RFC 3501 §9), with LITERAL+ (RFC 7888), CONDSTORE's modifiers (RFC 7162),
MOVE (RFC 6851), UIDPLUS's UID EXPUNGE (RFC 4315), SPECIAL-USE's CREATE and LIST options (RFC 6154),
LIST-EXTENDED and LIST-STATUS (RFC 5258, 5819), ESEARCH and SEARCHRES (RFC 4731, 5182), BINARY (RFC 3516),
ENABLE (RFC 5161) and ID (RFC 2971).

`parse` takes one command as it came, literals included (the reader has already sent "+" for each
synchronizing literal), and returns its tag and a typed command. Whatever does not follow the grammar
raises ParseError, which the server answers with BAD; a CHARSET we cannot search in raises BadCharset,
answered NO [BADCHARSET], and a mailbox name no mailbox can have raises BadName, answered NO. The parser never
decides anything a mailbox must know.
"""

from __future__ import annotations

import calendar
import datetime
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar

from jitaku.mail.imap import utf7

T = TypeVar("T")
MAX_SEARCH_KEYS = 1000  # keys in one SEARCH program: literals let a command hold any number of them
MAX_DEPTH = 50  # parentheses, NOT and OR nested in a SEARCH program: the parser recurses


class ParseError(Exception):
    """The command does not follow the grammar: answered BAD, with TAG when it could be read."""

    def __init__(self, message: str, tag: str = "*") -> None:
        super().__init__(message)
        self.tag = tag


class OverLimit(ParseError):
    """The command follows the grammar but passes one of our limits: answered NO [LIMIT] (RFC 5530)."""


class BadName(ParseError):
    """A mailbox name no mailbox can have (neither modified UTF-7, RFC 3501 §5.1.3, nor UTF-8, or with NUL, CR
    or LF in it): the command is well formed, so it is answered NO, as Dovecot answers it, never BAD."""


class BadCharset(Exception):
    """A SEARCH CHARSET we do not know (RFC 3501 §6.4.4: NO [BADCHARSET]). SAVES: the search had RETURN (SAVE),
    so its failure empties the saved result (RFC 5182 §2.1)."""

    def __init__(self, charset: str, saves: bool) -> None:
        super().__init__(charset)
        self.saves = saves


# A sequence set: ranges of message numbers or UIDs; None stands for "*", the largest in the mailbox.
Range: TypeAlias = tuple[int | None, int | None]


@dataclass(frozen=True)
class SequenceSet:
    ranges: tuple[Range, ...]
    saved: bool = False  # "$": the messages the last SEARCH RETURN (SAVE) found (SEARCHRES, RFC 5182)

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """The ranges with "*" as LARGEST, each low to high (RFC 3501 §9: "4:2" is "2:4")."""
        resolved = []
        for start, end in self.ranges:
            low, high = largest if start is None else start, largest if end is None else end
            resolved.append((min(low, high), max(low, high)))
        return resolved

    def contains(self, number: int, largest: int) -> bool:
        return any(low <= number <= high for low, high in self.resolve(largest))


SectionText: TypeAlias = Literal["HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"]
SECTION_TEXTS: dict[str, SectionText] = {
    "HEADER": "HEADER",
    "HEADER.FIELDS": "HEADER.FIELDS",
    "HEADER.FIELDS.NOT": "HEADER.FIELDS.NOT",
    "TEXT": "TEXT",
    "MIME": "MIME",
}


@dataclass(frozen=True)
class Section:
    """BODY[...]: a part path (empty for the whole message) and what of it."""

    part: tuple[int, ...] = ()
    text: SectionText | Literal[""] = ""
    fields: tuple[str, ...] = ()  # for HEADER.FIELDS [.NOT], upper-cased


@dataclass(frozen=True)
class FetchItem:
    """One fetch attribute: a name such as FLAGS, or BODY, BINARY (RFC 3516) or BINARY.SIZE with a section,
    PEEK and a partial range."""

    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None  # (first octet, how many)


@dataclass(frozen=True)
class SearchKey:
    """One node of a SEARCH program: ALL, FROM "x", NOT key, OR a b, AND (keys), SEQ set, UID set ..."""

    name: str
    text: str = ""  # the string, header value, keyword or date (as "YYYY-MM-DD")
    field: str = ""  # HEADER's field name
    number: int = 0  # LARGER, SMALLER, MODSEQ
    sequence: SequenceSet | None = None
    keys: tuple[SearchKey, ...] = ()  # NOT: one; OR: two; AND: any


@dataclass(frozen=True)
class Simple:
    """CAPABILITY, NOOP, LOGOUT, STARTTLS, CHECK, CLOSE, EXPUNGE, UNSELECT, IDLE, NAMESPACE."""

    name: str


@dataclass(frozen=True)
class Login:
    user: str
    password: str


@dataclass(frozen=True)
class Authenticate:
    mechanism: str
    initial: str | None  # SASL-IR (RFC 4959)


@dataclass(frozen=True)
class Select:
    mailbox: str
    read_only: bool  # EXAMINE
    condstore: bool


@dataclass(frozen=True)
class Create:
    mailbox: str  # without the trailing delimiter a client may send
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True)
class MailboxCommand:
    """DELETE, SUBSCRIBE, UNSUBSCRIBE: a verb and one mailbox."""

    name: str
    mailbox: str


@dataclass(frozen=True)
class Rename:
    old: str
    new: str


@dataclass(frozen=True)
class ListMailboxes:
    reference: str
    patterns: tuple[str, ...]  # those some name can match: none when the reference is not a name
    subscribed_only: bool  # LSUB, or LIST (SUBSCRIBED)
    special_use_only: bool  # LIST (SPECIAL-USE)
    return_options: tuple[str, ...] = ()  # SPECIAL-USE, CHILDREN, SUBSCRIBED, STATUS ...
    lsub: bool = False
    recursive: bool = False  # LIST (... RECURSIVEMATCH): levels above what the selection found, with CHILDINFO
    extended: bool = False  # RFC 5258 syntax (selection or return options): a missing level is \NonExistent


@dataclass(frozen=True)
class Status:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Append:
    mailbox: str
    flags: tuple[str, ...]
    internal_date: float | None
    message: bytes
    binary: bool = False  # the message came as a literal8 (RFC 3516 §4.4): its parts may be binary


@dataclass(frozen=True)
class Enable:
    capabilities: tuple[str, ...]


@dataclass(frozen=True)
class Id:
    parameters: tuple[tuple[str, str | None], ...] | None


@dataclass(frozen=True)
class Fetch:
    sequence: SequenceSet
    items: tuple[FetchItem, ...]
    uid: bool
    changed_since: int | None = None


@dataclass(frozen=True)
class Store:
    sequence: SequenceSet
    mode: Literal["add", "remove", "replace"]
    silent: bool
    flags: tuple[str, ...]
    uid: bool
    unchanged_since: int | None = None


@dataclass(frozen=True)
class Copy:
    sequence: SequenceSet
    mailbox: str
    uid: bool
    move: bool


@dataclass(frozen=True)
class Search:
    key: SearchKey
    uid: bool
    return_options: tuple[str, ...] | None = None  # ESEARCH (RFC 4731): MIN MAX ALL COUNT; None: plain SEARCH


@dataclass(frozen=True)
class UidExpunge:
    sequence: SequenceSet


Command: TypeAlias = (
    Simple
    | Login
    | Authenticate
    | Select
    | Create
    | MailboxCommand
    | Rename
    | ListMailboxes
    | Status
    | Append
    | Enable
    | Id
    | Fetch
    | Store
    | Copy
    | Search
    | UidExpunge
)

SIMPLE = {"CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "CHECK", "CLOSE", "EXPUNGE", "UNSELECT", "IDLE", "NAMESPACE"}
MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
PLAIN_ITEMS = {
    "ENVELOPE",
    "FLAGS",
    "INTERNALDATE",
    "RFC822",
    "RFC822.HEADER",
    "RFC822.SIZE",
    "RFC822.TEXT",
    "BODY",
    "BODYSTRUCTURE",
    "UID",
    "MODSEQ",
}
# RFC 3501, CONDSTORE's HIGHESTMODSEQ, STATUS=SIZE (RFC 8438) and IMAP4rev2's DELETED (RFC 9051 §6.3.11)
STATUS_ITEMS = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "HIGHESTMODSEQ", "SIZE", "DELETED"}
# ESEARCH (RFC 4731) and SEARCHRES's SAVE (RFC 5182)
SEARCH_RETURN = {"MIN", "MAX", "COUNT", "ALL", "SAVE"}
# LIST-EXTENDED (RFC 5258) with SPECIAL-USE (RFC 6154); STATUS (items) is LIST-STATUS (RFC 5819)
LIST_SELECTION = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
LIST_RETURN = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"}
SYSTEM_FLAGS = {"\\ANSWERED", "\\FLAGGED", "\\DELETED", "\\SEEN", "\\DRAFT"}
CHARSETS = {"UTF-8", "US-ASCII"}
MONTHS = {name.upper(): number for number, name in enumerate(calendar.month_abbr) if name}
SEARCH_FLAGS = {
    "ANSWERED",
    "DELETED",
    "DRAFT",
    "FLAGGED",
    "NEW",
    "OLD",
    "RECENT",
    "SEEN",
    "UNANSWERED",
    "UNDELETED",
    "UNDRAFT",
    "UNFLAGGED",
    "UNSEEN",
    "ALL",
}
SEARCH_STRINGS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"}
SEARCH_DATES = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}

ATOM_SPECIALS = set(b'(){ %*"\\]') | set(range(0x20)) | {0x7F}
LITERAL = re.compile(rb"~?\{(\d{1,10})(\+?)\}\r\n")
DATE_TIME = re.compile(r"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)")


@functools.cache
def _atom_chars(extra: bytes) -> re.Pattern[bytes]:
    """A run of ATOM-CHARs and EXTRA: one match, where a loop over the bytes was most of a command's parsing."""
    excluded = sorted(ATOM_SPECIALS - set(extra))
    return re.compile(b"[^" + b"".join(b"\\x%02x" % byte for byte in excluded) + b"]+")


_LITERAL_ANNOUNCED = re.compile(rb"\{(\d{1,10})(\+?)\}\r\n\Z")


def literal_announced(line: bytes) -> tuple[int, bool] | None:
    """When LINE (a line as read, CRLF included) ends announcing a literal: its size, and whether it is
    synchronizing (the server must say "+" before the client sends it)."""
    found = _LITERAL_ANNOUNCED.search(line)
    return (int(found.group(1)), not found.group(2)) if found else None


class _Reader:
    """Recursive descent over one command's bytes, literals in place."""

    def __init__(self, data: bytes, max_search_keys: int = MAX_SEARCH_KEYS) -> None:
        self.data = data
        self.at = 0
        self.tag = "*"
        self.keys_left = max_search_keys

    def fail(self, message: str) -> ParseError:
        return ParseError(message, self.tag)

    def peek(self, size: int = 1) -> bytes:
        return self.data[self.at : self.at + size]

    def done(self) -> bool:
        return self.at >= len(self.data)

    def sp(self) -> None:
        if self.peek() != b" ":
            raise self.fail("expected a space")
        self.at += 1

    def maybe_sp(self) -> bool:
        if self.peek() == b" ":
            self.at += 1
            return True
        return False

    def expect(self, text: bytes) -> None:
        if self.data[self.at : self.at + len(text)].upper() != text:
            raise self.fail(f"expected {text.decode()}")
        self.at += len(text)

    def end(self) -> None:
        if not self.done():
            raise self.fail(f"unexpected {self.data[self.at : self.at + 20]!r}")

    def atom(self, extra: bytes = b"") -> str:
        """ATOM-CHARs (plus EXTRA, such as "]" for an astring or "%*" for a list pattern)."""
        found = _atom_chars(extra).match(self.data, self.at)
        if found is None:
            raise self.fail("expected an atom")
        self.at = found.end()
        return found.group().decode("utf-8", "replace")

    def number(self) -> int:
        start = self.at
        while self.peek().isdigit():
            self.at += 1
        if self.at == start or self.at - start > 20:
            raise self.fail("expected a number")
        return int(self.data[start : self.at])

    def nz_number(self) -> int:
        value = self.number()
        if value == 0:
            raise self.fail("expected a number above zero")
        return value

    def quoted(self) -> bytes:
        self.expect(b'"')
        out = bytearray()
        while True:
            if self.done():
                raise self.fail("a quoted string does not end")
            byte = self.data[self.at]
            self.at += 1
            if byte == 0x22:
                return bytes(out)
            if byte == 0x5C:
                if self.done() or self.data[self.at] not in b'"\\':
                    raise self.fail('only \\\\ and \\" may be escaped in a quoted string')
                byte = self.data[self.at]
                self.at += 1
            elif byte in (0x0D, 0x0A):
                raise self.fail("a quoted string cannot hold CR or LF")
            out.append(byte)

    def literal(self) -> bytes:
        found = LITERAL.match(self.data, self.at)
        if not found:
            raise self.fail("expected a literal")
        size = int(found.group(1))
        start = found.end()
        if start + size > len(self.data):
            raise self.fail("the literal is shorter than announced")
        self.at = start + size
        return self.data[start : self.at]

    def string(self) -> bytes:
        return self.quoted() if self.peek() == b'"' else self.literal()

    def astring(self) -> bytes:
        if self.peek() in (b'"', b"{") or self.peek(2) == b"~{":  # "~" alone is an atom's (imaptest's "~foo")
            return self.string()
        return self.atom(extra=b"]").encode()

    def text(self) -> str:
        return self.astring().decode("utf-8", "replace")

    def nil_or_string(self) -> str | None:
        if self.peek(3).upper() == b"NIL" and self.peek(4)[3:] in (b"", b" ", b")"):
            self.at += 3
            return None
        return self.string().decode("utf-8", "replace")

    def mailbox(self) -> str:
        return mailbox_name(self.astring(), self)

    def list_mailbox(self) -> str | None:
        """A LIST pattern, or None for one no mailbox name can match: LIST answers OK with nothing for it, as
        Dovecot does, so a client that sends one has no error to show."""
        raw = self.string() if self.peek() in (b'"', b"{") else self.atom(extra=b"%*]").encode()
        try:
            return mailbox_name(raw, self, pattern=True)
        except BadName:
            return None

    def parenthesized(self, item: Callable[[], T]) -> list[T]:
        self.expect(b"(")
        items: list[T] = []
        while self.peek() != b")":
            if items:
                self.sp()
            items.append(item())
        self.at += 1
        return items

    def flag(self) -> str:
        if self.peek() == b"\\":
            self.at += 1
            name = "\\" + self.atom()
            upper = name.upper()
            return upper[0] + upper[1:].capitalize() if upper in SYSTEM_FLAGS else name
        return self.atom()

    def flags(self) -> tuple[str, ...]:
        """A flag list, or (for STORE) flags without parentheses."""
        if self.peek() == b"(":
            return tuple(self.parenthesized(self.flag))
        found = [self.flag()]
        while self.maybe_sp():
            found.append(self.flag())
        return tuple(found)

    def sequence_set(self) -> SequenceSet:
        if self.peek() == b"$":
            self.at += 1
            return SequenceSet((), saved=True)
        ranges: list[Range] = []
        while True:
            start = self._sequence_number()
            end = start
            if self.peek() == b":":
                self.at += 1
                end = self._sequence_number()
            ranges.append((start, end))
            if self.peek() != b",":
                return SequenceSet(tuple(ranges))
            self.at += 1

    def _sequence_number(self) -> int | None:
        if self.peek() == b"*":
            self.at += 1
            return None
        return self.nz_number()

    def date(self) -> str:
        """A search date, "1-Feb-1994" (quoted or not), as "1994-02-01"."""
        raw = (self.quoted() if self.peek() == b'"' else self.atom().encode()).decode("ascii", "replace")
        found = re.fullmatch(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})", raw)
        if not found or found.group(2).upper() not in MONTHS:
            raise self.fail(f"{raw!r} is not a date like 1-Feb-1994")
        try:
            day = datetime.date(int(found.group(3)), MONTHS[found.group(2).upper()], int(found.group(1)))
        except ValueError:
            raise self.fail(f"{raw!r} is not a date that exists") from None
        return day.isoformat()

    def date_time(self) -> float:
        raw = self.quoted().decode("ascii", "replace")
        found = DATE_TIME.fullmatch(raw)
        if not found or found.group(2).upper() not in MONTHS:
            raise self.fail(f'{raw!r} is not a date-time like "17-Jul-1996 02:44:25 -0700"')
        day, month, year = int(found.group(1)), MONTHS[found.group(2).upper()], int(found.group(3))
        hour, minute, second = int(found.group(4)), int(found.group(5)), int(found.group(6))
        offset = (int(found.group(8)) * 60 + int(found.group(9))) * 60 * (-1 if found.group(7) == "-" else 1)
        try:
            moment = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
        except ValueError:
            raise self.fail(f"{raw!r} is not a date-time that exists") from None
        return moment.timestamp() - offset


def mailbox_name(raw: bytes, reader: _Reader, pattern: bool = False) -> str:
    """A mailbox name as clients send it: modified UTF-7 (RFC 3501 §5.1.3), or UTF-8 once UTF8=ACCEPT is on
    (RFC 6855); INBOX in any case is INBOX."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadName("a mailbox name must be UTF-8 or modified UTF-7", reader.tag) from None
    if text.isascii() and "&" in text:
        try:
            text = utf7.decode(text)
        except ValueError as error:
            raise BadName(str(error), reader.tag) from None
    if "\0" in text or (not pattern and ("\r" in text or "\n" in text)):
        raise BadName("a mailbox name cannot hold NUL, CR or LF", reader.tag)
    head, slash, rest = text.partition("/")
    if head.upper() == "INBOX":
        text = "INBOX" + slash + rest
    return text


# Commands parsed before, by their bytes after the tag: a mail program sends the same few again and again
# (SELECT INBOX, FETCH of its newest messages' flags, EXPUNGE, LIST, STATUS of each folder), and parsing one
# cost as much as the rest of a NOOP's Python (issue 20). Commands are frozen, so one may serve any session.
# Kept: short ones without a literal, never a LOGIN or AUTHENTICATE (a password stays in no cache).
_PARSED: dict[tuple[bytes, int], Command] = {}
PARSED_KEPT = 512
_KEPT_LENGTH = 200


def parse(data: bytes, max_search_keys: int = MAX_SEARCH_KEYS) -> tuple[str, Command]:
    """One command, CRLF and literals included; the tag and the command."""
    reader = _Reader(data.removesuffix(b"\r\n"), max_search_keys)
    tag = reader.atom(extra=b"")
    if "+" in tag:
        raise ParseError("a tag cannot contain '+'")
    reader.tag = tag
    key = (reader.data[reader.at :], max_search_keys)
    command = _PARSED.get(key)
    if command is not None:
        return tag, command
    reader.sp()
    name = reader.atom().upper()
    if name == "UID":
        reader.sp()
        command = _uid_command(reader, reader.atom().upper())
    else:
        command = _command(reader, name)
    reader.end()
    if len(key[0]) <= _KEPT_LENGTH and b"{" not in key[0] and not isinstance(command, (Login, Authenticate)):
        if len(_PARSED) >= PARSED_KEPT:
            del _PARSED[next(iter(_PARSED))]  # the oldest
        _PARSED[key] = command
    return tag, command


def _command(reader: _Reader, name: str) -> Command:
    if name in SIMPLE:
        return Simple(name)
    if name == "LOGIN":
        reader.sp()
        user = reader.text()
        reader.sp()
        return Login(user, reader.text())
    if name == "AUTHENTICATE":
        reader.sp()
        mechanism = reader.atom().upper()
        return Authenticate(mechanism, reader.atom() if reader.maybe_sp() else None)
    if name in ("SELECT", "EXAMINE"):
        reader.sp()
        mailbox = reader.mailbox()
        condstore = False
        if reader.maybe_sp():
            parameters = [p.upper() for p in reader.parenthesized(reader.atom)]
            condstore = "CONDSTORE" in parameters
        return Select(mailbox, name == "EXAMINE", condstore)
    if name == "CREATE":
        reader.sp()
        # RFC 3501 §6.3.3: a trailing delimiter declares that names will be made below this one; a server that
        # needs no such declaration (we do not) ignores it. "a//" keeps one, and is refused as a name.
        mailbox = reader.mailbox().removesuffix("/")
        uses: list[str] = []
        if reader.maybe_sp():
            reader.expect(b"(USE ")
            uses = [use for use in reader.parenthesized(reader.flag)]
            reader.expect(b")")
        return Create(mailbox, tuple(uses))
    if name in ("DELETE", "SUBSCRIBE", "UNSUBSCRIBE"):
        reader.sp()
        return MailboxCommand(name, reader.mailbox())
    if name == "RENAME":
        reader.sp()
        old = reader.mailbox()
        reader.sp()
        return Rename(old, reader.mailbox())
    if name in ("LIST", "LSUB"):
        return _list(reader, name)
    if name == "STATUS":
        reader.sp()
        mailbox = reader.mailbox()
        reader.sp()
        return Status(mailbox, _status_items(reader))
    if name == "APPEND":
        return _append(reader)
    if name == "ENABLE":
        capabilities = []
        while reader.maybe_sp():
            capabilities.append(reader.atom().upper())
        if not capabilities:
            raise reader.fail("ENABLE needs a capability")
        return Enable(tuple(capabilities))
    if name == "ID":
        reader.sp()
        return Id(_id_parameters(reader))
    if name in ("FETCH", "STORE", "COPY", "MOVE", "SEARCH"):
        return _uid_command(reader, name, uid=False)
    raise reader.fail(f"unknown command {name[:20]}")


def _uid_command(reader: _Reader, name: str, uid: bool = True) -> Command:
    if name == "SEARCH":
        return _search(reader, uid)
    reader.sp()
    sequence = reader.sequence_set()
    if name == "EXPUNGE" and uid:
        return UidExpunge(sequence)
    reader.sp()
    if name == "FETCH":
        return _fetch(reader, sequence, uid)
    if name == "STORE":
        return _store(reader, sequence, uid)
    if name in ("COPY", "MOVE"):
        return Copy(sequence, reader.mailbox(), uid, move=name == "MOVE")
    raise reader.fail(f"UID {name[:20]} is not a command")


def _list(reader: _Reader, name: str) -> ListMailboxes:
    reader.sp()
    selection: list[str] = []
    if name == "LIST" and reader.peek() == b"(":
        selection = [option.upper() for option in reader.parenthesized(reader.atom)]
        reader.sp()
    try:
        reference: str | None = reader.mailbox()
    except BadName:
        reference = None
    reader.sp()
    found = reader.parenthesized(reader.list_mailbox) if reader.peek() == b"(" else [reader.list_mailbox()]
    # a pattern, or a reference, that no name can match lists nothing (Dovecot answers OK, and so do we)
    patterns = tuple(pattern for pattern in found if pattern is not None and reference is not None)
    returns: list[str] = []
    if reader.maybe_sp():
        reader.expect(b"RETURN ")
        returns = [option.upper() for option in reader.parenthesized(lambda: _return_option(reader))]
    unknown = set(selection) - LIST_SELECTION
    if unknown:
        raise reader.fail(f"unknown LIST selection option {sorted(unknown)[0][:30]}")
    if "RECURSIVEMATCH" in selection and not set(selection) - {"RECURSIVEMATCH", "REMOTE"}:
        raise reader.fail("RECURSIVEMATCH needs another selection option (RFC 5258 §3)")
    return ListMailboxes(
        reference=reference or "",
        patterns=patterns,
        subscribed_only=name == "LSUB" or "SUBSCRIBED" in selection,
        special_use_only="SPECIAL-USE" in selection,
        return_options=tuple(returns),
        lsub=name == "LSUB",
        recursive="RECURSIVEMATCH" in selection,
        extended=bool(selection or returns),
    )


def _status_items(reader: _Reader) -> tuple[str, ...]:
    items = tuple(item.upper() for item in reader.parenthesized(reader.atom))
    unknown = set(items) - STATUS_ITEMS
    if unknown or not items:
        raise reader.fail(f"unknown STATUS items: {' '.join(sorted(unknown)) or 'none asked'}")
    return items


def _return_option(reader: _Reader) -> str:
    """A LIST RETURN option; STATUS (items) comes back as "STATUS MESSAGES UNSEEN"."""
    option = reader.atom().upper()
    if option == "STATUS":
        reader.sp()
        return " ".join(["STATUS", *_status_items(reader)])
    if option not in LIST_RETURN:
        raise reader.fail(f"unknown LIST return option {option[:30]}")
    return option


def _append(reader: _Reader) -> Append:
    reader.sp()
    mailbox = reader.mailbox()
    reader.sp()
    flags: tuple[str, ...] = ()
    if reader.peek() == b"(":
        flags = reader.flags()
        reader.sp()
    internal_date = None
    if reader.peek() == b'"':
        internal_date = reader.date_time()
        reader.sp()
    binary = reader.peek() == b"~"
    message = reader.literal()
    return Append(mailbox, flags, internal_date, message, binary)


def _id_parameters(reader: _Reader) -> tuple[tuple[str, str | None], ...] | None:
    if reader.peek(3).upper() == b"NIL":
        reader.at += 3
        return None
    reader.expect(b"(")
    pairs: list[tuple[str, str | None]] = []
    while reader.peek() != b")":
        if pairs:
            reader.sp()
        key = reader.string().decode("utf-8", "replace")
        reader.sp()
        pairs.append((key, reader.nil_or_string()))
        if len(pairs) > 30:
            raise reader.fail("ID takes at most 30 pairs (RFC 2971 §3.3)")
    reader.at += 1
    return tuple(pairs)


def _fetch(reader: _Reader, sequence: SequenceSet, uid: bool) -> Fetch:
    if reader.peek() == b"(":
        reader.at += 1
        items = [_fetch_item(reader)]
        while reader.maybe_sp():
            items.append(_fetch_item(reader))
        reader.expect(b")")
    else:
        start = reader.at
        word = reader.atom().upper()
        if word in MACROS:
            items = [FetchItem(name) for name in MACROS[word]]
        else:
            reader.at = start
            items = [_fetch_item(reader)]
    changed_since = None
    if reader.maybe_sp():
        reader.expect(b"(CHANGEDSINCE ")
        changed_since = reader.number()
        reader.expect(b")")
    if uid and not any(item.name == "UID" for item in items):
        items.append(FetchItem("UID"))  # RFC 3501 §6.4.8: UID FETCH always says the UID
    return Fetch(sequence, tuple(items), uid, changed_since)


def _fetch_item(reader: _Reader) -> FetchItem:
    start = reader.at
    while not reader.done() and reader.data[reader.at] not in b" ()[<":
        reader.at += 1
    name = reader.data[start : reader.at].decode("ascii", "replace").upper()
    if name in ("BODY", "BODY.PEEK") and reader.peek() == b"[":
        section = _section(reader)
        return FetchItem("BODY", section, peek=name == "BODY.PEEK", partial=_partial(reader))
    if name in ("BINARY", "BINARY.PEEK", "BINARY.SIZE") and reader.peek() == b"[":
        section = _section(reader)
        if section.text:
            raise reader.fail(f"{name} takes part numbers only (RFC 3516 §4.1)")
        partial = _partial(reader) if name != "BINARY.SIZE" else None
        return FetchItem(name.removesuffix(".PEEK"), section, peek=name == "BINARY.PEEK", partial=partial)
    if name not in PLAIN_ITEMS:
        raise reader.fail(f"unknown fetch item {name[:30] or reader.peek(10)!r}")
    return FetchItem(name)


def _partial(reader: _Reader) -> tuple[int, int] | None:
    """A partial range "<first.count>", if one follows."""
    if reader.peek() != b"<":
        return None
    reader.at += 1
    first = reader.number()
    reader.expect(b".")
    partial = (first, reader.nz_number())
    reader.expect(b">")
    return partial


def _section(reader: _Reader) -> Section:
    reader.expect(b"[")
    part: list[int] = []
    while reader.peek().isdigit():
        part.append(reader.nz_number())
        if reader.peek() != b".":
            break
        reader.at += 1
    if reader.peek() == b"]":
        if reader.data[reader.at - 1 : reader.at] == b"." and part:
            raise reader.fail("a section part ends with '.'")
        reader.at += 1
        return Section(tuple(part))
    word = reader.atom().upper()
    text = SECTION_TEXTS.get(word)
    if text is None:
        raise reader.fail(f"unknown section {word[:30]}")
    if text == "MIME" and not part:
        raise reader.fail("MIME needs a part number (RFC 3501 §6.4.5)")
    fields: tuple[str, ...] = ()
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        reader.sp()
        fields = tuple(field.upper() for field in reader.parenthesized(reader.text))
        if not fields:
            raise reader.fail(f"{word} needs field names")
    reader.expect(b"]")
    return Section(tuple(part), text, fields)


def _store(reader: _Reader, sequence: SequenceSet, uid: bool) -> Store:
    unchanged_since = None
    if reader.peek() == b"(":
        reader.expect(b"(UNCHANGEDSINCE ")
        unchanged_since = reader.number()
        reader.expect(b")")
        reader.sp()
    item = reader.atom().upper()
    modes: dict[str, Literal["add", "remove", "replace"]] = {"+": "add", "-": "remove"}
    mode = modes.get(item[:1], "replace")
    base = item[1:] if item[:1] in modes else item
    if base not in ("FLAGS", "FLAGS.SILENT"):
        raise reader.fail(f"STORE takes FLAGS, +FLAGS or -FLAGS, not {item[:20]}")
    reader.sp()
    return Store(sequence, mode, base.endswith(".SILENT"), reader.flags(), uid, unchanged_since)


def _search(reader: _Reader, uid: bool) -> Search:
    reader.sp()
    return_options: tuple[str, ...] | None = None
    if reader.peek(7).upper() == b"RETURN ":
        reader.at += 7
        return_options = tuple(option.upper() for option in reader.parenthesized(reader.atom)) or ("ALL",)
        unknown = set(return_options) - SEARCH_RETURN
        if unknown:
            raise reader.fail(f"unknown SEARCH return option {sorted(unknown)[0][:30]}")
        reader.sp()
    charset = "UTF-8"
    if reader.peek(8).upper() == b"CHARSET ":
        reader.at += 8
        charset = reader.text().upper()
        if charset not in CHARSETS:
            raise BadCharset(charset, saves="SAVE" in (return_options or ()))
        reader.sp()
    keys = [_search_key(reader, charset)]
    while reader.maybe_sp():
        keys.append(_search_key(reader, charset))
    key = keys[0] if len(keys) == 1 else SearchKey("AND", keys=tuple(keys))
    return Search(key, uid, return_options)


def _search_key(reader: _Reader, charset: str, depth: int = 0) -> SearchKey:
    if depth > MAX_DEPTH:
        raise OverLimit(f"a search program nests at most {MAX_DEPTH} deep", reader.tag)
    reader.keys_left -= 1
    if reader.keys_left < 0:
        raise OverLimit("too many search keys in one command", reader.tag)
    if reader.peek() == b"(":
        reader.at += 1
        keys = [_search_key(reader, charset, depth + 1)]
        while reader.maybe_sp():
            keys.append(_search_key(reader, charset, depth + 1))
        reader.expect(b")")
        return SearchKey("AND", keys=tuple(keys))
    if reader.peek().isdigit() or reader.peek() in (b"*", b"$"):
        return SearchKey("SEQ", sequence=reader.sequence_set())
    name = reader.atom().upper()
    if name in SEARCH_FLAGS:
        return SearchKey(name)
    reader.sp()
    if name in SEARCH_STRINGS:
        return SearchKey(name, text=_search_string(reader, charset))
    if name in SEARCH_DATES:
        return SearchKey(name, text=reader.date())
    if name in ("LARGER", "SMALLER"):
        return SearchKey(name, number=reader.number())
    if name in ("KEYWORD", "UNKEYWORD"):
        return SearchKey(name, text=reader.flag())
    if name == "HEADER":
        field = reader.text().upper()
        reader.sp()
        return SearchKey(name, field=field, text=_search_string(reader, charset))
    if name == "UID":
        return SearchKey(name, sequence=reader.sequence_set())
    if name == "NOT":
        return SearchKey(name, keys=(_search_key(reader, charset, depth + 1),))
    if name == "OR":
        first = _search_key(reader, charset, depth + 1)
        reader.sp()
        return SearchKey(name, keys=(first, _search_key(reader, charset, depth + 1)))
    if name == "MODSEQ":
        if reader.peek() == b'"':  # entry-name and entry-type-req (RFC 7162 §3.1.5): accepted, not used
            reader.quoted()
            reader.sp()
            reader.atom()
            reader.sp()
        return SearchKey(name, number=reader.number())
    raise reader.fail(f"unknown search key {name[:20]}")


def _search_string(reader: _Reader, charset: str) -> str:
    raw = reader.astring()
    try:
        return raw.decode("ascii" if charset == "US-ASCII" else "utf-8")
    except UnicodeDecodeError:
        raise reader.fail(f"the search string is not {charset}") from None
