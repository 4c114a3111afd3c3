"""A message's MIME tree as IMAP addresses it: exact bytes for every section of a nested message, and
ENVELOPE / BODYSTRUCTURE with Japanese encoded-words passed through untouched."""

from __future__ import annotations

import re
import time
from email.header import Header

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitaku.mail.imap import mime, structure
from jitaku.mail.imap.parser import Section

SUBJECT = Header("会議の件", "iso-2022-jp").encode()
NAME = Header("山田太郎", "iso-2022-jp").encode()
JAPANESE_BODY = "明日の会議は十時からです。\r\n".encode("iso-2022-jp")

SIMPLE = (
    f"From: {NAME} <yamada@example.jp>\r\n"
    'To: alice@example.test, "Bob, B." <bob@example.org>\r\n'
    f"Subject: {SUBJECT}\r\n"
    "Date: Wed, 25 Nov 2026 10:00:00 +0900\r\n"
    "Message-ID: <m1@example.jp>\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
).encode() + JAPANESE_BODY

ATTACHED = (
    b"From: carol@example.net\r\nSubject: inner\r\nContent-Type: multipart/alternative; boundary=in\r\n\r\n"
    b"--in\r\nContent-Type: text/plain\r\n\r\ninner plain\r\n"
    b"--in\r\nContent-Type: text/html\r\n\r\n<p>inner html</p>\r\n"
    b"--in--\r\n"
)
NESTED = (
    b"From: alice@example.test\r\nSubject: nested\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"This is the preamble.\r\n"
    b"--outer\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\n\r\n" + JAPANESE_BODY + b"\r\n"
    b"--outer\r\nContent-Type: multipart/alternative; boundary=alt\r\n\r\n"
    b"--alt\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
    b"--alt\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n"
    b"--alt--\r\n"
    b"\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\n" + ATTACHED + b"\r\n"
    b"--outer\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
    b"Content-Disposition: attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D.pdf\r\n\r\nJVBERi0=\r\n"
    b"--outer--\r\nepilogue\r\n"
)


def test_every_section_of_a_nested_message_is_its_exact_bytes() -> None:
    root = mime.parse(NESTED)
    assert mime.section(root, Section()) == NESTED
    assert mime.section(root, Section((1,))) == JAPANESE_BODY
    assert mime.section(root, Section((1,), "MIME")) == b"Content-Type: text/plain; charset=ISO-2022-JP\r\n\r\n"
    assert mime.section(root, Section((2, 1))) == b"plain"
    assert mime.section(root, Section((2, 2))) == b"<b>html</b>"
    assert mime.section(root, Section((3,))) == ATTACHED
    assert mime.section(root, Section((3,), "HEADER")).startswith(b"From: carol@example.net\r\n")  # type: ignore[union-attr]
    assert mime.section(root, Section((3, 1))) == b"inner plain"
    assert mime.section(root, Section((3, 2))) == b"<p>inner html</p>"
    assert mime.section(root, Section((4,))) == b"JVBERi0="
    assert mime.section(root, Section((), "HEADER.FIELDS", ("SUBJECT",))) == b"Subject: nested\r\n\r\n"
    assert mime.section(root, Section((), "TEXT")).startswith(b"This is the preamble.")  # type: ignore[union-attr]
    assert mime.section(root, Section((5,))) is None
    assert mime.section(root, Section((1,), "TEXT")) is None  # TEXT of a part that holds no message


def test_a_single_part_message_is_its_own_part_1() -> None:
    root = mime.parse(SIMPLE)
    assert mime.section(root, Section((1,))) == JAPANESE_BODY
    assert mime.section(root, Section((2,))) is None
    fields = mime.section(root, Section((), "HEADER.FIELDS.NOT", ("TO", "DATE", "MESSAGE-ID", "MIME-VERSION")))
    assert fields is not None and fields.startswith(b"From: =?iso-2022-jp?b?") and b"To:" not in fields


def test_a_one_part_message_has_no_part_1_1_but_a_part_of_a_multipart_is_its_own() -> None:
    """As Dovecot has it: BODY[1.1] of a one-part message is empty; of a multipart's leaf, the leaf."""
    assert mime.section(mime.parse(SIMPLE), Section((1, 1))) is None
    nested = mime.parse(NESTED)
    assert mime.section(nested, Section((1, 1))) == mime.section(nested, Section((1,)))
    assert mime.section(nested, Section((1, 1, 1))) is None
    assert mime.section(nested, Section((3, 1))) == b"inner plain"  # inside the attached message


def test_binary_undoes_the_transfer_encoding_leniently_and_refuses_one_it_does_not_know() -> None:
    message = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"bm8gcGFk\r\nZGluZw\r\n--b\r\nContent-Transfer-Encoding: Quoted-Printable\r\n\r\na=3Db=\r\nc\r\n"
        b"--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--b--\r\n"
    )
    root = mime.parse(message)
    assert mime.decoded(root, (1,)) == b"no padding"
    assert mime.decoded(root, (2,)) == b"a=bc"
    assert mime.decoded(root, ()) == message  # the whole message as it is
    assert mime.decoded(root, (4,)) is None
    with pytest.raises(mime.UnknownEncoding, match="x-uuencode"):
        mime.decoded(root, (3,))


FOLDED_BOUNDARY = (
    b'From: x@y\r\nContent-Type: multipart/mixed; boundary="foo\r\n bar"\r\n\r\npreamble\r\n'
    b"--foo bar\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"hello  \r\nsoft=\t\r\nbreak =\r\n=62\r\n"
    b"--foo bar\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--foo bar--\r\n"
)


def test_a_boundary_folded_inside_its_quotes_is_unfolded_with_its_space() -> None:
    """RFC 5322 §2.2.3: unfolding takes the CRLF out and keeps the blank, so the boundary is "foo bar"."""
    root = mime.parse(FOLDED_BOUNDARY)
    assert mime.section(root, Section((2,))) == b"second"
    assert structure.body_structure(root).endswith(b' "mixed" ("boundary" "foo bar") NIL NIL NIL)')


def test_quoted_printable_drops_the_blanks_that_end_a_line() -> None:
    """RFC 2045 §6.7 rule 3: transport may add them, so "hello  " is "hello" and "soft=<TAB>" a soft break."""
    assert mime.decoded(mime.parse(FOLDED_BOUNDARY), (1,)) == b"hello\r\nsoftbreak b"


def test_envelope_keeps_encoded_words_and_splits_addresses() -> None:
    assert structure.envelope(mime.parse(SIMPLE)) == (
        b'("Wed, 25 Nov 2026 10:00:00 +0900" "' + SUBJECT.encode() + b'" '
        b'(("' + NAME.encode() + b'" NIL "yamada" "example.jp")) '
        b'(("' + NAME.encode() + b'" NIL "yamada" "example.jp")) '
        b'(("' + NAME.encode() + b'" NIL "yamada" "example.jp")) '
        b'((NIL NIL "alice" "example.test")("Bob, B." NIL "bob" "example.org")) '
        b'NIL NIL NIL "<m1@example.jp>")'
    )


def test_envelope_gives_a_source_route_as_the_adl() -> None:
    """RFC 3501 §7.4.2's adl: RFC 5322 §4.4's obsolete route, written as Dovecot writes it."""
    routed = b'From: <@route:user@domain>\r\nTo: <@r1, @r2:a@b>, "Q, R" <@x:q@y> (c), c@d\r\n\r\n'
    assert structure.envelope(mime.parse(routed)) == (
        b'(NIL NIL ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) ((NIL "@route" "user" "domain")) '
        b'((NIL "@r1,@r2" "a" "b")("Q, R" "@x" "q" "y")(NIL NIL "c" "d")) NIL NIL NIL NIL)'
    )


def test_bodystructure_of_a_simple_and_a_nested_message() -> None:
    size, lines = len(JAPANESE_BODY), JAPANESE_BODY.count(b"\n")
    assert structure.body_structure(mime.parse(SIMPLE)) == (
        b'("text" "plain" ("charset" "ISO-2022-JP") NIL NIL "7bit" %d %d NIL NIL NIL NIL)' % (size, lines)
    )
    nested = structure.body_structure(mime.parse(NESTED))
    assert nested.startswith(b'(("text" "plain" ("charset" "ISO-2022-JP") NIL NIL "7bit" ')
    assert b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)' in nested
    assert b' "alternative" ("boundary" "alt") NIL NIL NIL)' in nested
    assert b'("message" "rfc822" NIL NIL NIL "7bit" %d ' % len(ATTACHED) in nested
    assert b'(NIL "inner" ((NIL NIL "carol" "example.net"))' in nested  # the attached message's envelope
    # RFC 2231's extended value goes on undecoded, as Dovecot sends it
    assert b'("application" "pdf" NIL NIL NIL "base64" 8 NIL ("attachment" ("filename*" "UTF-8\'\'%E8%A6%8B' in nested
    assert nested.endswith(b' "mixed" ("boundary" "outer") NIL NIL NIL)')
    assert structure.body_structure(mime.parse(NESTED), extensible=False).endswith(b' "mixed")')


def test_strings_are_quoted_or_literal() -> None:
    assert structure.string(None) == b"NIL"
    assert structure.string('say "hi" \\') == b'"say \\"hi\\" \\\\"'
    assert structure.string("日本") == b"{6}\r\n" + "日本".encode()
    assert structure.string(b"a\r\nb") == b"{4}\r\na\r\nb"


PIECES = [b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n", b"\r\n", b"--b\r\n"]
PIECES += [
    b"--b--\r\n",
    b"From: =?x?q?a?= <a@b>, ;\r\n",
    b"Subject: \xff\r\n",
    b"To: undisclosed:;\r\n",
    b" folded\r\n",
]


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES) | st.binary(max_size=20), max_size=30).map(b"".join))
def test_any_bytes_make_a_tree_that_every_fetch_can_walk(raw: bytes) -> None:
    root = mime.parse(raw)
    structure.body_structure(root)
    structure.envelope(root)
    for path in ((), (1,), (1, 1), (2, 1, 1)):
        for text in ("", "HEADER", "TEXT"):
            found = mime.section(root, Section(path, text))  # type: ignore[arg-type]
            assert found is None or found in raw


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"\r", b"\n", b"a", b": ", b"\r\n"]), max_size=12).map(b"".join))
def test_the_header_ends_at_the_first_empty_line_as_the_grammar_says(raw: bytes) -> None:
    """mime.split finds it with bytes.find, which stays fast on a header of megabytes; the regular
    expression is what it stands for."""
    found = re.search(rb"\r?\n\r?\n", raw)
    expected = (raw, b"") if found is None else (raw[: found.end()], raw[found.end() :])
    if raw.startswith((b"\r\n", b"\n")):
        cut = raw.index(b"\n") + 1
        expected = raw[:cut], raw[cut:]
    assert mime.split(raw) == expected


def test_a_message_of_a_hundred_thousand_parts_is_cut_into_ten_thousand() -> None:
    """Cutting and parsing each of them took seconds for every FETCH BODYSTRUCTURE; Dovecot stops at 10,000."""
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(100_000))
    root = mime.parse(b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n")
    assert len(root.children) == mime.MAX_PARTS - 1  # and the message itself
    assert structure.body_structure(root).count(b'("text" "plain"') == mime.MAX_PARTS - 1
    nested = b"Content-Type: message/rfc822\r\n\r\n" * 5 + b"Subject: inner\r\n\r\nhello\r\n"
    assert mime.locate(mime.parse(nested), (1, 1, 1, 1)) is not None


def test_an_address_field_of_strangers_making_costs_linear_time_and_ends_no_session() -> None:
    """Every FETCH ENVELOPE reads From, To and Cc: a group tried at every position of a 40,000-letter To took
    a minute; and getaddresses, recursing at each ":", raised RecursionError at "a:a:a:...", which ended the
    session each time a client listed the mailbox."""
    started = time.monotonic()
    for value in ("a" * 40_000, "a:," * 13_000, "a:;," * 10_000):
        structure.envelope(mime.parse(b"To: " + value.encode() + b"\r\n\r\n"))
    assert time.monotonic() - started < 5  # about 0.3 s
    assert structure.envelope(mime.parse(b"From: " + b"a:" * 3000 + b"\r\n\r\n")).startswith(b"(NIL NIL NIL NIL NIL")
