"""RFC 2047 encoded-words as Japanese mail programs really write them.

email.header.decode_header is not enough for them: next to an encoded-word it
turns raw 8-bit bytes into literal `\\udcXX` text, and it rejects CP932 text
labelled Shift_JIS and the ISO-2022-JP with Windows' extra characters (①, ㈱)
that Windows sends. Subjects, the list archive and munged From names all read
header text through here.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from email.header import Header, decode_header

_ENCODED_WORD = re.compile(r"=\?(?P<charset>[^?\s*]+)(?:\*[^?\s]*)?\?(?P<encoding>[bBqQ])\?(?P<text>[!->@-~]*)\?=")
_LINE_BREAK = re.compile(r"[\r\n]+")
ESCAPED_BYTE = re.compile(r"[\udc80-\udcff]")  # how compat32 keeps a byte that is not ASCII

# Labels Japanese MUAs use that Python does not know.
_ALIASES = {"x-sjis": "shift_jis", "windows-31j": "cp932"}


def source(header: Header) -> str:
    """compat32 wraps a field holding 8-bit bytes in a Header; its unknown-8bit chunks still hold those bytes."""
    return "".join(
        octets.decode("ascii", "surrogateescape") if charset == "unknown-8bit" else octets.decode(charset, "replace")
        for octets, charset in decode_header(header)
    )


def decode(raw: str) -> tuple[str, bool]:
    """The text of a raw Subject, and whether its non-ASCII part came as ISO-2022-JP.

    email.header.decode_header is no use here: next to an encoded-word it turns raw 8-bit bytes into literal
    `\\udcXX` text, and it reads CP932 labelled Shift_JIS or ISO-2022-JP with Windows' extra characters as errors.
    """
    pieces: list[str | tuple[str, bytearray]] = []
    unfolded = _LINE_BREAK.sub("", raw)
    position = 0
    for match in _ENCODED_WORD.finditer(unfolded):
        octets = _octets(match)
        if octets is None:
            continue  # not decodable: it stays as text, in the next gap
        gap = unfolded[position : match.start()]
        # RFC 2047 6.2: linear whitespace between two encoded-words is not part of the text.
        between_words = bool(pieces) and isinstance(pieces[-1], tuple) and not gap.strip(" \t")
        if gap and not between_words:
            pieces.append(gap)
        charset = match["charset"].lower()
        last = pieces[-1] if pieces else None
        # MUAs do split a multibyte character across two encoded-words, so adjacent ones are decoded together.
        if isinstance(last, tuple) and last[0] == charset:
            last[1].extend(octets)
        else:
            pieces.append((charset, bytearray(octets)))
        position = match.end()
    if unfolded[position:]:
        pieces.append(unfolded[position:])
    texts: list[str] = []
    from_jis = False
    for piece in pieces:
        text, jis = decode_plain(piece) if isinstance(piece, str) else _octets_text(bytes(piece[1]), piece[0])
        texts.append(text)
        from_jis = from_jis or (jis and not text.isascii())
    return "".join(texts), from_jis


def decode_body(octets: bytes, charset: str | None) -> str:
    """A text part's octets as text, read as the header text is (CP932 for Shift_JIS, CP50220 for ISO-2022-JP):
    for the list archive's pages. Without a charset, or labelled US-ASCII (which 7-bit ISO-2022-JP often is),
    UTF-8 when the octets are UTF-8 and ISO-2022-JP when its escapes are there; what cannot be read becomes U+FFFD.
    """
    label = (charset or "").strip().lower()
    if label in ("", "us-ascii", "ascii"):
        label = "unknown-8bit"
    text = _octets_text(octets, label)[0]
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _octets(match: re.Match[str]) -> bytes | None:
    encoded = match["text"]
    if match["encoding"] in "qQ":
        return binascii.a2b_qp(encoded, header=True)
    try:
        return base64.b64decode(encoded + "=" * (-len(encoded) % 4))
    except binascii.Error:
        return None


def _octets_text(octets: bytes, charset: str) -> tuple[str, bool]:
    """The text of encoded-words in CHARSET, and whether that was ISO-2022-JP."""
    try:
        codec = codecs.lookup(_ALIASES.get(charset, charset)).name
        if codec == "iso2022_jp":
            return _decode_jis(octets), True
        # Windows and many Japanese MUAs label CP932 text Shift_JIS; CP932 reads every Shift_JIS sequence too.
        return octets.decode("cp932" if codec == "shift_jis" else codec, "replace"), False
    # unknown-8bit, a misspelt or 8-bit label, or a codec that is not a text encoding
    except (LookupError, ValueError, UnicodeError):
        return decode_plain(octets.decode("ascii", "surrogateescape"))


def decode_plain(text: str) -> tuple[str, bool]:
    """Text outside encoded-words: raw 8-bit bytes are read as UTF-8 when they are UTF-8, else kept as they are.

    Old Japanese MUAs also put ISO-2022-JP there unencoded; it is 7-bit, so only its escapes give it away.
    """
    if ESCAPED_BYTE.search(text):
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8"), False
        except UnicodeError:
            return text, False
    if "\x1b" in text and text.isascii():
        return _decode_jis(text.encode("ascii")), True
    return text, False


def _decode_jis(octets: bytes) -> str:
    """ISO-2022-JP, or failing that the CP50220 form Windows sends, with NEC and IBM characters such as ① and ㈱."""
    try:
        return octets.decode("iso2022_jp")
    except UnicodeDecodeError:
        pass
    sjis = bytearray()
    parts = re.split(rb"\x1b(\$[@B]|\([BJI])", octets)
    for mode, chunk in zip([b"(B", *parts[1::2]], parts[0::2], strict=True):
        if mode in (b"$@", b"$B"):
            for first, second in zip(chunk[0::2], chunk[1::2], strict=False):
                if not (0x21 <= first <= 0x7E and 0x21 <= second <= 0x7E):
                    sjis.extend((first, second))  # not JIS: left for the decoder to replace
                    continue
                sjis.append((first + 1) // 2 + (0x70 if first <= 0x5E else 0xB0))
                sjis.append(second + 0x7E if first % 2 == 0 else second + (0x1F if second <= 0x5F else 0x20))
        elif mode == b"(I":
            sjis.extend(byte | 0x80 for byte in chunk)
        else:
            sjis.extend(chunk)
    return sjis.decode("cp932", "replace")
