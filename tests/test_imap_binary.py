"""A message APPENDed as a literal8: its binary parts stored base64, as Dovecot stores them, and every other
byte as it came."""

from __future__ import annotations

import base64

from hypothesis import example, given, settings
from hypothesis import strategies as st

from jitaku.mail.imap import binary, mime, structure

DATA = bytes(range(256)) * 2  # NUL, bare CR and LF, 8-bit: what only a binary part may hold
PREFIX = (
    b"From: a@b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\npreamble\r\n"
    b"--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
    b"--b\r\nContent-Type: application/octet-stream\r\n"
)
SUFFIX = b"\r\n--b--\r\nepilogue\r\n"


def test_a_binary_part_is_stored_base64_and_the_rest_as_it_came() -> None:
    raw = PREFIX + b"Content-Transfer-Encoding: binary\r\nContent-Disposition: attachment\r\n\r\n" + DATA + SUFFIX
    stored = binary.encoded(raw)
    letters = base64.b64encode(DATA)
    lines = [letters[at : at + 76] for at in range(0, len(letters), 76)]  # RFC 2045 §6.8
    header = b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment\r\n\r\n"
    assert stored == PREFIX + header + b"\r\n".join(lines) + SUFFIX
    assert mime.decoded(mime.parse(stored), (2,)) == DATA


def test_parts_inside_an_attached_message_are_converted_and_a_multipart_is_not() -> None:
    inner = (
        b"Subject: in\r\nContent-Type: multipart/alternative; boundary=c\r\n\r\n"
        b"--c\r\ncontent-transfer-encoding: BINARY\r\n\r\n\0one\r\n"
        b"--c\r\nContent-Transfer-Encoding: binary\r\n (folded)\r\n\r\n\0two\r\n"
        b"--c\r\nContent-Transfer-Encoding: binary (comment)\r\n\r\n\0three\r\n"
        b"--c\r\nContent-Transfer-Encoding: 8bit\r\n\r\n\0four\r\n--c--\r\n"
    )
    raw = (
        b"Content-Type: multipart/mixed; boundary=b\r\nContent-Transfer-Encoding: binary\r\n\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: binary\r\n\r\n" + inner + b"\r\n--b--\r\n"
    )
    stored = binary.encoded(raw)
    assert stored == raw.replace(
        b"content-transfer-encoding: BINARY\r\n\r\n\0one", b"Content-Transfer-Encoding: base64\r\n\r\nAG9uZQ=="
    )
    assert mime.decoded(mime.parse(stored), (1, 1)) == b"\0one"


def test_a_message_without_binary_parts_is_kept_as_it_is() -> None:
    raw = b"Subject: plain\r\nContent-Transfer-Encoding: 8bit\r\n\r\nnul \0 and \xff\r\n"
    assert binary.encoded(raw) == raw
    single = b"Content-Transfer-Encoding: binary\r\n\r\n\0\r\n\r\n"  # the whole body, its last line breaks too
    assert binary.encoded(single) == b"Content-Transfer-Encoding: base64\r\n\r\nAA0KDQo="


PIECES = [b"Content-Type: multipart/mixed; boundary=b\r\n", b"Content-Type: message/rfc822\r\n", b"\r\n", b"--b\r\n"]
PIECES += [b"--b--\r\n", b"Content-Transfer-Encoding: binary\r\n", b"Content-Transfer-Encoding: BINARY", b"\0\xff\r"]


@settings(max_examples=500, deadline=None)
@example(b"Content-Type: message/rfc822\r\n\r\nContent-Transfer-Encoding: binary\r\n")  # a header alone, converted
@given(st.lists(st.sampled_from(PIECES) | st.binary(max_size=10), max_size=30).map(b"".join))
def test_any_message_keeps_its_parts_and_their_content(raw: bytes) -> None:
    stored = binary.encoded(raw)
    before, after = mime.parse(raw), mime.parse(stored)
    assert structure.body_structure(after).count(b"(") == structure.body_structure(before).count(b"(")
    for path in ((1,), (2,), (1, 1), (1, 2), (2, 1)):
        part = mime.locate(before, path)
        assert (part is None) == (mime.locate(after, path) is None)
        if part is None or part.is_multipart or part.message is not None:
            continue  # a container's bytes hold its parts' headers, which the conversion rewrites
        try:
            assert mime.decoded(after, path) == mime.decoded(before, path)
        except mime.UnknownEncoding:
            pass
