"""SMTP listeners: the MX (strangers, local recipients only) and submission (AUTH, any recipient).

The protocol is mail/smtp's; every decision is asked of `Policy` here and every accepted message is handed
to `Pipeline` (protocol apart from policy).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from jitaku import log
from jitaku.mail import headers, trace
from jitaku.mail.filters.greylist import REPLY as GREYLISTED
from jitaku.mail.filters.greylist import Greylisting
from jitaku.mail.login import Authenticator
from jitaku.mail.pipeline import Arrival, Pipeline, Rejected
from jitaku.mail.policy import Accepted, Policy, Refused
from jitaku.mail.smtp.machine import Transaction
from jitaku.mail.spool import Spool
from jitaku.store import tallies
from jitaku.store.tallies import Tally


def has_bare_line_end(data: bytes) -> bool:
    """RFC 5321 §2.3.8: lines end in CRLF; a bare CR or LF is how SMTP smuggling hides a second message.

    Counting is ~10x faster than a regex on large messages, and it runs on the event loop (a few ms for
    the largest message `max_message_size` lets in).
    """
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


@dataclass(frozen=True)
class Listener:
    """What kind of port this is."""

    name: str  # "mx", "submission", "submissions"
    authenticated: bool  # AUTH required, any recipient allowed after it
    implicit_tls: bool = False


MAX_HOPS = 50  # Received headers, as Postfix's hopcount_limit
TOO_MANY_RECIPIENTS = "452 4.5.3 Error: too many recipients"


class Handler:
    """The decisions of one listener, asked by each of its sessions (mail/smtp/protocol.py)."""

    def __init__(
        self,
        listener: Listener,
        policy: Policy,
        pipeline: Pipeline,
        authenticator: Authenticator,
        max_recipients: int,
        tally: Tally,
        greylisting: Greylisting | None = None,
    ) -> None:
        self.listener = listener
        self.policy = policy
        self.pipeline = pipeline
        self.authenticator = authenticator
        self.max_recipients = max_recipients
        self.tally = tally
        # on the MX only, when [filters.greylist] is on
        self.greylisting = None if listener.authenticated else greylisting

    def greeted(self) -> None:
        """A client that greets us is a session on the MX; a bare connect (a port check, a scanner) is not."""
        if not self.listener.authenticated:
            self.tally.count(tallies.SMTP_SESSIONS)

    async def mail(self, session: trace.Session, sender: str) -> str:
        user = session.authenticated_as
        if user is not None and not await self.policy.owns(user, sender):
            return f"553 5.7.1 <{sender}>: Sender address rejected: not owned by user {user}"
        return "250 2.1.0 Ok"

    def mail_now(self, session: trace.Session, sender: str) -> str | None:
        """`mail`'s reply when it needs no wait (on the MX, always); None when it must be awaited."""
        return "250 2.1.0 Ok" if session.authenticated_as is None else None

    async def rcpt(
        self, session: trace.Session, transaction: Transaction, recipient: str
    ) -> tuple[str, Accepted | None]:
        if len(transaction.recipients) >= self.max_recipients:
            return TOO_MANY_RECIPIENTS, None
        decision = await self.policy.recipient(recipient, authenticated=session.authenticated_as is not None)
        if (
            isinstance(decision, Accepted)
            and self.greylisting is not None
            and session.authenticated_as is None
            and await self.greylisting.refuses(session.client_ip, session.helo, transaction.sender or "", recipient)
        ):
            sender = f"<{transaction.sender or ''}>"
            log.event("greylisted", client=session.client_ip, sender=sender, to=recipient)
            self.tally.count(tallies.GREYLISTED)
            return GREYLISTED, None
        return self._rcpt_reply(session, transaction, recipient, decision)

    def rcpt_now(
        self, session: trace.Session, transaction: Transaction, recipient: str
    ) -> tuple[str, Accepted | None] | None:
        """`rcpt`'s answer when the policy can give it without a read; None when it must be awaited."""
        if len(transaction.recipients) >= self.max_recipients:
            return TOO_MANY_RECIPIENTS, None
        decision = self.policy.recipient_now(recipient, authenticated=session.authenticated_as is not None)
        if decision is None or (isinstance(decision, Accepted) and self.greylisting and not session.authenticated_as):
            return None  # a read, or greylisting's write, to wait for
        return self._rcpt_reply(session, transaction, recipient, decision)

    def _rcpt_reply(
        self, session: trace.Session, transaction: Transaction, recipient: str, decision: Accepted | Refused
    ) -> tuple[str, Accepted | None]:
        if not isinstance(decision, Accepted):
            log.event(
                "rcpt_rejected",
                client=session.client_ip,
                sender=f"<{transaction.sender}>",
                to=recipient,
                reply=decision.reply,
            )
            return decision.reply, None
        return "250 2.1.5 Ok", decision

    async def data(self, session: trace.Session, transaction: Transaction, spool: Spool) -> str:
        try:
            async with spool.loaded() as data:
                return await self._accept(session, transaction, data)
        except OSError as error:  # the spool file could not be read back: nothing was committed
            log.event("spool_failed", client=session.client_ip, error=repr(error))
            return "451 4.3.0 Error: queue file read error, try again later"

    async def _accept(self, session: trace.Session, transaction: Transaction, data: bytes) -> str:
        if has_bare_line_end(data):
            return "554 5.6.0 Message contains a bare CR or LF; lines must end in CRLF (RFC 5321 §2.3.8)"
        if headers.hops(data) > MAX_HOPS:
            return f"554 5.4.6 Too many hops: more than {MAX_HOPS} Received headers, a mail loop (RFC 5321 §6.3)"
        user = session.authenticated_as
        if user is not None:
            # a From field up to max_header_size takes a while to parse: off the loop
            for author in await asyncio.to_thread(headers.from_addresses, data):
                if not await self.policy.owns(user, author):
                    return f"553 5.7.1 From: <{author}> is not an address of user {user}"
        arrival = Arrival(
            sender=transaction.sender or "",
            recipients=tuple(transaction.routes),
            data=data,
            session=session,
        )
        try:
            queue_id = await self.pipeline.accept(arrival)
        except Rejected as rejected:  # the filters' one reply; nothing was stored (pipeline's Filter logged it)
            return rejected.reply
        except Exception as error:  # nothing was committed: the client must try again
            log.event("accept_failed", client=session.client_ip, sender=f"<{arrival.sender}>", error=repr(error))
            return "451 4.3.0 Error: queue file write error, try again later"
        if not self.listener.authenticated:
            self.tally.count(tallies.MAIL_IN)
        # one line a message: it names the local mailboxes the commit delivered to (pipeline's Commit
        # logs only what it queues or hands to a list)
        local = sorted({r.mailbox for r in arrival.recipients if r.mailbox is not None})
        log.event(
            "accepted",
            queue_id=queue_id,
            client=session.client_ip,
            listener=self.listener.name,
            sender=f"<{arrival.sender}>",
            nrcpt=len(arrival.recipients),
            size=len(data),
            user=user,
            delivered=",".join(local) or None,
        )
        return f"250 2.0.0 Ok: queued as {queue_id}"
