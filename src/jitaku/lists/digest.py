"""A list's daily digest (RFC 1153 in MIME form): a table of contents, then the posts as multipart/digest,
mailed once a day to the members who asked for digests, each copy personalised as a post's copies are.

The copies are committed together with the list's new digest mark, so a crash sends a digest whole or not.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import secrets
import time
from collections.abc import Callable
from email.header import Header
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr, localtime

from jitaku import log, store
from jitaku.lists import compose, posting
from jitaku.mail import delivery
from jitaku.mail.dkim import Signer
from jitaku.mail.policy import Policy
from jitaku.store import Database, Tx
from jitaku.store.lists import MailingList, Post

DIGEST_SECONDS = 86400.0


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


class Digests:
    """Sends the digests that are due."""

    def __init__(
        self, database: Database, signer: Signer, policy: Policy, web_url: str, wake_queue: Callable[[], None]
    ) -> None:
        self._database = database
        self._signer = signer
        self._policy = policy
        self._web_url = web_url
        self._wake_queue = wake_queue

    async def send_due(self, now: float) -> None:
        """Each list's digest once a day (at once after `jitaku list digest`), if it has new posts."""
        due = await self._database.query(lambda s: store.lists.digests_due(s, now - DIGEST_SECONDS), snapshot=False)
        for mailing_list in due:
            await self._send(mailing_list)

    async def _send(self, mailing_list: MailingList) -> None:
        members = await self._database.query(lambda s: store.lists.members(s, mailing_list.id), snapshot=False)
        readers = [m.address for m in members if m.enabled and m.digest]
        posts = await self._database.query(
            lambda s: store.lists.posts_after(s, mailing_list.id, mailing_list.digest_last_number), snapshot=False
        )
        previous = mailing_list.digest_last_number
        last = posts[-1][0].number if posts else previous
        copies = None
        if readers and posts:
            mailboxes = await self._policy.local_mailboxes(readers)
            message = compose_digest(mailing_list, posts, self._web_url)
            copies = await asyncio.to_thread(
                posting.personalise, self._signer, self._web_url, mailing_list, message, readers, mailboxes
            )

        def commit(tx: Tx) -> None:
            if store.lists.digest_sent(tx, mailing_list.id, previous, last, time.time()) and copies is not None:
                delivery.commit(tx, copies)

        await self._database.transact(commit)
        log.event("list_digest", list=mailing_list.address, posts=f"{previous + 1}-{last}", readers=len(readers))
        if copies is not None and copies.queued:
            self._wake_queue()
