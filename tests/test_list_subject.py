"""lists/subject.py: every post gets one tag, one Re: at most, and a Subject each reader decodes back to the same text."""

from __future__ import annotations

import base64
import email
import email.policy
import re
from collections.abc import Callable
from email.header import Header, decode_header, make_header
from email.parser import BytesHeaderParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitaku.lists.subject import strip_tag, tag_subject

FORMAT = "[sota:%05d]"
TAG = "[sota:00013]"
ANY_TAG = re.compile(r"\[sota:\d+\]")
LINE = 76  # RFC 2047's limit for lines with encoded-words, within RFC 5322's 78
ENCODED_WORD = re.compile(r"=\?([^?]+)\?([bBqQ])\?([^?]*)\?=")

REPLY_PREFIXES = ["Re:", "RE:", "re:", "Re^2:", "Re[2]:", "Re2:", "AW:", "Aw:", "SV:", "Antw:", "Ｒｅ：", "返信:"]
FORWARD_PREFIXES = ["Fwd:", "Fw:", "FW:", "転送:"]


# --- helpers ----------------------------------------------------------------------------------------------------------


def b_word(text: str, charset: str, codec: str | None = None) -> str:
    octets = text.encode(codec or charset)
    return f"=?{charset}?B?{base64.b64encode(octets).decode('ascii')}?="


def q_word(text: str, charset: str = "UTF-8") -> str:
    encoded = "".join(
        chr(byte) if chr(byte).isascii() and chr(byte).isalnum() else "_" if byte == 0x20 else f"={byte:02X}"
        for byte in text.encode(charset)
    )
    return f"=?{charset}?Q?{encoded}?="


def parsed(field: bytes) -> str | Header:
    """The Subject as the list runner gets it: compat32, which gives a Header when the field has 8-bit bytes."""
    subject: str | Header = BytesHeaderParser().parsebytes(b"Subject: " + field + b"\r\n\r\nbody\r\n")["Subject"]
    return subject


def raw_str(field: bytes) -> str:
    """The same field as the plain str compat32 stores, 8-bit bytes as surrogates and folds kept."""
    return dict(BytesHeaderParser().parsebytes(b"Subject: " + field + b"\r\n\r\nbody\r\n").raw_items())["Subject"]


def decoded(value: str) -> str:
    return str(make_header(decode_header(value))).replace("\r\n", "")


def decoded_by_default_policy(value: str) -> str:
    message = email.message_from_bytes(f"Subject: {value}\r\n\r\nbody\r\n".encode("ascii"), policy=email.policy.default)
    return str(message["Subject"])


def well_formed(value: str) -> list[tuple[str, bytes]]:
    """Asserts the shape of a tagged Subject; returns its encoded-words as (charset, octets)."""
    assert value.isascii()
    assert "\n" not in value.replace("\r\n ", "")
    for line in f"Subject: {value}".split("\r\n"):
        assert len(line) <= LINE, line
    words = []
    for match in ENCODED_WORD.finditer(value):
        assert len(match[0]) <= 75
        assert match[2] == "b"
        octets = base64.b64decode(match[3])
        charset = match[1]
        # Each word stands on its own: no character and no ISO-2022-JP escape sequence is cut across two.
        if charset == "iso-2022-jp":
            octets.decode("iso2022_jp")
            escapes = re.findall(rb"\x1b[$(][@BJI]", octets)
            assert not escapes or escapes[-1] == b"\x1b(B"
        elif charset == "utf-8":
            octets.decode("utf-8")
        else:
            assert charset == "unknown-8bit"
        words.append((charset, octets))
    return words


def check(value: str, expected: str) -> list[tuple[str, bytes]]:
    words = well_formed(value)
    assert decoded(value) == expected
    assert decoded_by_default_policy(value) == expected
    return words


# --- decoding what MUAs send ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "expected", "charset"),
    [
        (b_word("会議のお知らせ", "ISO-2022-JP"), "[sota:00013] 会議のお知らせ", "iso-2022-jp"),
        (b_word("Re: 会議のお知らせ", "iso-2022-jp"), "[sota:00013] Re: 会議のお知らせ", "iso-2022-jp"),
        (b_word("Re: 会議～①", "Shift_JIS", "cp932"), "[sota:00013] Re: 会議～①", "utf-8"),
        (b_word("打ち合わせ", "Shift_JIS"), "[sota:00013] 打ち合わせ", "utf-8"),
        (b_word("Ünïcödé 会議 😀", "UTF-8"), "[sota:00013] Ünïcödé 会議 😀", "utf-8"),
        (q_word("Re: Grüße aus 東京"), "[sota:00013] Re: Grüße aus 東京", "utf-8"),
        (q_word("café", "ISO-8859-1"), "[sota:00013] café", "utf-8"),
        # The MUA encoded the old tag along with the text.
        (b_word("Re: [sota:00012] 会議", "ISO-2022-JP"), "[sota:00013] Re: 会議", "iso-2022-jp"),
        (b_word("Re: [sota:00012] Re: 会議", "UTF-8"), "[sota:00013] Re: 会議", "utf-8"),
        # Mixed plain text and encoded-words.
        (
            f"Re: [sota:00012] Meeting {b_word('会議', 'ISO-2022-JP')} tomorrow",
            "[sota:00013] Re: Meeting 会議 tomorrow",
            "iso-2022-jp",
        ),
        (f"Re: {b_word('会議', 'UTF-8')} {q_word('と')} x", "[sota:00013] Re: 会議と x", "utf-8"),
        # ISO-2022-JP text is re-encoded as UTF-8 when it cannot go back as ISO-2022-JP.
        (f"{b_word('会議', 'ISO-2022-JP')} {b_word('😀', 'UTF-8')}", "[sota:00013] 会議😀", "utf-8"),
        # A language tag (RFC 2231) and an unknown label.
        ("=?ISO-2022-JP*ja?B?GyRCMnE1RBsoQg==?=", "[sota:00013] 会議", "iso-2022-jp"),
        (b_word("会議", "x-unknown", "utf-8"), "[sota:00013] 会議", "utf-8"),
    ],
)
def test_encoded_subjects_decode_to_the_tagged_text(field: str, expected: str, charset: str) -> None:
    value = tag_subject(parsed(field.encode("ascii")), FORMAT, 13)
    words = check(value, expected)
    assert words
    assert {word_charset for word_charset, _ in words} == {charset}
    # The tag and Re: stay outside the encoded-words, where filters and MUAs read them without decoding.
    plain = f"{TAG} Re: " if expected.startswith(f"{TAG} Re: ") else f"{TAG} "
    assert value.startswith(plain + "=?")


def test_a_long_japanese_subject_folded_over_lines_comes_back_whole_and_refolded() -> None:
    text = "来週の定例会議の議題について、資料の事前共有と出席者の確認をお願いいたします（第三回）"
    folded = Header("Re: [sota:00012] " + text, "iso-2022-jp", header_name="Subject").encode(linesep="\r\n")
    assert folded.count("\r\n ") >= 2
    for field in (folded, folded.replace("\r\n ", "\n\t"), folded.replace("\r\n", "\r\n\t")):
        value = tag_subject(parsed(field.encode("ascii")), FORMAT, 13)
        words = check(value, f"{TAG} Re: {text}")
        assert value.count("\r\n ") >= 2
        assert {charset for charset, _ in words} == {"iso-2022-jp"}
        assert value.startswith(f"{TAG} Re: =?iso-2022-jp?b?")


def test_a_character_split_across_two_encoded_words_is_rejoined() -> None:
    octets = "会議".encode()
    head, tail = (base64.b64encode(part).decode() for part in (octets[:4], octets[4:]))
    field = f"=?UTF-8?B?{head}?=\r\n =?UTF-8?B?{tail}?="
    check(tag_subject(parsed(field.encode()), FORMAT, 13), f"{TAG} 会議")


def test_only_linear_whitespace_between_encoded_words_is_dropped() -> None:
    field = f"{b_word('会', 'UTF-8')} \t {b_word('議', 'UTF-8')}\u3000{b_word('室', 'UTF-8')}"
    check(tag_subject(field, FORMAT, 13), f"{TAG} 会議\u3000室")


def test_iso_2022_jp_with_windows_characters_is_read_and_sent_on_as_utf8() -> None:
    # ① is NEC row 13 and ｱ half-width kana: Outlook sends both inside "ISO-2022-JP" (CP50220).
    octets = b"\x1b$B-!2q5D\x1b(I1\x1b(B"
    field = f"=?ISO-2022-JP?B?{base64.b64encode(octets).decode()}?="
    words = check(tag_subject(parsed(field.encode()), FORMAT, 13), f"{TAG} ①会議ｱ")
    assert {charset for charset, _ in words} == {"utf-8"}


def test_unencoded_iso_2022_jp_from_old_muas_is_read() -> None:
    field = b"Re: [sota:00012] " + "会議".encode("iso2022_jp")
    words = check(tag_subject(parsed(field), FORMAT, 13), f"{TAG} Re: 会議")
    assert {charset for charset, _ in words} == {"iso-2022-jp"}


@pytest.mark.parametrize("take", [parsed, raw_str])
def test_raw_utf8_bytes_are_read_as_utf8(take: Callable[[bytes], str | Header]) -> None:
    field = "Re: [sota:00012] 会議\r\n\tです ".encode() + b_word("！", "UTF-8").encode()
    # The space before an encoded-word is text (RFC 2047 6.2).
    check(tag_subject(take(field), FORMAT, 13), f"{TAG} Re: 会議 です ！")


def test_raw_bytes_that_are_not_utf8_are_passed_on_unchanged() -> None:
    sjis = "会議".encode("cp932")
    assert sjis == b"\x89\xef\x8bc"  # the ASCII "c" is half of a character: it goes with the bytes
    value = tag_subject(parsed(b"Re: [sota:00012] " + sjis + b" " + b_word("です", "UTF-8").encode()), FORMAT, 13)
    words = well_formed(value)
    assert value.startswith(f"{TAG} Re: =?unknown-8bit?b?")
    assert words == [("unknown-8bit", sjis + b" "), ("utf-8", "です".encode())]
    assert decoded(value) == f"{TAG} Re: \ufffd\ufffd\ufffdc です"


def test_an_undecodable_encoded_word_stays_as_text() -> None:
    check(tag_subject("Re: =?utf-8?B?x?= hi", FORMAT, 13), f"{TAG} Re: =?utf-8?B?x?= hi")


# --- tags and prefixes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Re: [sota:00012] Hello", "[sota:00013] Re: Hello"),
        ("[sota:00012] Hello", "[sota:00013] Hello"),
        ("Re: Re^2: [sota:00012] Re: Hello", "[sota:00013] Re: Hello"),
        ("[sota:00012] [sota:00011] Re: [sota:7] [sota:00010]Hello", "[sota:00013] Re: Hello"),
        ("Re:[sota:00012]Re:Hello", "[sota:00013] Re: Hello"),
        ("Hello [sota:00012] world [sota:00011]", "[sota:00013] Hello world"),
        ("Hello", "[sota:00013] Hello"),
        ("  Hello \t  world  ", "[sota:00013] Hello world"),
        ("[sota:00012]", "[sota:00013]"),
        ("Re: [sota:00012]", "[sota:00013] Re:"),
        ("Re:", "[sota:00013] Re:"),
        ("Fwd: Re: [sota:00012] Hello", "[sota:00013] Re: Fwd: Hello"),
        ("Re: FW: Fw:[sota:00012] Re: Hello", "[sota:00013] Re: FW: Fw: Hello"),
        ("Fwd: [sota:00012] Hello", "[sota:00013] Fwd: Hello"),
        ("[sota] Hello [sota:x]", "[sota:00013] [sota] Hello [sota:x]"),
        ("[other:00012] Hello", "[sota:00013] [other:00012] Hello"),
        ("Regarding: the Re: in the middle", "[sota:00013] Regarding: the Re: in the middle"),
        ("Report", "[sota:00013] Report"),
    ],
)
def test_tags_and_reply_prefixes(raw: str, expected: str) -> None:
    value = tag_subject(raw, FORMAT, 13)
    check(value, expected)
    assert value == expected  # ASCII goes out as it is


@pytest.mark.parametrize("prefix", REPLY_PREFIXES)
def test_every_reply_prefix_becomes_one_plain_re(prefix: str) -> None:
    for raw in (f"{prefix} [sota:00012] Hello", f"{prefix}{prefix} {prefix}[sota:00012] {prefix} Hello"):
        field = raw if raw.isascii() else b_word(raw, "UTF-8")
        value = tag_subject(parsed(field.encode("ascii")), FORMAT, 13)
        check(value, f"{TAG} Re: Hello")
        assert value == f"{TAG} Re: Hello"


def test_all_reply_prefixes_interleaved_with_old_tags() -> None:
    raw = " ".join(f"{prefix} [sota:{n:05d}]" for n, prefix in enumerate(REPLY_PREFIXES)) + " 会議"
    value = tag_subject(parsed(b_word(raw, "ISO-2022-JP").encode()), FORMAT, 13)
    check(value, f"{TAG} Re: 会議")


@pytest.mark.parametrize("prefix", FORWARD_PREFIXES)
def test_forward_prefixes_are_kept_as_written_after_re(prefix: str) -> None:
    raw = f"Re: {prefix} [sota:00012] Re: 会議"
    check(tag_subject(b_word(raw, "UTF-8"), FORMAT, 13), f"{TAG} Re: {prefix} 会議")
    check(tag_subject(b_word(f"{prefix} Re: 会議", "UTF-8"), FORMAT, 13), f"{TAG} Re: {prefix} 会議")


@pytest.mark.parametrize("raw", [None, "", "   ", "\r\n ", "[sota:00012]", "[sota:00012] [sota:00011]"])
def test_an_empty_subject_is_the_tag_alone(raw: str | None) -> None:
    value = tag_subject(raw, FORMAT, 13)
    assert value == TAG
    check(value, TAG)


@pytest.mark.parametrize(
    ("tag_format", "raw", "expected"),
    [
        ("[sota:%d]", "Re: [sota:00012] [sota:12] Hello", "[sota:13] Re: Hello"),
        ("[sota:%05d]", "Re: [sota:12] [sota:0000000012] Hello", "[sota:00013] Re: Hello"),
        ("(ml %d)", "Re: (ml 12) Re: (ml  11) Hello", "(ml 13) Re: Hello"),
        ("(ml %5d)", "Re: (ml    12) (ml 12) Hello", "(ml    13) Re: Hello"),
        ("sota %d:", "Re: sota 12: Hello", "sota 13: Re: Hello"),
        ("[100%% %d]", "Re: [100% 12] Hello", "[100% 13] Re: Hello"),
        ("(a+b)*[c|d]$.%d^\\", "Re: (a+b)*[c|d]$.12^\\ Hello", "(a+b)*[c|d]$.13^\\ Re: Hello"),
        # With the metacharacters escaped, text that only matches them unescaped is left alone.
        ("(a+b)*[c|d]$.%d^\\", "(aab)[c]$x12^\\ Hello", "(a+b)*[c|d]$.13^\\ (aab)[c]$x12^\\ Hello"),
        # Removing one tag can make another of the parts around it.
        ("(ml %d)", "(ml (ml 1) 2) Hello", "(ml 13) Hello"),
    ],
)
def test_tag_formats(tag_format: str, raw: str, expected: str) -> None:
    value = tag_subject(raw, tag_format, 13)
    check(value, expected)
    assert value == expected


@pytest.mark.parametrize("tag_format", ["[sota]", "[sota:%d:%d]", "[sota:%s]", "[sota:%-5d]", "[会議:%d]", " [x:%d]"])
def test_unusable_tag_formats_are_refused(tag_format: str) -> None:
    with pytest.raises(ValueError):
        tag_subject("Hello", tag_format, 13)
    with pytest.raises(ValueError):
        strip_tag("Hello", tag_format)


def test_a_negative_number_is_refused() -> None:
    with pytest.raises(ValueError):
        tag_subject("Hello", FORMAT, -1)


def test_strip_tag_is_what_follows_the_tag() -> None:
    assert strip_tag("Re: 返信: [sota:00012] 転送: Re: 会議 [sota:3]", FORMAT) == "Re: 転送: 会議"
    assert strip_tag("[sota:00012]", FORMAT) == ""
    assert strip_tag("会議", FORMAT) == "会議"


# --- folding ----------------------------------------------------------------------------------------------------------


def test_long_ascii_is_folded_at_spaces_and_stays_plain() -> None:
    text = " ".join(f"word{n}" for n in range(60))
    value = tag_subject(f"Re: [sota:00012] {text}", FORMAT, 13)
    check(value, f"{TAG} Re: {text}")
    assert "=?" not in value
    assert value.count("\r\n ") >= 4


def test_an_ascii_word_too_long_to_fold_is_encoded() -> None:
    text = "https://example.com/" + "x" * 100 + " ok"
    value = tag_subject(text, FORMAT, 13)
    check(value, f"{TAG} {text}")
    assert value.startswith(f"{TAG} =?utf-8?b?")


def test_text_that_looks_like_an_encoded_word_is_encoded_so_it_reads_the_same() -> None:
    text = "=?utf-8?q?not_a_word?="
    value = tag_subject(b_word(text, "UTF-8"), FORMAT, 13)
    check(value, f"{TAG} {text}")


def test_a_long_tag_pushes_the_text_to_the_next_line() -> None:
    tag_format = "[" + "list-name-" * 5 + "%05d]"
    value = tag_subject(b_word("会議" * 40, "ISO-2022-JP"), tag_format, 13)
    check(value, f"{tag_format % 13} {'会議' * 40}")
    assert value.startswith(f"{tag_format % 13}\r\n =?iso-2022-jp?b?")


# --- properties -------------------------------------------------------------------------------------------------------

FRAGMENTS = st.sampled_from(
    [
        *REPLY_PREFIXES,
        *FORWARD_PREFIXES,
        "[sota:00012]",
        "[sota:7]",
        "[sota:",
        "00012]",
        "会議",
        "のお知らせ",
        "Hello",
        " ",
        "  ",
        "\t",
        "\u3000",
        "①",
        "ｱ",
        "😀",
        "=?",
        "?=",
        "x" * 80,
    ]
)
TEXTS = st.one_of(st.text(), st.lists(st.one_of(FRAGMENTS, st.text(max_size=4)), max_size=16).map("".join))
FORMATS = st.sampled_from([("[sota:%05d]", r"\[sota:\d+\]"), ("(ml %d)", r"\(ml\s+\d+\)")])


@st.composite
def fields(draw: st.DrawFn, text: str) -> bytes:
    """TEXT as an MUA might send it: plain, 8-bit, or in encoded-words of some charset, folded between them."""
    how = draw(st.sampled_from(["plain", "raw utf-8", "utf-8 B", "utf-8 Q", "iso-2022-jp", "shift_jis"]))
    if how == "plain" and re.fullmatch(r"[ -~]*", text) and "=?" not in text:
        return text.encode("ascii")
    # 8-bit in the header itself; control characters would end the field.
    if how == "raw utf-8" and not re.search(r"[\x00-\x1f\x7f-\x9f]|=\?", text):
        return text.encode("utf-8")
    size = draw(st.integers(1, 20))
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    if how in ("iso-2022-jp", "shift_jis"):
        codec = "iso2022_jp" if how == "iso-2022-jp" else "cp932"
        try:
            if text.encode(codec).decode(codec) == text:
                return " ".join(b_word(piece, how, codec) for piece in pieces).encode("ascii")
        except UnicodeError:
            pass
    separator = draw(st.sampled_from([" ", "\r\n ", "\n\t", "  "]))
    encode = q_word if how == "utf-8 Q" else lambda piece: b_word(piece, "UTF-8")
    return separator.join(encode(piece) for piece in pieces).encode("ascii")


@settings(max_examples=300, deadline=None)
@given(text=TEXTS, data=st.data(), formats=FORMATS, first=st.integers(0, 10**6), second=st.integers(0, 10**6))
def test_tagging_decodes_to_tag_and_stripped_text_and_never_stacks(
    text: str, data: st.DataObject, formats: tuple[str, str], first: int, second: int
) -> None:
    tag_format, any_tag = formats
    field = data.draw(fields(text))
    rest = strip_tag(text, tag_format)
    once = tag_subject(parsed(field), tag_format, first)
    check(once, " ".join(part for part in (tag_format % first, rest) if part))
    twice = tag_subject(parsed(once.encode("ascii")), tag_format, second)
    expected = " ".join(part for part in (tag_format % second, rest) if part)
    check(twice, expected)
    assert len(re.findall(any_tag, decoded(twice))) == 1
    assert strip_tag(expected, tag_format) == rest
