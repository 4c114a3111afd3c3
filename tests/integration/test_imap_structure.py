"""jitaku's ENVELOPE, BODYSTRUCTURE, BODY[section] and BINARY[section] against Dovecot's, octet for octet, over a corpus of
messages that exercise the corners: Japanese encoded-words and raw UTF-8 headers, nested multiparts, an
attached message, a digest, RFC 2231 parameters, groups, a multipart without a boundary, a broken type,
quoted-printable and base64 parts. The corpus is compared with the functions in process; what a fix changes on
the wire is also compared over real sockets, the same commands to a running jitaku and to Dovecot."""

from __future__ import annotations

import imaplib
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from jitaku.mail.imap import mime, structure
from tests.integration.harness import READER, Jitaku
from tests.peers import Dovecot
from tests.test_imap_binary import PREFIX, SUFFIX
from tests.test_imap_mime import ATTACHED, FOLDED_BOUNDARY, NESTED, SIMPLE

CORPUS = {
    "simple": SIMPLE,
    "nested": NESTED,
    "attached": ATTACHED,
    "parameters": b'From: x@y\r\nContent-Type: TEXT/Plain; CHARSET="UTF-8"; Format=Flowed\r\n'
    b"Content-Transfer-Encoding: Quoted-Printable\r\nContent-Disposition: inline\r\nContent-Language: en, ja\r\n"
    b"\r\nhi=\r\n",
    "continuations": b'From: x@y\r\nContent-Type: application/octet-stream; name*0="long"; name*1="er.txt";'
    b' x="a\\"b"\r\nContent-Disposition: attachment; filename*=iso-2022-jp\'\'%1B%24B%3F7%1B%28B.txt\r\n\r\nabc\r\n',
    "groups": b'From: x@y\r\nTo: undisclosed-recipients:;\r\nCc: team: a@b, "C, D" <c@d>;, e@f\r\n\r\nx\r\n',
    "no boundary": b"From: x@y\r\nContent-Type: multipart/mixed\r\n\r\nno boundary\r\n",
    "broken type": b"From: x@y\r\nContent-Type: garbage\r\n\r\nx\r\n",
    "utf-8 headers": "From: 山田 <yamada@example.jp>\r\nSubject: 会議\r\n\r\n本文\r\n".encode(),
    "folded": b"From: a@b\r\nSubject: a long\r\n subject, folded\r\nTo: c@d,\r\n\te@f\r\n\r\nbody\r\n",
    "digest": b"From: x@y\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\nFrom: in@side\r\n"
    b"Subject: one\r\n\r\nfirst\r\n--d\r\nContent-Type: text/plain\r\n\r\nnot a message\r\n--d--\r\n",
    "encodings": b"From: x@y\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
    b"=E6=97=A5=E6=9C=AC caf=C3=A9 soft=\r\nbreak\r\n--b\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAFiaW5hcnn/\r\n--b\r\n"
    b"Content-Type: text/plain\r\nContent-Transfer-Encoding: BASE64\r\n\r\nbGluZSBv\r\nbmUNCmxp\r\nbmUgdHdv\r\nDQo=\r\n"
    b"--b--\r\n",
    "folded boundary": FOLDED_BOUNDARY,
}
SECTIONS = [
    "1",
    "2",
    "2.1",
    "2.2",
    "3",
    "3.1",
    "3.HEADER",
    "3.TEXT",
    "1.MIME",
    "HEADER",
    "TEXT",
    "HEADER.FIELDS (SUBJECT FROM)",
    "1.1",
]


# BINARY[] is left out: Dovecot rewrites the whole message with every part decoded, jitaku sends it as it is
# (RFC 3516 §4.2 decodes "the section's" transfer encoding, and a message's own is 7bit, 8bit or binary)
BINARY_SECTIONS = ["1", "2", "3", "4", "1.1", "2.1", "3.1"]


def wire(data: list[Any]) -> bytes:
    """imaplib's pieces of one FETCH response put back as they came over the wire."""
    return b"".join(piece[0] + b"\r\n" + piece[1] if isinstance(piece, tuple) else piece for piece in data)


@pytest.fixture(scope="module")
def reference(dovecot: Dovecot) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", dovecot.port)
    client.login("alice", "secret-password")
    client.select("INBOX")
    for message in CORPUS.values():
        client.append("INBOX", None, None, message)
    return client


@pytest.mark.parametrize("number,name", list(enumerate(CORPUS, 1)))
def test_envelope_and_bodystructure_are_dovecots(reference: imaplib.IMAP4, number: int, name: str) -> None:
    root = mime.parse(CORPUS[name])
    for item, ours in (
        ("ENVELOPE", structure.envelope(root)),
        ("BODYSTRUCTURE", structure.body_structure(root)),
        ("BODY", structure.body_structure(root, extensible=False)),
    ):
        _ok, data = reference.fetch(str(number), f"({item})")
        assert wire(data) == f"{number} ({item} ".encode() + ours + b")", f"{name} {item}"


@pytest.mark.parametrize("number,name", list(enumerate(CORPUS, 1)))
def test_every_section_is_dovecots(reference: imaplib.IMAP4, number: int, name: str) -> None:
    from jitaku.mail.imap.parser import parse

    root = mime.parse(CORPUS[name])
    for wanted in SECTIONS:
        _ok, data = reference.fetch(str(number), f"(BODY.PEEK[{wanted}])")
        theirs = data[0][1] if isinstance(data[0], tuple) else None  # NIL or "": no literal
        fetch = parse(f"A1 FETCH 1 BODY[{wanted}]\r\n".encode())[1]
        section = fetch.items[0].section  # type: ignore[union-attr]
        assert section is not None
        ours = mime.section(root, section)
        assert (ours or None) == (theirs or None), f"{name} BODY[{wanted}]: {ours!r} != {theirs!r} ({data!r})"


@pytest.mark.parametrize("number,name", list(enumerate(CORPUS, 1)))
def test_binary_is_dovecots(reference: imaplib.IMAP4, number: int, name: str) -> None:
    """RFC 3516: each part's content with its transfer encoding undone, and its size so."""
    root = mime.parse(CORPUS[name])
    for wanted in BINARY_SECTIONS:
        _ok, data = reference.fetch(str(number), f"(BINARY.PEEK[{wanted}] BINARY.SIZE[{wanted}])")
        theirs = data[0][1] if isinstance(data[0], tuple) else None  # Dovecot sends {0} for a missing part
        size = int(data[1].split(b"BINARY.SIZE[" + wanted.encode() + b"] ")[1].rstrip(b")"))  # type: ignore[union-attr]
        ours = mime.decoded(root, tuple(int(number) for number in wanted.split(".")))
        assert (ours or None) == (theirs or None), f"{name} BINARY[{wanted}]: {ours!r} != {theirs!r}"
        part = mime.locate(root, tuple(int(number) for number in wanted.split(".")))
        if part is None or part.message is None:  # Dovecot's size of an attached message is not its BINARY's
            assert len(ours or b"") == size, f"{name} BINARY.SIZE[{wanted}]"


class Pair:
    """A running jitaku and Dovecot, each logged in with an empty mailbox of its own selected (the reference's
    INBOX holds the corpus)."""

    def __init__(self, mailhost: Jitaku, dovecot: Dovecot) -> None:
        self.mailbox = "wire-" + uuid.uuid4().hex[:8]
        self.clients = []
        for port, user in ((mailhost.imap_port, READER), (dovecot.port, "alice")):
            client = imaplib.IMAP4("127.0.0.1", port, timeout=10)
            client.login(user, "secret-password")
            client.create(self.mailbox)
            client.select(self.mailbox)
            self.clients.append(client)

    def append(self, message: bytes) -> None:
        for client in self.clients:
            assert client.append(self.mailbox, None, None, message)[0] == "OK"

    def append8(self, message: bytes) -> None:
        """APPEND MESSAGE as a literal8 (RFC 3516 §4.4), which imaplib cannot send."""
        for client in self.clients:
            tag = client._new_tag()  # type: ignore[attr-defined]
            client.send(tag + b" APPEND %s ~{%d+}\r\n" % (self.mailbox.encode(), len(message)) + message + b"\r\n")
            while not (line := client.readline()).startswith(tag + b" "):
                pass
            assert line.split()[1] == b"OK", line

    def fetch(self, item: str, message: str = "*") -> tuple[bytes, bytes]:
        """ITEM of MESSAGE, as jitaku and as Dovecot sent it. BINARY's literal is read as a literal: a server
        may send a literal8 for it either way (RFC 3516 §4.2), and Dovecot does whenever it decoded."""
        found = (wire(client.fetch(message, f"({item})")[1]) for client in self.clients)
        ours, theirs = (data.replace(b"] ~{", b"] {", 1) if item.startswith("BINARY") else data for data in found)
        return ours, theirs

    def search(self, criteria: str) -> tuple[bytes, bytes]:
        ours, theirs = (client.search(None, criteria)[1][0] for client in self.clients)
        return ours, theirs

    def close(self) -> None:
        for client in self.clients:
            client.close()
            client.delete(self.mailbox)
            client.logout()


@pytest.fixture
def pair(mailhost: Jitaku, dovecot: Dovecot) -> Iterator[Pair]:
    both = Pair(mailhost, dovecot)
    yield both
    both.close()


def test_a_boundary_folded_in_its_quotes_cuts_the_parts_dovecot_cuts(pair: Pair) -> None:
    pair.append(FOLDED_BOUNDARY)
    for item in ("BODYSTRUCTURE", "BODY.PEEK[1]", "BODY.PEEK[2]", "BINARY.PEEK[1]", "BINARY.SIZE[1]"):
        ours, theirs = pair.fetch(item)
        assert ours == theirs, item


def test_a_binary_part_appended_as_a_literal8_is_stored_base64_as_dovecot_stores_it(pair: Pair) -> None:
    pair.append8(PREFIX + b"Content-Transfer-Encoding: binary\r\n\r\n" + bytes(range(256)) * 3 + SUFFIX)
    items = ("RFC822.SIZE", "BODY.PEEK[]", "BODYSTRUCTURE", "BODY.PEEK[2]", "BINARY.PEEK[2]", "BINARY.SIZE[2]")
    for item in items:
        ours, theirs = pair.fetch(item)
        assert ours == theirs, item
    assert b"\0" not in pair.fetch("BODY.PEEK[]")[0]


def test_a_nul_in_a_stored_message_goes_as_0x80_as_dovecot_sends_it(pair: Pair) -> None:
    pair.append(b"Subject: a\0b\r\n\r\nbody \0 end\r\n")
    for item in ("BODY.PEEK[]", "RFC822.HEADER", "BODY.PEEK[1]<3.4>", "BINARY.PEEK[1]"):
        ours, theirs = pair.fetch(item)
        assert ours == theirs, item


def test_source_routes_and_address_searches_are_dovecots(pair: Pair) -> None:
    """ENVELOPE's adl, and SEARCH FROM and the others, which look in the addresses written again."""
    pair.append(b'From: <@route:user@domain>\r\nTo: <@r1, @r2:a@b>, "Q, R" <@x:q@y> (c)\r\n\r\nbody\r\n')
    pair.append(b"From: <user-from (comment)@ (comment) domain.org>\r\n\r\nbody\r\n")
    pair.append(b"From: user-from@domain.org (RealFrom)\r\nTo: group: a@b, <@r3:c@d>;\r\n\r\nbody\r\n")
    for message in ("1", "3"):
        ours, theirs = pair.fetch("ENVELOPE", message)
        assert ours == theirs, message
    for criteria in (
        "FROM user-from@domain.org",
        'FROM "realfrom <user-from@"',
        'FROM "<@route:user@domain>"',
        'TO "@r1,@r2:a@b"',
        'TO "group: <a@b>, <@r3:c@d>;"',
        'TO "\\"q, r\\" <@x:q@y>"',
    ):
        ours, theirs = pair.search(criteria)
        assert ours == theirs, criteria
