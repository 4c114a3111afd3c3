"""FETCH data items of one stored message, as they go on the wire."""

from __future__ import annotations

from jitaku.mail.imap import fetch
from jitaku.mail.imap.parser import Fetch, parse

RAW = b"Subject: a\0b\r\n\r\nbody \0 end\r\n"


def items(wanted: str) -> bytes:
    """WANTED of RAW as the FETCH response carries them."""
    command = parse(f"A1 FETCH 1 ({wanted})\r\n".encode())[1]
    assert isinstance(command, Fetch)
    fetched = fetch.Fetched(1, frozenset(), 1, len(RAW), 0.0, RAW)
    return b" ".join(b"".join(fetched.item(item)) for item in command.items)


def test_a_nul_goes_as_0x80_in_a_literal_and_as_itself_in_binarys_literal8() -> None:
    """RFC 3501 §4.3: a literal holds no NUL. Dovecot sends 0x80 for it, one octet for one, so sizes and
    partial ranges stay those of the message; BINARY (RFC 3516 §4.2) sends it in a literal8."""
    assert items("BODY.PEEK[]") == b"BODY[] {28}\r\n" + RAW.replace(b"\0", b"\x80")
    assert items("RFC822.HEADER BODY.PEEK[TEXT]<3.4>") == (
        b"RFC822.HEADER {16}\r\nSubject: a\x80b\r\n\r\n BODY[TEXT]<3> {4}\r\ny \x80 "
    )
    assert (
        items("BINARY.PEEK[1] BINARY.PEEK[]<0.12>")
        == b"BINARY[1] ~{12}\r\nbody \0 end\r\n BINARY[]<0> ~{12}\r\nSubject: a\0b"
    )
