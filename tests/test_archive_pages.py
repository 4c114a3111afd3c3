"""The archive's parts without a daemon: a post's page (web/archive/message.py) from the bytes Japanese and
modern mail programs send, within its bounds; mboxrd quoting; threads; the download's Content-Disposition; and
the members' cookie, which names its list under its signature."""

from __future__ import annotations

import base64
import tracemalloc
from email.header import Header
from email.message import EmailMessage
from types import SimpleNamespace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jitaku.addresses import obfuscated
from jitaku.mail import parts
from jitaku.store.archive import Archived
from jitaku.web.archive import mbox, message
from jitaku.web.archive.logins import COOKIE, ArchiveLogins
from jitaku.web.archive.pages import author_name, content_disposition
from jitaku.web.archive.threads import MAX_DEPTH, threaded


def text_post(body: bytes, content_type: str, encoding: str = "7bit") -> bytes:
    head = f"From: a@example.jp\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: {content_type}\r\n"
    return (head + f"Content-Transfer-Encoding: {encoding}\r\n\r\n").encode() + body


def test_text_parts_are_read_in_their_charset() -> None:
    cases = [
        (text_post("会議の件①".encode("cp932"), "text/plain; charset=Shift_JIS", "8bit"), "会議の件①"),
        (text_post("会議の件".encode("iso2022_jp"), "text/plain; charset=ISO-2022-JP"), "会議の件"),
        (text_post("会議の件".encode("iso2022_jp"), "text/plain"), "会議の件"),  # unlabelled: its escapes tell
        (text_post(base64.b64encode("自宅サーバー".encode()), "text/plain; charset=utf-8", "base64"), "自宅サーバー"),
    ]
    for post, expected in cases:
        (shown,) = message.render(post, obfuscate=False).parts
        assert not shown.html and shown.content.strip() == expected


def test_html_loses_script_style_and_remote_images_and_public_pages_hide_addresses() -> None:
    html = (
        '<p style="color:red" onclick="x()">Hi <a href="javascript:alert(1)">a</a> <a href="mailto:k@example.jp">k</a>'
        ' or k@example.jp</p><script>alert(1)</script><img src="https://tracker.test/p.gif"><a href="https://ok.test/">ok</a>'
    )
    (shown,) = message.render(text_post(html.encode(), "text/html; charset=utf-8"), obfuscate=True).parts
    assert shown.html
    for unwanted in ("style=", "onclick", "javascript:", "<script", "alert(1)", "tracker.test", "mailto:", "@"):
        assert unwanted not in shown.content, unwanted
    assert 'href="https://ok.test/"' in shown.content and "k at example.jp" in shown.content
    assert obfuscated("mail kenji@example.jp now") == "mail kenji at example.jp now"


def test_a_japanese_attachment_name_in_encoded_words_is_read_and_kept_from_paths() -> None:
    post = EmailMessage()
    post["Subject"] = "x"
    post.set_content("see attached")
    post.add_attachment(b"data", maintype="application", subtype="pdf", filename="x.pdf")
    raw = post.as_bytes().replace(
        b'filename="x.pdf"', f'filename="{Header("資料.pdf", "iso-2022-jp").encode()}"'.encode()
    )
    rendered = message.render(raw, obfuscate=False)
    assert [(a.filename, a.content_type, a.size) for a in rendered.attachments] == [("資料.pdf", "application/pdf", 4)]
    found = message.attachment(raw, 1)
    assert found is not None and found[1] == b"data"
    assert message.attachment(raw, 2) is None and message.attachment(raw, 0) is None
    evil = post.as_bytes().replace(b'filename="x.pdf"', b'filename="../../etc/passwd"')
    assert "/" not in message.render(evil, obfuscate=False).attachments[0].filename


def test_parsing_a_strangers_post_is_bounded() -> None:
    many = EmailMessage()
    many.set_content("first")
    for number in range(parts.MAX_PARTS + 20):
        many.add_attachment(b"x", maintype="application", subtype="octet-stream", filename=f"{number}.bin")
    rendered = message.render(many.as_bytes(), obfuscate=False)
    assert rendered.more_parts and len(rendered.parts) + len(rendered.attachments) == parts.MAX_PARTS
    deep = b"Content-Type: text/plain\r\n\r\ninside\r\n"
    for level in range(parts.MAX_DEPTH + 5):
        deep = (
            f'Content-Type: multipart/mixed; boundary="b{level}"\r\n\r\n--b{level}\r\n'.encode()
            + deep
            + f"\r\n--b{level}--\r\n".encode()
        )
    assert message.render(deep, obfuscate=False).more_parts
    assert message.render(b"x" * (parts.MAX_BODY + 1), obfuscate=False).too_large


def test_mbox_entries_quote_from_lines_as_mboxrd_does() -> None:
    entry = mbox.entry("a@example.jp", 0.0, b"Subject: x\r\n\r\nFrom here\r\n>From there\r\nnot From\r\n")
    assert entry == (
        b"From a@example.jp Thu Jan  1 00:00:00 1970\nSubject: x\n\n>From here\n>>From there\nnot From\n\n"
    )
    assert mbox.entry("", 0.0, b"x").startswith(b"From MAILER-DAEMON ")


def post(number: int, parent: int | None) -> Archived:
    return Archived(number, number, float(number), "A <a@x>", f"s{number}", None, f"H{number}", parent, None)


def test_threads_nest_replies_and_stop_indenting_at_max_depth() -> None:
    chain = [post(1, None)] + [post(n, n - 1) for n in range(2, MAX_DEPTH + 5)] + [post(100, None), post(101, 1)]
    roots = threaded(chain)
    assert [r.post.number for r in roots] == [1, 100]
    assert [c.post.number for c in roots[0].children] == [2, 101]
    depth, node = 0, roots[0]
    while node.children:
        node, depth = node.children[0], depth + 1
    assert depth == MAX_DEPTH and len(roots) == 2


def test_names_and_downloads() -> None:
    assert author_name("山田花子 <hanako@example.jp>", obfuscate=True) == "山田花子"
    assert author_name("hanako@example.jp", obfuscate=True) == "hanako at example.jp"
    assert author_name("山田, 太郎 <taro@example.jp>", obfuscate=False) == "山田, 太郎"  # decoded: no quotes left
    assert author_name('"Yamada, Taro" <taro@example.jp>', obfuscate=False) == "Yamada, Taro"
    assert author_name("<taro@example.jp>", obfuscate=True) == "taro at example.jp"
    assert content_disposition("会議.html") == (
        "attachment; filename=\"__.html\"; filename*=UTF-8''%E4%BC%9A%E8%AD%B0.html"
    )


def request_with(cookies: dict[str, str]) -> Any:
    return SimpleNamespace(cookies=cookies)


def test_a_members_cookie_opens_only_its_own_list() -> None:
    logins = ArchiveLogins(SimpleNamespace(), SimpleNamespace(), None, "k" * 64)  # type: ignore[arg-type]
    sota, other = SimpleNamespace(id=1), SimpleNamespace(id=2)
    value = logins.cookie_value(1, "bob@example.org", 1e10 - 100)
    read = logins._cookie_address  # noqa: SLF001 (the signature check itself)
    assert read(request_with({COOKIE.format(1): value}), sota) == "bob@example.org"  # type: ignore[arg-type]
    assert read(request_with({COOKIE.format(2): value}), other) is None  # type: ignore[arg-type]
    forged = value.replace(base64.urlsafe_b64encode(b"bob").decode().rstrip("="), "ZXZl", 1)
    assert read(request_with({COOKIE.format(1): forged}), sota) is None  # type: ignore[arg-type]


def big_post() -> bytes:
    """25 MB: a page of text and an 18 MB attachment, as a list may carry."""
    post = EmailMessage()
    post["Subject"] = "slides"
    post.set_content("自宅サーバー " * 100_000)
    post.add_attachment(bytes(range(256)) * (18 * 4096), maintype="application", subtype="pdf", filename="a.pdf")
    return post.as_bytes()


def test_a_big_posts_page_shows_its_attachments_size_without_decoding_it() -> None:
    body = big_post()
    tracemalloc.start()
    try:
        rendered = message.render(body, obfuscate=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [(a.filename, a.size) for a in rendered.attachments] == [("a.pdf", 18 * 1024 * 1024)]
    assert "自宅サーバー" in rendered.parts[0].content
    assert peak < 16 * 1024 * 1024  # the standard library's parser took 200 MB over the post's 25
    found = message.attachment(body, 1)
    assert found is not None and found[1] == bytes(range(256)) * (18 * 4096)


def test_parts_are_found_as_mail_programs_write_them() -> None:
    no_empty_line = b"From: a@example.jp\nSubject: x\nthe body, with no empty line before it\n"
    assert message.render(no_empty_line, obfuscate=False).parts[0].content == "the body, with no empty line before it"
    rfc2231 = (
        b"Content-Type: multipart/mixed; boundary*=us-ascii''B1\n\n--B1\nContent-Type: text/plain\n\none\n"
        b"--B1\n--B1\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable\n\nt=3Dwo=\n!\n--B1--\n"
    )
    assert [p.content for p in message.render(rfc2231, obfuscate=False).parts] == ["one", "t=wo!"]
    quoted = text_post(b"caf=C3=A9 =\r\nau lait\r\n", 'application/octet-stream; name="x"', "quoted-printable")
    (shown,) = message.render(quoted, obfuscate=False).attachments
    found = message.attachment(quoted, 1)
    assert found is not None and found[1] == "café au lait\r\n".encode() and shown.size == len(found[1])
    stray = text_post(b"=", "application/octet-stream", "quoted-printable")
    assert message.render(stray, obfuscate=False).attachments[0].size == 0


PIECES = st.sampled_from(
    [
        b"--b\r\n",
        b"--b--\r\n",
        b"--b",
        b"\r\n",
        b"\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"QUJD=\r\n",
        b"=3D=\r\n",
        b"Content-Transfer-Encoding: quoted-printable\r\n",
        b"Content-Disposition: attachment\r\n",
        b"x: y\r\n",
        b"\xff",
    ]
)


@given(st.lists(PIECES, max_size=40))
@settings(max_examples=300, deadline=None)
def test_any_bytes_a_stranger_sends_render_within_the_post(pieces: list[bytes]) -> None:
    body = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"".join(pieces)
    for part in parts.leaves(body)[0]:
        assert 0 <= part.start <= part.end <= len(body)
        assert part.size() >= 0
    rendered = message.render(body, obfuscate=True)
    for attachment in rendered.attachments:
        assert message.attachment(body, attachment.index) is not None
