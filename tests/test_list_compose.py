"""lists/compose.py and the one-click token helpers of lists/tokens.py: a post as the list sends it.

Everything here is pure: posts are bytes, the list is a MailingList built directly, and what comes out is read
the way a mail program reads it (the stdlib parser with the default policy) and, where byte for byte matters,
as raw bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import hashlib
import hmac
import re
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import getaddresses

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from jitaku.lists.compose import Edition, breaks_signature, compose, list_id, unsubscribe_fields
from jitaku.lists.tokens import member_for_token, one_click_token
from jitaku.mail.headers import Parsed, split_fields
from jitaku.store.lists import MailingList, Member

WEB = "https://mail.example.jp"
SECRET = "0123456789abcdef" * 4
OTHER_SECRET = "fedcba9876543210" * 4

LIST = MailingList(
    id=1,
    address="sota@lists.example.jp",
    name="Sota Project",
    subject_tag="[sota:%05d]",
    reply_to="sender",
    dmarc="munge",
    owners=("owner@example.jp",),
    last_number=12,
    bounce_threshold=5.0,
    digest_last_number=0,
    digest_sent_at=0.0,
    secret=SECRET,
    archive="none",  # the exact bytes below are a list's without an archive; ARCHIVED's tests add its fields
)
ARCHIVED = dataclasses.replace(LIST, archive="public")

# What the list adds to post 13 of LIST, exactly.
LIST_BLOCK = (
    b"List-Id: Sota Project <sota.lists.example.jp>\r\n"
    b"List-Post: <mailto:sota@lists.example.jp>\r\n"
    b"List-Help: <mailto:sota-request@lists.example.jp?subject=help>\r\n"
    b"List-Subscribe: <mailto:sota-request@lists.example.jp?subject=subscribe>,\r\n"
    b" <https://mail.example.jp/lists/sota@lists.example.jp/subscribe>\r\n"
    b"List-Owner: <mailto:sota-owner@lists.example.jp>\r\n"
    b"Precedence: list\r\n"
    b"X-ML-Name: Sota Project\r\n"
    b"X-Mail-Count: 13\r\n"
    b"X-Loop: sota@lists.example.jp\r\n"
)

# 山田太郎 and 会議の件 as ISO-2022-JP encoded-words, the way Japanese MUAs send them.
JIS_NAME = "=?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?="
JIS_SUBJECT = "=?ISO-2022-JP?B?GyRCMnE1RCRON28bKEI=?="
# 鈴木 一郎 and こんにちは as UTF-8 encoded-words.
UTF8_NAME = "=?UTF-8?B?6Yi05pyoIOS4gOmDjg==?="
UTF8_SUBJECT = "=?UTF-8?B?44GT44KT44Gr44Gh44Gv?="
# 日本語の件名 as a Shift_JIS encoded-word.
SJIS_SUBJECT = "=?Shift_JIS?B?k/qWe4zqgsyMj5a8?="


def make_list(**changes: object) -> MailingList:
    return dataclasses.replace(LIST, **changes)


def post_of(*fields: str | bytes, body: bytes = b"Hello, list.\r\n") -> bytes:
    """A post from header fields written without their CRLF (continuation lines joined with CRLF inside)."""
    head = b"".join((f.encode() if isinstance(f, str) else f) + b"\r\n" for f in fields)
    return head + b"\r\n" + body


BASIC = post_of(
    "Return-Path: <taro@example.co.jp>",
    "From: Taro Yamada <taro@example.co.jp>",
    "To: sota@lists.example.jp",
    "Subject: Meeting on Friday",
    "Date: Fri, 05 Jan 2024 10:00:00 +0900",
    "Message-ID: <20240105.1@example.co.jp>",
)


def run(
    post: bytes, rewrite: str = "none", mailing_list: MailingList = LIST, number: int = 13, web_url: str = WEB
) -> Edition:
    return compose(Parsed.of(post), mailing_list, number, rewrite, web_url)


def breaks(post: bytes, from_domain: str) -> bool:
    return breaks_signature(split_fields(post)[0], from_domain)


def parse(message: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(message, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def head_of(message: bytes) -> bytes:
    """The header section with the CRLF of its last field, without the blank line."""
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def body_of(message: bytes) -> bytes:
    return message[message.index(b"\r\n\r\n") + 4 :]


def raw_fields(message: bytes) -> list[bytes]:
    """Each header field with its continuation lines and CRLFs, as it is on the wire."""
    fields: list[bytes] = []
    for line in head_of(message).split(b"\r\n")[:-1]:
        if line[:1] in (b" ", b"\t"):
            fields[-1] += line + b"\r\n"
        else:
            fields.append(line + b"\r\n")
    return fields


def raw_named(message: bytes, name: str) -> list[bytes]:
    return [f for f in raw_fields(message) if f.split(b":", 1)[0].strip().lower() == name.lower().encode()]


def addresses(value: object) -> list[tuple[str, str]]:
    return getaddresses([str(value)])


def encoded_word_charsets(field: bytes) -> set[str]:
    return {m.lower() for m in re.findall(rb"=\?([^?]+)\?[bBqQ]\?", field)} if field else set()


# --- the list's own header fields -------------------------------------------------------------------------------------


def test_plain_post_exact_bytes() -> None:
    """rewrite none, reply_to sender: only Subject changes in place, Return-Path goes, the list block is appended."""
    edition = run(BASIC)
    assert edition.message == (
        b"From: Taro Yamada <taro@example.co.jp>\r\n"
        b"To: sota@lists.example.jp\r\n"
        b"Subject: [sota:00013] Meeting on Friday\r\n"
        b"Date: Fri, 05 Jan 2024 10:00:00 +0900\r\n"
        b"Message-ID: <20240105.1@example.co.jp>\r\n" + LIST_BLOCK + b"\r\nHello, list.\r\n"
    )
    assert edition.author == "Taro Yamada <taro@example.co.jp>"
    assert edition.subject == "Meeting on Friday"


def test_list_fields_as_a_mail_program_reads_them() -> None:
    message = parse(run(BASIC).message)
    assert message["List-Id"] == "Sota Project <sota.lists.example.jp>"
    assert message["List-Post"] == "<mailto:sota@lists.example.jp>"
    assert message["List-Help"] == "<mailto:sota-request@lists.example.jp?subject=help>"
    assert message["List-Subscribe"] == (
        "<mailto:sota-request@lists.example.jp?subject=subscribe>,"
        " <https://mail.example.jp/lists/sota@lists.example.jp/subscribe>"
    )
    assert message["List-Archive"] is None  # archive = "none": no page to point at
    assert message["Archived-At"] is None
    assert message["List-Owner"] == "<mailto:sota-owner@lists.example.jp>"
    assert message["Precedence"] == "list"
    assert message["X-ML-Name"] == "Sota Project"
    assert message["X-Mail-Count"] == "13"
    assert message["X-Loop"] == "sota@lists.example.jp"
    assert message["Return-Path"] is None
    assert message["List-Unsubscribe"] is None  # each member's own, added later
    assert message.get_content() == "Hello, list.\r\n"


def test_an_archived_lists_copies_name_the_archive_and_the_posts_page() -> None:
    """RFC 2369 List-Archive and RFC 5064 Archived-At, the page named by HyperKitty's hash of the Message-ID (the
    value Mailman's own documentation gives for this Message-ID)."""
    post = post_of(
        "From: Taro Yamada <taro@example.co.jp>",
        "Subject: Meeting",
        "Message-ID: <87myycy5eh.fsf@uwakimon.sk.tsukuba.ac.jp>",
        "List-Archive: <https://example.net/archive>",
        "Archived-At: <https://example.net/archive/1>",
    )
    for rewrite in ("none", "munge", "wrap"):
        edition = run(post, rewrite, mailing_list=ARCHIVED)
        message = parse(edition.message)
        assert edition.message_id == "87myycy5eh.fsf@uwakimon.sk.tsukuba.ac.jp"
        assert edition.message_hash == "JJIGKPKB6CVDX6B2CUG4IHAJRIQIOUTP"
        assert message.get_all("List-Archive") == ["<https://mail.example.jp/lists/sota@lists.example.jp/archive/>"]
        assert message.get_all("Archived-At") == [
            "<https://mail.example.jp/lists/sota@lists.example.jp/archive/msg/JJIGKPKB6CVDX6B2CUG4IHAJRIQIOUTP/>"
        ]
        assert message.get_all("Message-ID") == ["<87myycy5eh.fsf@uwakimon.sk.tsukuba.ac.jp>"]


def test_a_post_without_message_id_gets_the_lists_and_its_page_is_named_by_it() -> None:
    edition = run(post_of("From: taro@example.co.jp", "Subject: no id"), mailing_list=ARCHIVED)
    message = parse(edition.message)
    assert edition.message_id.endswith("@lists.example.jp")
    assert message["Message-ID"] == f"<{edition.message_id}>"
    assert str(message["Archived-At"]).endswith(f"/archive/msg/{edition.message_hash}/>")


def test_a_reply_names_what_it_answers_nearest_first() -> None:
    post = post_of(
        "From: taro@example.co.jp",
        "Subject: Re: Meeting",
        "Message-ID: <3@example.co.jp>",
        "In-Reply-To: <2@example.co.jp>",
        "References: <1@example.co.jp>\r\n <2@example.co.jp> <x@y>",
    )
    assert run(post).answers == ("2@example.co.jp", "x@y", "1@example.co.jp")


def test_list_id_is_local_part_dot_domain() -> None:
    assert list_id(LIST) == "sota.lists.example.jp"
    assert list_id(make_list(address="dev-team@example.org")) == "dev-team.example.org"


@pytest.mark.parametrize("number", [1, 13, 99999, 123456])
def test_number_goes_into_tag_and_x_mail_count(number: int) -> None:
    message = parse(run(BASIC, number=number).message)
    assert message["Subject"] == f"[sota:{number:05d}] Meeting on Friday"
    assert message["X-Mail-Count"] == str(number)


def test_list_name_with_specials_is_quoted() -> None:
    edition = run(BASIC, mailing_list=make_list(name="Sota (dev), Tokyo"))
    message = parse(edition.message)
    assert raw_named(edition.message, "List-Id") == [b'List-Id: "Sota (dev), Tokyo" <sota.lists.example.jp>\r\n']
    assert message["List-Id"] == '"Sota (dev), Tokyo" <sota.lists.example.jp>'


def test_japanese_list_name_is_encoded_and_readable() -> None:
    edition = run(BASIC, mailing_list=make_list(name="開発者の会"))
    assert edition.message.split(b"\r\n\r\n")[0].isascii()
    message = parse(edition.message)
    assert str(message["X-ML-Name"]) == "開発者の会"
    assert str(message["List-Id"]).endswith(" <sota.lists.example.jp>")
    assert encoded_word_charsets(raw_named(edition.message, "List-Id")[0]) == {b"utf-8"}


def test_existing_list_fields_are_replaced_never_doubled() -> None:
    post = post_of(
        "Return-Path: <taro@example.co.jp>",
        "From: Taro Yamada <taro@example.co.jp>",
        "To: sota@lists.example.jp",
        "Subject: [other:00007] Re: forwarded from another list",
        "LIST-ID: Other List <other.example.net>",
        "List-Post: <mailto:other@example.net>",
        "list-help: <mailto:other-request@example.net?subject=help>",
        "List-Subscribe: <mailto:other-request@example.net?subject=subscribe>,\r\n <https://example.net/subscribe>",
        "List-Unsubscribe: <mailto:other-request@example.net?subject=unsubscribe>,\r\n\t<https://example.net/u/xyz>",
        "List-Unsubscribe-Post: List-Unsubscribe=One-Click",
        "List-Archive: <https://example.net/archive>",
        "List-Owner: <mailto:other-owner@example.net>",
        "Precedence: bulk",
        "X-ML-Name: other",
        "X-Mail-Count: 7",
        "x-loop: other@example.net",
        "Subject: a second subject",
        "Message-ID: <dup@example.co.jp>",
    )
    for rewrite in ("none", "munge", "wrap"):
        edition = run(post, rewrite)
        head = head_of(edition.message)
        assert head.endswith(LIST_BLOCK), rewrite
        for name in ("List-Id", "List-Post", "List-Help", "List-Subscribe", "List-Owner"):
            assert len(raw_named(edition.message, name)) == 1, (rewrite, name)
        for name in ("Precedence", "X-ML-Name", "X-Mail-Count", "Subject", "From"):
            assert len(raw_named(edition.message, name)) == 1, (rewrite, name)
        for name in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Archive", "Return-Path"):
            assert raw_named(edition.message, name) == [], (rewrite, name)
        # another list's X-Loop stays (it stops two lists that are members of each other); ours is added
        assert b"example.net" not in head.replace(b"x-loop: other@example.net\r\n", b""), rewrite
        message = parse(edition.message)
        assert message.get_all("Precedence") == ["list"]
        assert message.get_all("X-Loop") == ["other@example.net", "sota@lists.example.jp"]
        assert message.get_all("Subject") == ["[sota:00013] [other:00007] Re: forwarded from another list"]


def test_our_own_older_tag_is_not_stacked() -> None:
    post = post_of("From: taro@example.co.jp", "Subject: [sota:00012] Re: Re: Meeting on Friday")
    edition = run(post)
    assert raw_named(edition.message, "Subject") == [b"Subject: [sota:00013] Re: Meeting on Friday\r\n"]
    assert edition.subject == "Re: Meeting on Friday"


def test_post_without_subject_gets_one() -> None:
    edition = run(post_of("From: taro@example.co.jp", "To: sota@lists.example.jp"))
    assert raw_named(edition.message, "Subject") == [b"Subject: [sota:00013]\r\n"]
    assert parse(edition.message)["Subject"] == "[sota:00013]"
    assert edition.subject == ""


def test_subject_stays_where_it_was() -> None:
    edition = run(BASIC)
    names = [f.split(b":", 1)[0] for f in raw_fields(edition.message)]
    assert names[:5] == [b"From", b"To", b"Subject", b"Date", b"Message-ID"]


# --- Japanese subjects ------------------------------------------------------------------------------------------------


def test_iso_2022_jp_subject_stays_iso_2022_jp() -> None:
    edition = run(post_of(f"From: {JIS_NAME} <taro@example.co.jp>", f"Subject: {JIS_SUBJECT}"))
    subject = raw_named(edition.message, "Subject")
    assert subject == [b"Subject: [sota:00013] =?iso-2022-jp?b?GyRCMnE1RCRON28bKEI=?=\r\n"]
    assert parse(edition.message)["Subject"] == "[sota:00013] 会議の件"
    assert edition.subject == "会議の件"
    assert edition.author == "山田太郎 <taro@example.co.jp>"


def test_iso_2022_jp_reply_keeps_one_re_and_one_tag() -> None:
    post = post_of("From: taro@example.co.jp", f"Subject: Re: [sota:00012] Re: {JIS_SUBJECT}")
    edition = run(post)
    subject = raw_named(edition.message, "Subject")[0]
    assert subject.startswith(b"Subject: [sota:00013] Re: =?")
    assert encoded_word_charsets(subject) == {b"iso-2022-jp"}
    assert parse(edition.message)["Subject"] == "[sota:00013] Re: 会議の件"
    assert edition.subject == "Re: 会議の件"


def test_utf8_subject_goes_out_as_utf8() -> None:
    edition = run(post_of(f"From: {UTF8_NAME} <ichiro@example.net>", f"Subject: {UTF8_SUBJECT}"))
    subject = raw_named(edition.message, "Subject")[0]
    assert subject.startswith(b"Subject: [sota:00013] =?")
    assert encoded_word_charsets(subject) == {b"utf-8"}
    assert parse(edition.message)["Subject"] == "[sota:00013] こんにちは"
    assert edition.subject == "こんにちは"
    assert edition.author == "鈴木 一郎 <ichiro@example.net>"


def test_shift_jis_encoded_subject_is_readable() -> None:
    edition = run(post_of("From: hanako@example.jp", f"Subject: {SJIS_SUBJECT}"))
    subject = raw_named(edition.message, "Subject")[0]
    assert subject.isascii()
    assert encoded_word_charsets(subject) == {b"utf-8"}
    assert parse(edition.message)["Subject"] == "[sota:00013] 日本語の件名"
    assert edition.subject == "日本語の件名"


def test_raw_shift_jis_subject_bytes_are_passed_on_unchanged() -> None:
    sjis = "日本語".encode("shift_jis")
    edition = run(post_of("From: hanako@example.jp", b"Subject: " + sjis))
    subject = raw_named(edition.message, "Subject")[0]
    assert subject.isascii()
    match = re.fullmatch(rb"Subject: \[sota:00013\] =\?unknown-8bit\?b\?([A-Za-z0-9+/=]+)\?=\r\n", subject)
    assert match is not None, subject
    assert base64.b64decode(match[1]) == sjis


def test_long_japanese_subject_is_folded_within_76_columns() -> None:
    long_subject = "=?UTF-8?B?" + base64.b64encode(("長い件名です" * 8).encode()).decode() + "?="
    edition = run(post_of("From: hanako@example.jp", f"Subject: {long_subject}"))
    subject = raw_named(edition.message, "Subject")[0]
    lines = subject.split(b"\r\n")[:-1]
    assert len(lines) > 1
    assert all(len(line) <= 76 for line in lines)
    assert parse(edition.message)["Subject"] == "[sota:00013] " + "長い件名です" * 8


# --- fields the list does not change ----------------------------------------------------------------------------------

UNTOUCHED = (
    b"Received: from mx.example.co.jp (mx.example.co.jp [192.0.2.1])\r\n"
    b"\tby mail.example.jp with ESMTPS id 4T2x; Fri, 05 Jan 2024 10:00:01 +0900\r\n",
    b"To: Sota Project <sota@lists.example.jp>,\r\n   =?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?=\r\n <taro@example.co.jp>\r\n",
    b"Date: Fri, 05 Jan 2024 10:00:00 +0900\r\n",
    b"Message-ID: <20240105.2@example.co.jp>\r\n",
    b"In-Reply-To: <20240104.9@example.co.jp>\r\n",
    b"References: <20240103.1@example.co.jp>\r\n <20240104.9@example.co.jp>\r\n",
    b"X-Mailer: =?UTF-8?B?44Oh44O844Op44O8?=  v1.0  \r\n",
    b"MIME-Version: 1.0\r\n",
    b"Content-Type: text/plain; charset=ISO-2022-JP\r\n",
    b"Content-Transfer-Encoding: 7bit\r\n",
)


def _untouched_post(*extra: bytes) -> bytes:
    subject = f"Subject: {JIS_SUBJECT}\r\n".encode()
    from_ = f"From: {JIS_NAME}\r\n <taro@example.co.jp>\r\n".encode()
    body = "本文です。\r\n\r\n-- \r\n山田\r\n".encode("iso2022_jp")
    return b"".join([UNTOUCHED[0], from_, *UNTOUCHED[1:3], subject, *UNTOUCHED[3:], *extra]) + b"\r\n" + body


@pytest.mark.parametrize("rewrite", ["none", "munge"])
@pytest.mark.parametrize("reply_to", ["sender", "none", "list"])
def test_other_fields_and_body_pass_byte_for_byte(rewrite: str, reply_to: str) -> None:
    post = _untouched_post()
    edition = run(post, rewrite, make_list(reply_to=reply_to))
    fields = raw_fields(edition.message)
    kept = [f for f in fields if f in UNTOUCHED]
    assert kept == list(UNTOUCHED)  # same bytes (folding, odd spacing), same order
    assert body_of(edition.message) == body_of(post)
    assert parse(edition.message).get_content() == "本文です。\r\n\r\n-- \r\n山田\r\n"


def test_rewrite_none_keeps_from_byte_for_byte() -> None:
    post = _untouched_post()
    for reply_to in ("sender", "none", "list"):
        edition = run(post, "none", make_list(reply_to=reply_to))
        assert raw_named(edition.message, "From") == [f"From: {JIS_NAME}\r\n <taro@example.co.jp>\r\n".encode()]
        assert addresses(parse(edition.message)["From"]) == [("山田太郎", "taro@example.co.jp")]


def test_rewrite_none_whole_message_exact() -> None:
    post = _untouched_post()
    edition = run(post, "none", make_list(reply_to="sender"))
    expected_head = head_of(post).replace(
        f"Subject: {JIS_SUBJECT}\r\n".encode(), b"Subject: [sota:00013] =?iso-2022-jp?b?GyRCMnE1RCRON28bKEI=?=\r\n"
    )
    assert edition.message == expected_head + LIST_BLOCK + b"\r\n" + body_of(post)


# --- DMARC: munge -----------------------------------------------------------------------------------------------------


def test_munge_ascii_name() -> None:
    edition = run(BASIC, "munge")
    message = parse(edition.message)
    assert message["From"].addresses[0].display_name == "Taro Yamada via Sota Project"
    assert message["From"].addresses[0].addr_spec == "sota@lists.example.jp"
    assert len(message["From"].addresses) == 1
    assert raw_named(edition.message, "Reply-To") == [b"Reply-To: Taro Yamada <taro@example.co.jp>\r\n"]
    assert raw_named(edition.message, "Cc") == []
    assert edition.author == "Taro Yamada <taro@example.co.jp>"


def test_munge_iso_2022_jp_name_stays_iso_2022_jp() -> None:
    post = post_of(f"From: {JIS_NAME} <taro@example.co.jp>", f"Subject: {JIS_SUBJECT}")
    edition = run(post, "munge")
    (from_,) = raw_named(edition.message, "From")
    assert from_.isascii()
    assert encoded_word_charsets(from_) == {b"iso-2022-jp"}
    message = parse(edition.message)
    assert message["From"].addresses[0].display_name == "山田太郎 via Sota Project"
    assert message["From"].addresses[0].addr_spec == "sota@lists.example.jp"
    assert raw_named(edition.message, "Reply-To") == [f"Reply-To: {JIS_NAME} <taro@example.co.jp>\r\n".encode()]
    assert addresses(message["Reply-To"]) == [("山田太郎", "taro@example.co.jp")]


def test_munge_iso_2022_jp_name_with_japanese_list_name() -> None:
    post = post_of(f"From: {JIS_NAME} <taro@example.co.jp>", "Subject: x")
    edition = run(post, "munge", make_list(name="開発者の会"))
    (from_,) = raw_named(edition.message, "From")
    assert encoded_word_charsets(from_) == {b"iso-2022-jp"}
    assert parse(edition.message)["From"].addresses[0].display_name == "山田太郎 via 開発者の会"


def test_munge_iso_2022_jp_name_with_quotes_around_the_encoded_word() -> None:
    post = post_of(f'From: "{JIS_NAME}" <taro@example.co.jp>', "Subject: x")
    edition = run(post, "munge")
    (from_,) = raw_named(edition.message, "From")
    assert encoded_word_charsets(from_) == {b"iso-2022-jp"}
    assert parse(edition.message)["From"].addresses[0].display_name == "山田太郎 via Sota Project"


def test_munge_utf8_name_becomes_utf8_encoded_words() -> None:
    post = post_of(f"From: {UTF8_NAME} <ichiro@example.net>", f"Subject: {UTF8_SUBJECT}")
    edition = run(post, "munge")
    (from_,) = raw_named(edition.message, "From")
    assert from_.isascii()
    assert encoded_word_charsets(from_) == {b"utf-8"}
    message = parse(edition.message)
    assert message["From"].addresses[0].display_name == "鈴木 一郎 via Sota Project"
    assert message["From"].addresses[0].addr_spec == "sota@lists.example.jp"
    assert addresses(message["Reply-To"]) == [("鈴木 一郎", "ichiro@example.net")]


def test_munge_raw_utf8_name_becomes_utf8_encoded_words() -> None:
    post = post_of("From: 鈴木 一郎 <ichiro@example.net>".encode(), b"Subject: x")
    edition = run(post, "munge")
    (from_,) = raw_named(edition.message, "From")
    assert from_.isascii()
    assert encoded_word_charsets(from_) == {b"utf-8"}
    assert parse(edition.message)["From"].addresses[0].display_name == "鈴木 一郎 via Sota Project"


def test_munge_iso_2022_jp_author_with_a_name_jis_cannot_hold_falls_back_to_utf8() -> None:
    post = post_of(f"From: {JIS_NAME} <taro@example.co.jp>", "Subject: x")
    edition = run(post, "munge", make_list(name="Sota ① Project"))
    (from_,) = raw_named(edition.message, "From")
    assert encoded_word_charsets(from_) == {b"utf-8"}
    assert parse(edition.message)["From"].addresses[0].display_name == "山田太郎 via Sota ① Project"


# ㈱ヤマダ as Windows MUAs send it: labelled ISO-2022-JP but holding ㈱ from the NEC row (CP50220).
CP50220_NAME = "=?ISO-2022-JP?B?GyRCLWolZCVeJUAbKEI=?="


def test_munge_windows_iso_2022_jp_name_with_nec_characters_is_readable() -> None:
    edition = run(post_of(f"From: {CP50220_NAME} <yamada@example.co.jp>", "Subject: x"), "munge")
    assert parse(edition.message)["From"].addresses[0].display_name == "㈱ヤマダ via Sota Project"


def test_windows_iso_2022_jp_subject_with_nec_characters_is_readable() -> None:
    edition = run(post_of("From: yamada@example.co.jp", f"Subject: {CP50220_NAME}"))
    assert parse(edition.message)["Subject"] == "[sota:00013] ㈱ヤマダ"


def test_edition_author_and_subject_read_windows_iso_2022_jp() -> None:
    edition = run(post_of(f"From: {CP50220_NAME} <yamada@example.co.jp>", f"Subject: {CP50220_NAME}"))
    assert edition.subject == "㈱ヤマダ"
    assert edition.author == "㈱ヤマダ <yamada@example.co.jp>"


@pytest.mark.parametrize("written", ["taro@example.co.jp", "<taro@example.co.jp>", "  taro@example.co.jp  "])
def test_munge_author_without_name_uses_the_address(written: str) -> None:
    edition = run(post_of(f"From: {written}", "Subject: x"), "munge")
    message = parse(edition.message)
    assert message["From"].addresses[0].display_name == "taro@example.co.jp via Sota Project"
    assert message["From"].addresses[0].addr_spec == "sota@lists.example.jp"
    assert addresses(message["Reply-To"]) == [("", "taro@example.co.jp")]


def test_munge_quoted_name_with_specials() -> None:
    edition = run(post_of('From: "Yamada, Taro (Sales)" <taro@example.co.jp>', "Subject: x"), "munge")
    message = parse(edition.message)
    assert message["From"].addresses[0].display_name == "Yamada, Taro (Sales) via Sota Project"
    assert message["From"].addresses[0].addr_spec == "sota@lists.example.jp"
    assert raw_named(edition.message, "Reply-To") == [b'Reply-To: "Yamada, Taro (Sales)" <taro@example.co.jp>\r\n']


def test_munged_long_japanese_from_is_folded_within_78_columns() -> None:
    name = "=?UTF-8?B?" + base64.b64encode(("とても長い表示名" * 5).encode()).decode() + "?="
    edition = run(post_of(f"From: {name} <long@example.net>", "Subject: x"), "munge")
    (from_,) = raw_named(edition.message, "From")
    assert all(len(line) <= 78 for line in from_.split(b"\r\n"))
    assert len(from_.split(b"\r\n")) > 2
    # The stdlib's address parser puts a space between adjacent encoded-words of a display name (a CPython quirk),
    # so the phrase is decoded the RFC 2047 way here.
    ((display, address),) = getaddresses([from_.decode().split(":", 1)[1]])
    assert str(make_header(decode_header(display))) == "とても長い表示名" * 5 + " via Sota Project"
    assert address == "sota@lists.example.jp"
    assert parse(edition.message)["From"].addresses[0].addr_spec == "sota@lists.example.jp"


@pytest.mark.parametrize("reply_to", ["sender", "none"])
def test_munge_keeps_the_posts_own_reply_to(reply_to: str) -> None:
    own = b"Reply-To: =?ISO-2022-JP?B?GyRCOzNFREJATzobKEI=?=\r\n <taro.home@example.net>\r\n"
    post = head_of(BASIC) + own + b"\r\n" + body_of(BASIC)
    edition = run(post, "munge", make_list(reply_to=reply_to))
    assert raw_named(edition.message, "Reply-To") == [own]
    assert raw_named(edition.message, "Cc") == []
    assert addresses(parse(edition.message)["Reply-To"]) == [("山田太郎", "taro.home@example.net")]


def test_munge_reply_to_none_puts_the_author_in_reply_to() -> None:
    edition = run(BASIC, "munge", make_list(reply_to="none"))
    assert raw_named(edition.message, "Reply-To") == [b"Reply-To: Taro Yamada <taro@example.co.jp>\r\n"]
    assert raw_named(edition.message, "Cc") == []


def test_munge_reply_to_list_puts_the_author_in_cc() -> None:
    post = post_of(f"From: {JIS_NAME} <taro@example.co.jp>", "To: sota@lists.example.jp", "Subject: x")
    edition = run(post, "munge", make_list(reply_to="list"))
    message = parse(edition.message)
    assert raw_named(edition.message, "Reply-To") == [b"Reply-To: <sota@lists.example.jp>\r\n"]
    assert addresses(message["Reply-To"]) == [("", "sota@lists.example.jp")]
    assert len(raw_named(edition.message, "Cc")) == 1
    assert addresses(message["Cc"]) == [("山田太郎", "taro@example.co.jp")]
    assert message["From"].addresses[0].addr_spec == "sota@lists.example.jp"


def test_munge_reply_to_list_appends_the_author_to_an_existing_cc_and_replaces_reply_to() -> None:
    post = post_of(
        "From: Taro Yamada <taro@example.co.jp>",
        "To: sota@lists.example.jp",
        "Cc: Hanako <hanako@example.jp>,\r\n jiro@example.jp",
        "Reply-To: taro.home@example.net",
        "Subject: x",
    )
    edition = run(post, "munge", make_list(reply_to="list"))
    message = parse(edition.message)
    assert len(raw_named(edition.message, "Cc")) == 1
    assert addresses(message["Cc"]) == [
        ("Hanako", "hanako@example.jp"),
        ("", "jiro@example.jp"),
        ("Taro Yamada", "taro@example.co.jp"),
    ]
    assert raw_named(edition.message, "Reply-To") == [b"Reply-To: <sota@lists.example.jp>\r\n"]


# --- DMARC: none ------------------------------------------------------------------------------------------------------


def test_none_reply_to_list_sets_reply_to_and_leaves_cc() -> None:
    cc = b"Cc: Hanako <hanako@example.jp>,\r\n jiro@example.jp\r\n"
    post = head_of(BASIC) + cc + b"Reply-To: taro.home@example.net\r\n\r\n" + body_of(BASIC)
    edition = run(post, "none", make_list(reply_to="list"))
    assert raw_named(edition.message, "From") == [b"From: Taro Yamada <taro@example.co.jp>\r\n"]
    assert raw_named(edition.message, "Reply-To") == [b"Reply-To: <sota@lists.example.jp>\r\n"]
    assert raw_named(edition.message, "Cc") == [cc]


def test_none_reply_to_list_without_cc_adds_none() -> None:
    edition = run(BASIC, "none", make_list(reply_to="list"))
    assert raw_named(edition.message, "Reply-To") == [b"Reply-To: <sota@lists.example.jp>\r\n"]
    assert raw_named(edition.message, "Cc") == []


@pytest.mark.parametrize("reply_to", ["sender", "none"])
def test_none_leaves_reply_to_alone(reply_to: str) -> None:
    mailing_list = make_list(reply_to=reply_to)
    assert raw_named(run(BASIC, "none", mailing_list).message, "Reply-To") == []
    own = b"Reply-To: Taro at home\r\n <taro.home@example.net>\r\n"
    post = head_of(BASIC) + own + b"\r\n" + body_of(BASIC)
    edition = run(post, "none", mailing_list)
    assert raw_named(edition.message, "Reply-To") == [own]
    assert raw_named(edition.message, "From") == [b"From: Taro Yamada <taro@example.co.jp>\r\n"]
    assert raw_named(edition.message, "Cc") == []


# --- DMARC: wrap ------------------------------------------------------------------------------------------------------

WRAPPED = post_of(
    "Return-Path: <taro@example.co.jp>",
    "Received: from mx.example.co.jp by mail.example.jp;\r\n\tFri, 05 Jan 2024 10:00:01 +0900",
    "DKIM-Signature: v=1; a=rsa-sha256; d=example.co.jp; s=sel;\r\n\th=from:to:subject; bh=AAAA; b=BBBB",
    f"From: {JIS_NAME} <taro@example.co.jp>",
    "To: sota@lists.example.jp",
    f"Subject: {JIS_SUBJECT}",
    "Date: Fri, 05 Jan 2024 10:00:00 +0900",
    "Message-ID: <20240105.3@example.co.jp>",
    "List-Id: Other <other.example.net>",
    "Precedence: bulk",
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=ISO-2022-JP",
    "Content-Transfer-Encoding: 7bit",
    body="本文\r\n".encode("iso2022_jp"),
)
INNER = WRAPPED.split(b"\r\n", 1)[1]  # without the leading Return-Path


def _part_content(message: bytes) -> tuple[bytes, bytes]:
    """The raw part headers and content of the only body part, cut as RFC 2046 says (the CRLF before a
    delimiter belongs to the delimiter)."""
    boundary = parse(message).get_boundary()
    assert boundary
    body = body_of(message)
    opening = f"--{boundary}\r\n".encode()
    closing = f"\r\n--{boundary}--".encode()
    start = body.index(opening) + len(opening)
    end = body.index(closing)
    assert body.count(f"--{boundary}".encode()) == 2  # one part only
    part = body[start:end]
    headers, _, content = part.partition(b"\r\n\r\n")
    return headers, content


def test_wrap_outer_message() -> None:
    edition = run(WRAPPED, "wrap")
    message = parse(edition.message)
    assert message.get_content_type() == "multipart/mixed"
    assert message["From"].addresses[0].display_name == "山田太郎 via Sota Project"
    assert message["From"].addresses[0].addr_spec == "sota@lists.example.jp"
    assert encoded_word_charsets(raw_named(edition.message, "From")[0]) == {b"iso-2022-jp"}
    assert message["Subject"] == "[sota:00013] 会議の件"
    assert addresses(message["Reply-To"]) == [("山田太郎", "taro@example.co.jp")]
    assert message["List-Id"] == "Sota Project <sota.lists.example.jp>"
    assert message["Precedence"] == "list"
    for name in ("MIME-Version", "Content-Type", "From", "Subject", "List-Id", "Precedence", "To", "Date"):
        assert len(raw_named(edition.message, name)) == 1, name
    for name in ("DKIM-Signature", "Content-Transfer-Encoding", "Return-Path"):
        assert raw_named(edition.message, name) == [], name
    # threading and trace fields come along as they were
    for field in (
        b"Received: from mx.example.co.jp by mail.example.jp;\r\n\tFri, 05 Jan 2024 10:00:01 +0900\r\n",
        b"To: sota@lists.example.jp\r\n",
        b"Date: Fri, 05 Jan 2024 10:00:00 +0900\r\n",
        b"Message-ID: <20240105.3@example.co.jp>\r\n",
    ):
        assert field in raw_fields(edition.message)
    assert head_of(edition.message).endswith(LIST_BLOCK)
    assert edition.author == "山田太郎 <taro@example.co.jp>"
    assert edition.subject == "会議の件"


def test_wrap_has_one_message_rfc822_part_holding_the_post() -> None:
    edition = run(WRAPPED, "wrap")
    message = parse(edition.message)
    parts = message.get_payload()
    assert isinstance(parts, list) and len(parts) == 1
    assert parts[0].get_content_type() == "message/rfc822"
    inner = parts[0].get_payload()[0]
    assert addresses(inner["From"]) == [("山田太郎", "taro@example.co.jp")]
    assert inner["Subject"] == "会議の件"
    assert inner["List-Id"] == "Other <other.example.net>"
    assert inner["Precedence"] == "bulk"
    assert inner["Return-Path"] is None
    assert inner["DKIM-Signature"] is not None
    # the post's bytes appear unchanged, right after the part's own header fields
    headers, content = _part_content(edition.message)
    assert headers == b"Content-Type: message/rfc822\r\nContent-Disposition: inline"
    assert content == INNER[:-2] or content == INNER
    assert INNER in body_of(edition.message)


def test_wrap_part_content_is_the_post_byte_for_byte() -> None:
    _headers, content = _part_content(run(WRAPPED, "wrap").message)
    assert content == INNER


def test_wrap_of_a_post_without_final_crlf_is_byte_for_byte() -> None:
    post = WRAPPED[:-2]
    _headers, content = _part_content(run(post, "wrap").message)
    assert content == INNER[:-2]


def test_wrap_only_strips_a_leading_return_path() -> None:
    post = post_of("From: taro@example.co.jp", "Return-Path: <late@example.co.jp>", "Subject: x", body=b"b")
    _headers, content = _part_content(run(post, "wrap").message)
    assert content == post


def test_wrap_boundary_differs_each_time() -> None:
    first = parse(run(WRAPPED, "wrap").message).get_boundary()
    second = parse(run(WRAPPED, "wrap").message).get_boundary()
    assert first and second and first != second
    assert first.encode() not in WRAPPED


def test_wrap_keeps_the_posts_reply_to_and_threading_fields() -> None:
    extra = (
        b"Reply-To: taro.home@example.net\r\n",
        b"Cc: Hanako <hanako@example.jp>,\r\n jiro@example.jp\r\n",
        b"In-Reply-To: <20240104.9@example.co.jp>\r\n",
        b"References: <20240103.1@example.co.jp>\r\n <20240104.9@example.co.jp>\r\n",
        b"Authentication-Results: mail.example.jp; dkim=pass header.d=example.co.jp\r\n",
        b"X-Mailer: Example 1.0\r\n",
    )
    post = head_of(WRAPPED) + b"".join(extra) + b"\r\n" + body_of(WRAPPED)
    for reply_to in ("sender", "none"):
        edition = run(post, "wrap", make_list(reply_to=reply_to))
        fields = raw_fields(edition.message)
        assert all(field in fields for field in extra[:5]), reply_to
        assert raw_named(edition.message, "Reply-To") == [extra[0]]
        assert raw_named(edition.message, "X-Mailer") == []
        assert extra[-1] in _part_content(edition.message)[1]


def test_wrap_reply_to_list() -> None:
    edition = run(WRAPPED, "wrap", make_list(reply_to="list"))
    message = parse(edition.message)
    assert raw_named(edition.message, "Reply-To") == [b"Reply-To: <sota@lists.example.jp>\r\n"]
    assert addresses(message["Cc"]) == [("山田太郎", "taro@example.co.jp")]


# --- real DKIM signatures: what breaks_signature predicts is what a verifier finds --------------------------------------


@pytest.fixture(scope="module")
def dkim_key() -> tuple[bytes, bytes]:
    """A 1024-bit RSA key: the private PEM and the DNS TXT record for sel._domainkey.example.co.jp."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def _signed(key: tuple[bytes, bytes], post: bytes, headers: list[bytes] | None = None) -> bytes:
    signature = dkim.sign(post, b"sel", b"example.co.jp", key[0], include_headers=headers)
    return signature + post


def _verifies(key: tuple[bytes, bytes], message: bytes) -> bool:
    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return key[1] if name == b"sel._domainkey.example.co.jp." else None

    return bool(dkim.verify(message, dnsfunc=dns))


def test_dkim_signature_verifies_inside_the_wrapper(dkim_key: tuple[bytes, bytes]) -> None:
    post = _signed(dkim_key, post_of("From: taro@example.co.jp", "To: sota@lists.example.jp", "Subject: hi"))
    assert _verifies(dkim_key, post)
    assert breaks(post, "example.co.jp") is True
    edition = run(post, "wrap")
    _headers, content = _part_content(edition.message)
    assert _verifies(dkim_key, content)


@pytest.mark.parametrize("rewrite", ["none", "munge"])
def test_a_signature_over_subject_is_broken_by_the_edition(dkim_key: tuple[bytes, bytes], rewrite: str) -> None:
    post = _signed(dkim_key, post_of("From: taro@example.co.jp", "To: sota@lists.example.jp", "Subject: hi"))
    assert breaks(post, "example.co.jp") is True
    assert not _verifies(dkim_key, run(post, rewrite).message)


def test_a_signature_over_untouched_headers_survives_rewrite_none(dkim_key: tuple[bytes, bytes]) -> None:
    post = _signed(
        dkim_key,
        post_of("From: taro@example.co.jp", "To: sota@lists.example.jp", "Subject: hi", "Message-ID: <m@x>"),
        headers=[b"from", b"to", b"message-id"],
    )
    assert _verifies(dkim_key, run(post, "none").message)


# --- breaks_signature -------------------------------------------------------------------------------------------------


def _with_signature(*signatures: str) -> bytes:
    return post_of(*(f"DKIM-Signature: {s}" for s in signatures), "From: taro@mail.example.co.jp", "Subject: x")


@pytest.mark.parametrize(
    "header_list",
    [
        "subject",
        "Subject",
        "reply-to",
        "cc",
        "from",
        "list-id",
        "list-unsubscribe",
        "list-post",
        "precedence",
        "x-loop",
        "to:date:message-id:subject",
        "to:date:List-Id:list-id",
    ],
)
def test_signature_over_an_edited_field_breaks(header_list: str) -> None:
    post = _with_signature(f"v=1; a=rsa-sha256; c=relaxed/simple; d=example.co.jp; s=s1; h={header_list}; bh=x; b=y")
    assert breaks(post, "example.co.jp") is True


@pytest.mark.parametrize(
    "header_list", ["to:date:message-id", "to:date:message-id:mime-version:content-type", "references:in-reply-to"]
)
def test_signature_over_untouched_fields_does_not_break(header_list: str) -> None:
    post = _with_signature(f"v=1; a=rsa-sha256; d=example.co.jp; s=s1; h={header_list}; bh=x; b=y")
    assert breaks(post, "example.co.jp") is False


@pytest.mark.parametrize(
    ("signer", "from_domain", "expected"),
    [
        ("example.co.jp", "example.co.jp", True),
        ("mail.example.co.jp", "example.co.jp", True),  # relaxed alignment: same organizational domain
        ("example.co.jp", "news.example.co.jp", True),
        ("EXAMPLE.CO.JP", "example.co.jp", True),
        ("other.co.jp", "example.co.jp", False),  # co.jp is a public suffix: not the same organization
        ("example.com", "example.co.jp", False),
        ("esp-mailer.net", "example.co.jp", False),
    ],
)
def test_only_an_aligned_signature_counts(signer: str, from_domain: str, expected: bool) -> None:
    post = _with_signature(f"v=1; a=rsa-sha256; d={signer}; s=s1; h=from:to:subject; bh=x; b=y")
    assert breaks(post, from_domain) is expected


def test_unsigned_post_does_not_break() -> None:
    assert breaks(BASIC, "example.co.jp") is False


def test_folded_signature_with_spaces() -> None:
    post = post_of(
        "dkim-signature: v=1; a=rsa-sha256;\r\n\td = mail.example.co.jp ; s=s1;\r\n\th=To : Date :\r\n\t Subject;"
        " bh=x; b=abc\r\n def==",
        "From: taro@example.co.jp",
    )
    assert breaks(post, "example.co.jp") is True


def test_any_aligned_breaking_signature_among_several() -> None:
    unrelated = "v=1; a=rsa-sha256; d=esp-mailer.net; s=s1; h=from:subject; bh=x; b=y"
    harmless = "v=1; a=rsa-sha256; d=example.co.jp; s=s2; h=to:date; bh=x; b=y"
    breaking = "v=1; a=rsa-sha256; d=example.co.jp; s=s3; h=to:cc; bh=x; b=y"
    assert breaks(_with_signature(unrelated, harmless), "example.co.jp") is False
    assert breaks(_with_signature(unrelated, harmless, breaking), "example.co.jp") is True


def test_signature_without_h_or_d_does_not_break() -> None:
    assert breaks(_with_signature("v=1; a=rsa-sha256; d=example.co.jp; s=s1; bh=x; b=y"), "example.co.jp") is (False)
    assert breaks(_with_signature("v=1; a=rsa-sha256; s=s1; h=subject; bh=x; b=y"), "example.co.jp") is False


def test_a_field_named_like_a_signature_in_the_body_does_not_count() -> None:
    post = post_of("From: taro@example.co.jp", body=b"DKIM-Signature: v=1; d=example.co.jp; h=subject; b=y\r\n")
    assert breaks(post, "example.co.jp") is False


# --- one-click unsubscribe tokens -------------------------------------------------------------------------------------


def _members(*addresses_: str) -> list[Member]:
    return [
        Member(a, self_copy=True, enabled=True, digest=False, bounce_score=0.0, disabled_reason=None)
        for a in addresses_
    ]


def test_token_is_stable_and_32_hex() -> None:
    token = one_click_token(LIST, "bob@example.com")
    assert re.fullmatch(r"[0-9a-f]{32}", token)
    assert one_click_token(LIST, "bob@example.com") == token
    assert one_click_token(dataclasses.replace(LIST, name="Renamed", last_number=99), "bob@example.com") == token


def test_token_is_the_hmac_of_the_lowercased_member() -> None:
    expected = hmac.new(bytes.fromhex(SECRET), b"bob@example.com", hashlib.sha256).hexdigest()[:32]
    assert one_click_token(LIST, "bob@example.com") == expected
    assert one_click_token(LIST, "Bob@Example.COM") == expected


def test_tokens_differ_across_members_and_secrets() -> None:
    members = ["bob@example.com", "bob@example.org", "alice@example.com", "bob+x@example.com"]
    tokens = {one_click_token(LIST, m) for m in members}
    assert len(tokens) == len(members)
    other = make_list(secret=OTHER_SECRET)
    assert all(one_click_token(other, m) != one_click_token(LIST, m) for m in members)


def test_member_for_token() -> None:
    members = _members("alice@example.com", "Bob@Example.com", "carol@example.org")
    assert member_for_token(LIST, members, one_click_token(LIST, "bob@example.com")) == "Bob@Example.com"
    assert member_for_token(LIST, members, one_click_token(LIST, "carol@example.org")) == "carol@example.org"
    assert member_for_token(LIST, members, one_click_token(LIST, "dave@example.com")) is None
    assert member_for_token(LIST, members, one_click_token(make_list(secret=OTHER_SECRET), "alice@example.com")) is None
    assert member_for_token(LIST, members, "") is None
    assert member_for_token(LIST, members, "0" * 32) is None
    assert member_for_token(LIST, [], one_click_token(LIST, "alice@example.com")) is None


def test_unsubscribe_fields() -> None:
    token = one_click_token(LIST, "bob@example.com")
    fields = unsubscribe_fields(LIST, token, WEB)
    assert fields == (
        b"List-Unsubscribe: <mailto:sota-request@lists.example.jp?subject=unsubscribe>,\r\n"
        b" <https://mail.example.jp/lists/sota@lists.example.jp/unsubscribe/" + token.encode() + b">\r\n"
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    )
    message = parse(fields + run(BASIC).message)
    assert message["List-Unsubscribe"] == (
        "<mailto:sota-request@lists.example.jp?subject=unsubscribe>,"
        f" <https://mail.example.jp/lists/sota@lists.example.jp/unsubscribe/{token}>"
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
