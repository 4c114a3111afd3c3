"""A comment as the spam engines read it (web/comment_filter.py): a mail message whose From is the reader, whose
Subject is the post's title and whose body is the comment in UTF-8, with the reader's address in a Received line."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default as default_policy

from jitaku.store.comments import NewComment
from jitaku.web.comment_filter import as_message


def test_a_japanese_comment_becomes_a_message_an_engine_reads() -> None:
    comment = NewComment(
        1, None, "読者\r\nBcc: x@y", "reader@remote.test", "", "いい記事です。\n二行目", "", "192.0.2.7", "n", 0.0
    )
    raw = as_message(comment, "自宅サーバー", "mail.example.test")
    head = raw.partition(b"\r\n\r\n")[0]
    assert head.isascii() and b"\r\nBcc:" not in head  # the name's line break cannot make a header of its own
    parsed = message_from_bytes(raw, policy=default_policy)
    assert parsed["From"].addresses[0].display_name == "読者 Bcc: x@y"  # one address, not a group
    assert parsed["From"].addresses[0].addr_spec == "reader@remote.test"
    assert str(parsed["Subject"]) == "自宅サーバー"
    assert "[192.0.2.7]" in str(parsed["Received"])
    assert parsed.get_content_type() == "text/plain" and parsed.get_content_charset() == "utf-8"
    assert parsed.get_content().split() == ["いい記事です。", "二行目"]  # type: ignore[attr-defined]
