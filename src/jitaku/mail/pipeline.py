"""A received message's path, top to bottom: trace -> check -> route -> sign -> commit.

`Pipeline.accept` calls the stages in that order, one line each, and each
stage's work is done by its own module. `accept` returns only once the
message is committed, so the SMTP server may say 250 (principle 2); local
recipients are delivered in the same transaction, remote ones are queued and
the queue is woken.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from jitaku import log
from jitaku.mail import authcheck, headers, trace
from jitaku.mail.dkim import Signer
from jitaku.mail.policy import Accepted
from jitaku.store import Database, mailstore
from jitaku.store import lists as list_rows
from jitaku.store import queue as queue_rows


@dataclass(frozen=True)
class Arrival:
    sender: str  # "" for the null sender
    recipients: tuple[Accepted, ...]
    data: bytes
    session: trace.Session | None  # None: made here (a bounce), not received over SMTP


@dataclass(frozen=True)
class Message:
    """A message on its way: the header lines the stages add, above the data as it arrived.

    Each stored copy is joined once, at the end: prepending at every stage copied a 22 MB message
    four times over (issue 15).
    """

    added: bytes
    data: bytes

    def joined(self, above: bytes = b"") -> bytes:
        return b"".join((above, self.added, self.data))


def new_queue_id() -> str:
    return secrets.token_hex(6).upper()


class Pipeline:
    def __init__(
        self,
        hostname: str,
        database: Database,
        signer: Signer,
        wake: Callable[[], None],
        wake_lists: Callable[[], None],
    ) -> None:
        self._hostname = hostname
        self._database = database
        self._signer = signer
        self._wake = wake
        self._wake_lists = wake_lists

    async def accept(self, arrival: Arrival, also: Callable[[Connection], None] | None = None) -> str:
        """Run every stage; return the queue id once the message is durable.

        ALSO runs in the same transaction: the queue commits a bounce together
        with forgetting the recipients it reports, so a crash loses neither.
        """
        queue_id = new_queue_id()
        message = self._trace(arrival, queue_id)
        message = await self._check(arrival, message)
        local, remote, listed = route(arrival.recipients)
        outgoing = await self._sign(message) if remote else b""
        for_lists = self._vouch(arrival, message) if listed else message
        await self._commit(queue_id, arrival.sender, local, message, remote, outgoing, listed, for_lists, also)
        return queue_id

    def _trace(self, arrival: Arrival, queue_id: str) -> Message:
        if arrival.session is None:
            return Message(b"", arrival.data)
        recipients = [r.recipient for r in arrival.recipients]
        return Message(trace.received(arrival.session, self._hostname, queue_id, recipients), arrival.data)

    async def _check(self, arrival: Arrival, message: Message) -> Message:
        """SPF, DKIM and DMARC of what strangers send; our own users' mail is vouched for by AUTH."""
        session = arrival.session
        if session is None or session.authenticated_as is not None:
            return message
        data = authcheck.strip_forged(message.data, self._hostname)
        results = await authcheck.authentication_results(
            data, self._hostname, session.client_ip, arrival.sender, session.helo
        )
        return Message(results + message.added, data)

    def _vouch(self, arrival: Arrival, message: Message) -> Message:
        """Our own user's post carries our word for it, which a list's ARC set records (RFC 8617 §4.1.1)."""
        session = arrival.session
        if session is None or session.authenticated_as is None:
            return message
        vouched = f"Authentication-Results: {self._hostname}; auth=pass smtp.auth={session.authenticated_as}\r\n"
        return Message(vouched.encode() + message.added, authcheck.strip_forged(message.data, self._hostname))

    async def _sign(self, message: Message) -> bytes:
        """DKIM-sign mail leaving with a From of one of our domains (RSA takes ~2 ms, and the From field
        of a stranger's header may be long to parse: off the loop)."""
        return await asyncio.to_thread(self._signed, message.joined())

    def _signed(self, message: bytes) -> bytes:
        domains = {address.rpartition("@")[2] for address in headers.from_addresses(message)}
        if len(domains) == 1:
            (domain,) = domains
            if self._signer.signs_for(domain):
                return self._signer.sign(message, domain)
        return message

    async def _commit(
        self,
        queue_id: str,
        sender: str,
        local: list[str],
        message: Message,
        remote: list[str],
        outgoing: bytes,
        listed: list[Accepted],
        for_lists: Message,
        also: Callable[[Connection], None] | None,
    ) -> None:
        # RFC 5321 §4.4: final delivery records the envelope sender
        delivered = message.joined(f"Return-Path: <{sender}>\r\n".encode()) if local else b""
        posted = for_lists.joined() if listed else b""

        def commit(connection: Connection) -> None:
            for mailbox in local:
                mailstore.append(connection, mailbox, delivered)
            if remote:
                queue_rows.enqueue(connection, queue_id, sender, remote, outgoing, time.time())
            for accepted in listed:
                assert accepted.list_role is not None
                list_address, role = accepted.list_role
                list_rows.add_inbox(connection, list_address, role, accepted.recipient, sender, posted, time.time())
            if also is not None:
                also(connection)

        await self._database.write(commit)
        for mailbox in local:
            log.event("delivered", queue_id=queue_id, to=mailbox, relay="local", dsn="2.0.0", size=len(delivered))
        if remote:
            log.event("queued", queue_id=queue_id, sender=f"<{sender}>", nrcpt=len(remote), size=len(outgoing))
            self._wake()
        for accepted in listed:
            log.event("delivered", queue_id=queue_id, to=accepted.recipient, relay="list", dsn="2.0.0")
        if listed:
            self._wake_lists()


def route(recipients: tuple[Accepted, ...]) -> tuple[list[str], list[str], list[Accepted]]:
    """Local mailboxes (each once, however many aliases led there), remote addresses, and list addresses."""
    local = sorted({r.mailbox for r in recipients if r.mailbox is not None})
    remote = [r.recipient for r in recipients if r.mailbox is None and r.list_role is None]
    listed = list({r.recipient: r for r in recipients if r.list_role is not None}.values())
    return local, remote, listed
