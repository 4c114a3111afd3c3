"""A list's daily digest (RFC 1153 in MIME form): a table of contents, then the posts as multipart/digest."""

from __future__ import annotations

import email
import email.policy
import secrets
from email.header import Header
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, localtime

from jitaku.lists import compose
from jitaku.store.lists import MailingList, Post


def compose_digest(mailing_list: MailingList, posts: list[tuple[Post, bytes]], web_url: str) -> bytes:
    """The digest of POSTS, with the list's own header fields; each member's copy adds its unsubscribe link."""
    first, last = posts[0][0].number, posts[-1][0].number
    contents = "\n".join(f"{post.number:6d}  {post.subject}\n        {post.author}" for post, _body in posts)
    table = MIMEText(f"{mailing_list.name}: posts {first} to {last}\n\n{contents}\n", "plain", "utf-8")
    parts = MIMEMultipart("digest")
    for _post, body in posts:
        parts.attach(MIMEMessage(email.message_from_bytes(body, policy=email.policy.SMTP)))
    digest = MIMEMultipart("mixed")
    digest.attach(table)
    digest.attach(parts)
    title = f"{mailing_list.name} digest, posts {first}-{last}"
    digest["From"] = formataddr((mailing_list.name, mailing_list.role_address("request")), charset="utf-8")
    digest["To"] = mailing_list.address
    digest["Reply-To"] = mailing_list.address
    digest["Subject"] = title if title.isascii() else Header(title, "utf-8").encode()
    digest["Date"] = format_datetime(localtime())
    digest["Message-ID"] = f"<digest-{last}-{secrets.token_hex(6)}@{mailing_list.domain}>"
    message = digest.as_bytes(policy=email.policy.SMTP)
    head, _, body = message.partition(b"\r\n\r\n")
    return head + b"\r\n" + compose.list_fields(mailing_list, last, web_url) + b"\r\n" + body
