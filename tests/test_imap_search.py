"""SEARCH programs over messages as strangers send them: linear in the header fields, within a budget."""

from __future__ import annotations

import time
from email.header import Header

import pytest

from jitaku.mail.imap import search
from jitaku.mail.imap.budget import Budget, OutOfTime
from jitaku.mail.imap.parser import Search, parse

MAILBOX = search.Mailbox(largest=10, largest_uid=100)


def program(text: str, budget: Budget | None = None) -> search.Program:
    _tag, command = parse(b"a SEARCH " + text.encode() + b"\r\n")
    assert isinstance(command, Search)
    return search.Program(command.key, MAILBOX, budget or Budget(60))


def candidate(body: bytes, number: int = 1, uid: int = 10, flags: frozenset[str] = frozenset()) -> search.Candidate:
    return search.Candidate(number, uid, flags, 1, len(body), 1_700_000_000.0, body)


MESSAGE = (
    b"From: Alice <alice@example.test>\r\nTo: bob@example.org\r\nSubject: "
    + Header("会議の件", "iso-2022-jp").encode().encode()
    + b"\r\nX-Folded: first\r\n second\r\nDate: Wed, 25 Nov 2026 10:00:00 +0900\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    b"5pys5paH44Gn44GZDQo=\r\n"  # 本文です
)


@pytest.mark.parametrize(
    ("keys", "found"),
    [
        ("FROM alice", True),
        ('SUBJECT "\u4f1a\u8b70"', True),
        ('HEADER X-Folded "first second"', True),  # unfolded (RFC 5322 §2.2.3)
        ('HEADER X-Missing ""', False),
        ('HEADER x-folded ""', True),  # an empty string: the field is there
        ("BODY 本文", True),
        ("TEXT example.org", True),  # in a header field
        ("TEXT 本文", True),  # in the text
        ("TEXT nowhere", False),
        ("SENTON 25-Nov-2026", True),
        ("SENTBEFORE 25-Nov-2026", False),
        ("OR FROM nobody NOT TO nobody", True),
        ("1,5:7", True),
        ("UID 11:*", False),
        ("UID 1:3,9:10", True),
    ],
)
def test_keys_match_decoded_header_fields_and_text(keys: str, found: bool) -> None:
    assert program(keys).matches(candidate(MESSAGE)) is found


ADDRESSES = (
    b"From: <user-from (comment)@ (comment) domain.org>\r\n"
    b"To: user-to@domain.org (RealTo), <@route:routed@domain.org>\r\n"
    b'Cc: "Q, R" <q@y>, group: a@b, ' + Header("山田", "utf-8").encode().encode() + b" <c@d>;\r\n\r\nbody\r\n"
)


@pytest.mark.parametrize(
    ("keys", "found"),
    [
        ("FROM user-from@domain.org", True),  # the address without its comments
        ("FROM comment", True),  # and the field's text, as before
        ("HEADER FROM user-from@domain.org", False),  # HEADER reads the text alone, as Dovecot's does
        ('TO "realto <user-to@"', True),  # a comment after the address is its name
        ('TO "<@route:routed@domain.org>"', True),
        ('CC "\\"q, r\\" <q@y>, group: <a@b>, 山田 <c@d>;"', True),
        ("CC nobody@domain.org", False),
    ],
)
def test_address_keys_match_the_addresses_as_dovecot_writes_them(keys: str, found: bool) -> None:
    """RFC 3501 §6.4.4: FROM and the others look in the envelope's address, which Dovecot writes again."""
    assert program(f"CHARSET UTF-8 {keys}").matches(candidate(ADDRESSES)) is found


def test_a_header_of_twenty_thousand_fields_is_read_once() -> None:
    """Issue 15: SEARCH TEXT looked each field name up again (get_all), quadratic: 18 s for these fields."""
    fields = b"".join(b"X-Field-%d: value %d\r\n" % (number, number) for number in range(20_000))
    message = candidate(fields + b"Subject: needle\r\n\r\nbody\r\n")
    started = time.monotonic()
    assert program("TEXT needle").matches(message) and not program("TEXT haystack").matches(message)
    assert program("HEADER X-Field-19999 19999").matches(message)
    assert time.monotonic() - started < 5  # about 0.2 s


def test_a_search_out_of_budget_stops_between_fields() -> None:
    fields = b"".join(b"X-Field-%d: value %d\r\n" % (number, number) for number in range(20_000))
    spent = Budget(60)
    spent.give_up()  # as when the session's task is cancelled at SIGTERM
    with pytest.raises(OutOfTime):
        program("TEXT needle", spent).matches(candidate(fields + b"\r\n"))
    with pytest.raises(OutOfTime):
        program("BODY needle", Budget(-1)).matches(candidate(b"Subject: x\r\n\r\n" + b"line\r\n" * 100_000))


def test_a_uid_set_of_many_ranges_is_looked_up_not_walked() -> None:
    ranges = ",".join(f"{number}" for number in range(1, 40_000, 2))
    matcher = program(f"UID {ranges}")
    started = time.monotonic()
    matched = [uid for uid in range(1, 10_001) if matcher.matches(candidate(b"", uid=uid))]
    assert matched == list(range(1, 10_001, 2))
    assert time.monotonic() - started < 5  # about 0.05 s; trying each range for each message was 10 s


@pytest.mark.parametrize(
    ("keys", "stored"),
    [
        ("FLAGGED", False),
        ("UID 1:3 LARGER 10 NOT SEEN KEYWORD $Work", False),
        ("1:* MODSEQ 5 SMALLER 100", False),
        ("OR SEEN SUBJECT x", True),
        ("SINCE 1-Feb-2026", True),  # the internal date is the store's
        ("NOT TEXT x", True),
    ],
)
def test_a_search_by_what_a_sessions_view_knows_needs_no_stored_message(keys: str, stored: bool) -> None:
    """A message another session expunged, still in a session's view (RFC 3501 §7.4.1), is searched by its
    flags, UID, number, size and mod-sequence; text and dates went with it."""
    _tag, command = parse(b"a SEARCH " + keys.encode() + b"\r\n")
    assert isinstance(command, Search)
    assert search.needs_stored(command.key) is stored
