"""A message APPENDed as a literal8 (RFC 3516 §4.4) may hold binary parts; each is stored base64-encoded, as
Dovecot stores it. BODY[...] of the part is then text a literal can carry (RFC 3501 §4.3: no NUL), and
BINARY[...] still decodes to the octets the client sent.

Only the parts converted change: every other byte of the message is kept as it came, so the rest of the
message's sections, signatures over them included, stay what the client wrote.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

from jitaku.mail.imap import mime

# The first Content-Transfer-Encoding field of a part's header, which the MIME parser reads too
ENCODING_FIELD = re.compile(rb"^content-transfer-encoding[ \t]*:[^\r\n]*", re.IGNORECASE | re.MULTILINE)


def encoded(raw: bytes) -> bytes:
    """RAW with each part whose Content-Transfer-Encoding is binary made base64."""
    pieces: list[bytes] = []
    done = 0  # where the bytes not yet in pieces start
    for part in _binary_parts(mime.parse(raw)):
        header = ENCODING_FIELD.sub(b"Content-Transfer-Encoding: base64", part.header, count=1)
        pieces += [raw[done : part.at], header, _base64(part.body)]
        done = part.at + len(part.whole)
    return b"".join([*pieces, raw[done:]])


def _binary_parts(part: mime.Part) -> Iterator[mime.Part]:
    """The parts to convert, in the order the message has them: leaves whose encoding is "binary" and nothing
    else, as Dovecot reads it (a comment, a blank after it or a folded value leave the part as it is). A multipart or a
    message/rfc822 labelled binary is not one: the parts inside it are converted, and base64 is no encoding
    either may have (RFC 2045 §6.4, RFC 2046 §5.2.1)."""
    if part.is_multipart:
        for child in part.children:
            yield from _binary_parts(child)
    elif part.message is not None:
        yield from _binary_parts(part.message)
    elif str(part.headers.get("content-transfer-encoding", "")).lower() == "binary":
        yield part


def _base64(data: bytes) -> bytes:
    """DATA in lines of 76 letters (RFC 2045 §6.8), CRLF between them and none after the last: the line break
    before the next boundary belongs to the delimiter (RFC 2046 §5.1.1)."""
    return base64.encodebytes(data).rstrip(b"\n").replace(b"\n", b"\r\n")
