"""A list post's path, top to bottom: loop -> auto-reply -> spam -> members -> membership -> forged -> DMARC rewrite
-> compose -> words (for search) -> ARC -> per-member DKIM -> commit.

`Posting` lists the stages in that order, one object each (Mailman 3's pipeline of handlers): a stage
stops a post by raising `Drop` or `Hold`. The post's bytes are parsed once (`headers.Parsed`) and the
parsed form passes along. Compose, ARC and DKIM run off the loop in one go, and again if another post
took the number meanwhile; the commit numbers, archives and delivers the post in one transaction
(mail/delivery.py), so a crash leaves it either to be done again or done.

Every copy is signed before that commit, not chunk by chunk while the first ones are delivered: tried on
bench/list_fanout (1,000 members, 2 cores), signing threads beside the queue's busy event loop wait for
the GIL after each 0.25 ms signature (OpenSSL releases it, but the loop holds it for its switch interval),
and the last copy left at 0.49-0.51 s instead of 0.35-0.38 s; a signing process gained nothing either.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from typing import Protocol

from jitaku import log, store
from jitaku.addresses import obfuscated
from jitaku.lists import bounces, compose, dmarc, verp
from jitaku.lists.tokens import one_click_token
from jitaku.mail import authcheck, delivery, headers, parts
from jitaku.mail.delivery import Copy, Delivery, Entry, new_queue_id
from jitaku.mail.dkim import PER_COPY_HEADERS, Signer
from jitaku.mail.headers import Parsed
from jitaku.mail.policy import Policy
from jitaku.store import Database, Tx, search
from jitaku.store.lists import InboxItem, MailingList, Member, Rewrite
from jitaku.store.queue import Personal

STRICT: tuple[dmarc.Policy, ...] = ("quarantine", "reject")
# Members of one domain per queue entry: each entry is one SMTP session, recorded when it ends, so this
# bounds what a crash sends twice, and a big domain gets several sessions at once (Postfix allows 20).
COPIES_PER_ENTRY = 50
SIGNING_THREADS = max(2, os.cpu_count() or 1)  # RSA runs outside the GIL


class Drop(Exception):
    """The post is not passed on and nobody is told (a loop, a robot's mail): the reason goes to the log."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _NumberTaken(Exception):
    """Another post took the number meanwhile: the commit is rolled back, and the copies made again."""


class Hold(Exception):
    """The post waits for an owner's decision, for REASON."""

    def __init__(self, reason: str, header: Message) -> None:
        super().__init__(reason)
        self.reason = reason
        self.header = header


@dataclass
class Post:
    """One post between stages: what the stages so far made of it, for the ones after."""

    mailing_list: MailingList  # re-read each time a number is taken
    item: InboxItem
    parsed: Parsed
    from_addresses: list[str]
    members: list[Member] = field(default_factory=list)
    mailboxes: dict[str, str] = field(default_factory=dict)  # the members who are our own users
    authors: set[str] = field(default_factory=set)  # From and envelope sender, for membership and self-copies
    rewrite: Rewrite = "none"  # what From becomes for DMARC
    number: int = 0
    edition: compose.Edition | None = None
    shared: bytes = b""  # the part of each copy all members share (ARC set + edition), archived
    words: str | None = None  # its author and decoded text, indexed for the archive's search
    copies: Delivery = field(default_factory=Delivery)


class Stage(Protocol):
    async def process(self, post: Post) -> None: ...


class Edit(Protocol):
    """A stage that makes the copies: run off the loop, once for each number tried."""

    def process(self, post: Post) -> None: ...


class Posting:
    def __init__(
        self,
        database: Database,
        signer: Signer,
        policy: Policy,
        hostname: str,
        web_url: str,
        wake_queue: Callable[[], None],
    ) -> None:
        self._database = database
        self.stages: list[Stage] = [
            NotLooped(),
            NotAutomatic(),
            NotSpam(),
            Members(database, policy),
            FromMember(),
            NotForged(hostname),
            DmarcRewrite(),
        ]
        self.edits: list[Edit] = [
            Compose(web_url),
            Words(),
            ArcSeal(signer, hostname),
            PerMemberDkim(signer, web_url),
        ]
        self.commit = Commit(database, wake_queue)

    async def process(self, mailing_list: MailingList, item: InboxItem) -> None:
        """Pass ITEM on to the list's members, or raise Drop or Hold."""
        parsed = Parsed.of(item.body)
        post = Post(mailing_list, item, parsed, headers.authors(parsed.header))
        for stage in self.stages:
            await stage.process(post)
        while True:
            post.mailing_list = await self._database.query(
                lambda s: store.lists.list_by_id(s, item.list_id), snapshot=False
            )
            post.number = post.mailing_list.last_number + 1
            await asyncio.to_thread(self._edit, post)
            if await self.commit.process(post):
                return

    def _edit(self, post: Post) -> None:
        for edit in self.edits:
            edit.process(post)


class NotLooped:
    """A post that already carries this list's List-Id or X-Loop came round again."""

    async def process(self, post: Post) -> None:
        ours = f"<{compose.list_id(post.mailing_list)}>"
        for field_ in post.parsed.fields:
            name = headers.field_name(field_)
            value = headers.field_value(field_).lower()
            if (name == "list-id" and ours in value) or (
                name == "x-loop" and value.strip("<> ") == post.mailing_list.address
            ):
                raise Drop("loop: the post already carries this list's List-Id or X-Loop")


class NotAutomatic:
    async def process(self, post: Post) -> None:
        if not post.item.sender or bounces.is_auto_reply(post.parsed.header):
            raise Drop("an automatic reply or a bounce, not a post")


class NotSpam:
    """A post the MX's filters judged spam (its inbox item's note says why, mail/pipeline.py) waits for the owners:
    the same filters as everyone's mail, but a list's members must not all get it in their inboxes."""

    async def process(self, post: Post) -> None:
        if post.item.role == "post" and post.item.note:
            raise Hold(post.item.note, post.parsed.header)


class Members:
    """Who gets the post, and which of them are our own users (their copies go straight to a mailbox)."""

    def __init__(self, database: Database, policy: Policy) -> None:
        self._database = database
        self._policy = policy

    async def process(self, post: Post) -> None:
        post.members = await self._database.query(
            lambda s: store.lists.members(s, post.mailing_list.id), snapshot=False
        )
        post.mailboxes = await self._policy.local_mailboxes([m.address for m in post.members])
        post.authors = set(post.from_addresses) | {post.item.sender.lower()}


class FromMember:
    """Only members post without an owner's approval."""

    async def process(self, post: Post) -> None:
        if post.item.role != "approved" and not any(m.address in post.authors for m in post.members):
            raise Hold("the sender is not a member", post.parsed.header)


class NotForged:
    """A member's address, but perhaps not the member: our own Authentication-Results say SPF or DMARC failed."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname

    async def process(self, post: Post) -> None:
        if post.item.role == "approved":
            return
        failed = authcheck.forged(post.parsed.fields, self._hostname)
        if failed:
            raise Hold(f"the post fails {' and '.join(sorted(failed))} for its sender", post.parsed.header)


class DmarcRewrite:
    """How From must change for DMARC at the members' receivers ("none", "munge" or "wrap")."""

    async def process(self, post: Post) -> None:
        post.rewrite = await self._rewrite(post)

    @staticmethod
    async def _rewrite(post: Post) -> Rewrite:
        if post.mailing_list.dmarc != "auto":
            return post.mailing_list.dmarc
        if not post.from_addresses:
            return "none"
        domain = post.from_addresses[0].rpartition("@")[2]
        try:
            policy = await dmarc.lookup(domain)
        except dmarc.DmarcUnknown:
            return "munge"  # cannot tell: the safe side is our own From
        if policy is None:
            return "none"
        if policy.policy in STRICT or compose.breaks_signature(post.parsed.fields, domain):
            return "munge"
        return "none"


class Compose:
    """The numbered subject, the list's header fields, the DMARC rewrite (lists/compose.py)."""

    def __init__(self, web_url: str) -> None:
        self._web_url = web_url

    def process(self, post: Post) -> None:
        post.edition = compose.compose(post.parsed, post.mailing_list, post.number, post.rewrite, self._web_url)


class Words:
    """The post's author and text as people read them (mail/parts.py), for the archive's search: found once,
    off the loop, however many numbers the post tries."""

    def process(self, post: Post) -> None:
        if post.words is None:
            assert post.edition is not None
            # addresses as the public pages show them: a search's snippet must not hand them to harvesters
            post.words = obfuscated(f"{post.edition.author}\n{parts.plain_text(post.parsed.data)}")


class ArcSeal:
    """One ARC set over what every member gets (RFC 8617)."""

    def __init__(self, signer: Signer, hostname: str) -> None:
        self._signer = signer
        self._hostname = hostname

    def process(self, post: Post) -> None:
        assert post.edition is not None
        message = post.edition.message
        post.shared = self._signer.seal(message, post.mailing_list.domain, self._hostname) + message


class PerMemberDkim:
    """Each member's own unsubscribe link and DKIM signature; members who wrote the post get it only if they asked."""

    def __init__(self, signer: Signer, web_url: str) -> None:
        self._signer = signer
        self._web_url = web_url

    def process(self, post: Post) -> None:
        recipients = [
            m.address
            for m in post.members
            if m.enabled and not m.digest and (m.self_copy or m.address not in post.authors)
        ]
        post.copies = personalise(
            self._signer, self._web_url, post.mailing_list, post.shared, recipients, post.mailboxes
        )


class Commit:
    """Number, archive and deliver the post in one transaction, taking it out of the list's inbox; the queue
    entries share the archived post as their body."""

    def __init__(self, database: Database, wake_queue: Callable[[], None]) -> None:
        self._database = database
        self._wake_queue = wake_queue

    async def process(self, post: Post) -> bool:
        """False when another post took the number meanwhile: the copies must be made again."""
        mailing_list, item, edition, copies = post.mailing_list, post.item, post.edition, post.copies
        assert edition is not None

        def commit(tx: Tx) -> None:
            # first: a lease lost to another runner fails the commit before anything else is written
            store.lists.remove_inbox(tx, item.id, item.lease)
            if not store.lists.take_number(tx, mailing_list.id, post.number):
                raise _NumberTaken  # and the item's removal is rolled back with it
            post_id = store.lists.archive(
                tx,
                mailing_list.id,
                post.number,
                item.sender,
                edition.author,
                edition.subject,
                post.shared,
                message_id=edition.message_id,
                message_hash=edition.message_hash,
                answers=edition.answers,
            )
            search.index_list_post(tx, post_id, edition.subject, post.words or edition.author)
            delivery.commit(tx, copies, post_id)

        try:
            await self._database.transact(commit)
        except _NumberTaken:
            return False
        log.event(
            "list_posted",
            list=mailing_list.address,
            number=post.number,
            sender=f"<{item.sender}>",
            rewrite=post.rewrite,
            local=len(copies.local),
            remote=sum(len(entry.recipients) for entry in copies.queued),
            queued=len(copies.queued),
        )
        if copies.queued:
            self._wake_queue()
        return True


def personalise(
    signer: Signer,
    web_url: str,
    mailing_list: MailingList,
    shared: bytes,
    recipients: list[str],
    mailboxes: dict[str, str],
) -> Delivery:
    """Each recipient's copy of SHARED: its own one-click link, DKIM signature and VERP sender; the remote
    ones grouped by domain into queue entries."""
    prefixes = [
        compose.unsubscribe_fields(mailing_list, one_click_token(mailing_list, address), web_url)
        for address in recipients
    ]
    copy_signer = signer.copy_signer(shared, mailing_list.domain, PER_COPY_HEADERS)
    if copy_signer is not None:
        with ThreadPoolExecutor(SIGNING_THREADS) as pool:
            signatures = list(pool.map(copy_signer.sign, prefixes, chunksize=64))
        prefixes = [signature + prefix for signature, prefix in zip(signatures, prefixes, strict=True)]
    bounce_to = mailing_list.role_address("bounces")
    local: list[Copy] = []
    by_domain: dict[str, list[Entry]] = {}
    for address, prefix in zip(recipients, prefixes, strict=True):
        own = Personal(verp.bounce_address(mailing_list.address, address, mailing_list.key), prefix)
        mailbox = mailboxes.get(address)
        if mailbox is not None:
            local.append(Copy(mailbox, f"Return-Path: <{own.sender}>\r\n".encode() + own.prefix + shared))
            continue
        entries = by_domain.setdefault(address.rpartition("@")[2], [])
        if not entries or len(entries[-1].recipients) >= COPIES_PER_ENTRY:
            entries.append(Entry(new_queue_id(), bounce_to, [], shared))
        entries[-1].recipients.append(address)
        entries[-1].personal[address] = own
    return Delivery(local, [entry for entries in by_domain.values() for entry in entries])
