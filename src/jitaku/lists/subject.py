"""fml-style numbered Subject tags: `[sota:00013] Re: 会議` on every post, never stacked.

The tag and a single `Re:` are written as plain ASCII in front of any encoded-word, as fml does: Japanese MUAs
and the list's own filters read them without decoding. Old tags of the same format are removed wherever they
are and the pile of reply prefixes MUAs build (`Re: Re^2: AW: 返信:`) collapses to one `Re:`, so a thread keeps
one short subject however long it runs. Forward prefixes (`Fwd:`, `FW:`, `転送:`) carry meaning a reply prefix
does not, so they are kept as written, in order, after the `Re:`: `Fwd: Re: x` becomes `[tag] Re: Fwd: x`.

Text that came as ISO-2022-JP goes back out as ISO-2022-JP (what Japanese MUAs expect and some old ones need);
any other non-ASCII text goes out as UTF-8. Both are base64 encoded-words of at most 75 characters, cut only
between characters and, for ISO-2022-JP, each back in ASCII state at its end, so a reader can decode each word
on its own. Lines are kept to 76 characters (RFC 2047's limit for lines with encoded-words), counting the
"Subject: " the value is written after.
"""

from __future__ import annotations

import functools
import itertools
import re
from email.charset import BASE64, Charset
from email.header import Header

from jitaku.mail import encoded_words

_MAX_LINE = 76
_MAX_WORD = 75
_FIELD = "Subject: "

_WHITESPACE = re.compile(r"[ \t\n\r\f\v]+")
_TEXT = re.compile(r"([^\x00-\x7f\udc80-\udcff]+)")  # characters that are neither ASCII nor escaped bytes
_PRINTABLE_ASCII = re.compile(r"[ -~]*")
_CONVERSION = re.compile(r"%(?:%|(?P<zero>0)?(?P<width>\d*)d)")

_REPLY = r"(?:re|ｒｅ|aw|ａｗ|sv|ｓｖ|antw|返信)(?:\^\d+|\[\d+\]|\(\d+\)|\d+)?"
_FORWARD = r"(?:fwd?|ｆｗｄ?|転送)"
_PREFIX = re.compile(rf"\s*(?:(?P<reply>{_REPLY})|(?P<forward>{_FORWARD}))[ \t]*[:：]", re.IGNORECASE)


def _base64_charset(name: str) -> Charset:
    """The stdlib picks Q for UTF-8 when shorter; B keeps every encoded-word the same shape for MUAs and tests."""
    charset = Charset(name)
    charset.header_encoding = BASE64
    return charset


_JIS = _base64_charset("iso-2022-jp")
_UTF8 = _base64_charset("utf-8")
_UNKNOWN_8BIT = _base64_charset("unknown-8bit")


def tag_subject(raw: str | Header | None, tag_format: str, number: int) -> str:
    """The Subject for post NUMBER: ASCII only, folded with CRLF+space to fit lines after "Subject: ".

    RAW is the field as compat32 parsing gives it, which is a Header rather than a str when it holds 8-bit bytes.
    """
    if number < 0:
        raise ValueError(f"post numbers are not negative: {number}")
    pattern = _tag_pattern(tag_format)
    text, from_jis = encoded_words.decode(encoded_words.source(raw) if isinstance(raw, Header) else raw or "")
    reply, rest = _split(text, pattern)
    folder = _Folder()
    folder.add(tag_format % number)
    if reply:
        folder.add("Re:")
    _emit(folder, rest, from_jis)
    return folder.value()


def strip_tag(text: str, tag_format: str) -> str:
    """Decoded TEXT without tags of TAG_FORMAT and with its reply prefixes collapsed to one leading `Re:`.

    This is exactly what follows the tag and a space in the decoded result of tag_subject.
    """
    reply, rest = _split(text, _tag_pattern(tag_format))
    return " ".join(part for part in ("Re:" if reply else "", rest) if part)


@functools.lru_cache(maxsize=64)
def _tag_pattern(tag_format: str) -> re.Pattern[str]:
    """Matches the tag for any number and any zero padding, so renumbering or a changed width never stacks tags."""
    if not _PRINTABLE_ASCII.fullmatch(tag_format) or "=?" in tag_format:
        raise ValueError(f"a tag format must be printable ASCII and not look like an encoded-word: {tag_format!r}")
    if tag_format != tag_format.strip():
        raise ValueError(f"a tag format must not start or end with whitespace: {tag_format!r}")
    parts: list[str] = []
    numbers = 0
    position = 0
    for match in _CONVERSION.finditer(tag_format):
        parts.append(_literal(tag_format[position : match.start()], tag_format))
        if match[0] == "%%":
            parts.append("%")
        else:
            numbers += 1
            # "%5d" pads with spaces, which a reader may have collapsed.
            parts.append(r"\s*+\d+" if match["width"] and not match["zero"] else r"\d+")
        position = match.end()
    parts.append(_literal(tag_format[position:], tag_format))
    if numbers != 1:
        raise ValueError(f"a tag format needs exactly one %d or %0Nd: {tag_format!r}")
    return re.compile("".join(parts))


def _literal(text: str, tag_format: str) -> str:
    """Whitespace in the format matches any whitespace: MUAs refold and collapse it.

    The quantifiers are possessive so that whitespace next to a space-padded number cannot make the match backtrack.
    """
    if "%" in text:
        raise ValueError(f"a tag format may only hold %d, %0Nd, %Nd and %%: {tag_format!r}")
    return r"\s++".join(re.escape(piece) for piece in _WHITESPACE.split(text))


def _split(text: str, pattern: re.Pattern[str]) -> tuple[bool, str]:
    """Whether TEXT is a reply, and the rest after its tags and reply prefixes, whitespace runs made single spaces."""
    # Removing one tag can join the pieces around it into another ("(ml (ml 1) 2)"); every pass removes digits.
    while (untagged := pattern.sub(" ", text)) != text:
        text = untagged
    reply = False
    forwards: list[str] = []
    position = 0
    while match := _PREFIX.match(text, position):
        if match["reply"]:
            reply = True
        else:
            forwards.append(match[0].strip())
        position = match.end()
    return reply, _WHITESPACE.sub(" ", " ".join([*forwards, text[position:]])).strip()


def _emit(folder: _Folder, rest: str, from_jis: bool) -> None:
    if not rest:
        return
    words = rest.split(" ")
    # Plain only when no reader could mistake it for an encoded-word and no word is too long to fold.
    if _PRINTABLE_ASCII.fullmatch(rest) and "=?" not in rest and all(len(word) < _MAX_LINE for word in words):
        for word in words:
            folder.add(word)
        return
    charset = _UTF8
    if from_jis:
        try:
            encoded_words.ESCAPED_BYTE.sub("", rest).encode("iso2022_jp")
            charset = _JIS
        except UnicodeEncodeError:  # e.g. ① or half-width kana, which ISO-2022-JP proper has no place for
            pass
    # Bytes that were not UTF-8 are passed on as they came, labelled unknown-8bit, rather than guessed at. The ASCII
    # next to them goes with them: their charset most likely shares ASCII, and Shift_JIS uses ASCII bytes in kanji.
    runs: list[tuple[Charset, list[str]]] = []
    for index, chunk in enumerate(_TEXT.split(rest)):
        chunk_charset = _UNKNOWN_8BIT if index % 2 == 0 and encoded_words.ESCAPED_BYTE.search(chunk) else charset
        if runs and runs[-1][0] is chunk_charset:
            runs[-1][1].append(chunk)
        elif chunk:
            runs.append((chunk_charset, [chunk]))
    for run_charset, chunks in runs:
        # header_encode_lines encodes each word separately and cuts only between characters.
        lengths = itertools.chain((min(folder.room(), _MAX_WORD),), itertools.repeat(_MAX_WORD))
        for encoded in run_charset.header_encode_lines("".join(chunks), lengths):
            if encoded is not None:  # None: not even one character fitted on the current line
                folder.add(encoded)


class _Folder:
    """Lays atoms out separated by one space, starting a continuation line when the next would overflow."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self._line = ""
        self._indent = len(_FIELD)

    def room(self) -> int:
        """The longest atom that still fits on the current line, after its separating space."""
        return _MAX_LINE - self._indent - len(self._line) - (1 if self._line else 0)

    def add(self, atom: str) -> None:
        if self._line and len(atom) > self.room():
            self._lines.append(self._line)
            self._line, self._indent = "", 1
        self._line = f"{self._line} {atom}" if self._line else atom

    def value(self) -> str:
        return "\r\n ".join([*self._lines, self._line])
