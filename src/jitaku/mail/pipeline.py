"""A received message's path, top to bottom: trace -> check -> route -> sign -> commit.

Every stage is a call into its own module. `accept` returns only once the
message is committed, so the SMTP server may say 250 (principle 2); local
recipients are delivered in the same transaction, remote ones are queued and
the queue is woken.
"""

from __future__ import annotations

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
from jitaku.store import queue as queue_rows


@dataclass(frozen=True)
class Arrival:
    sender: str  # "" for the null sender
    recipients: tuple[Accepted, ...]
    data: bytes
    session: trace.Session | None  # None: made here (a bounce), not received over SMTP


def new_queue_id() -> str:
    return secrets.token_hex(6).upper()


class Pipeline:
    def __init__(self, hostname: str, database: Database, signer: Signer, wake: Callable[[], None]) -> None:
        self._hostname = hostname
        self._database = database
        self._signer = signer
        self._wake = wake

    async def accept(self, arrival: Arrival, also: Callable[[Connection], None] | None = None) -> str:
        """Run every stage; return the queue id once the message is durable.

        ALSO runs in the same transaction: the queue commits a bounce together
        with forgetting the recipients it reports, so a crash loses neither.
        """
        queue_id = new_queue_id()
        message = arrival.data
        session = arrival.session
        if session is not None:
            # trace
            recipients = [r.recipient for r in arrival.recipients]
            message = trace.received(session, self._hostname, queue_id, recipients) + message
            # check: only what strangers send; our own users' mail is vouched for by AUTH
            if session.authenticated_as is None:
                message = authcheck.strip_forged(message, self._hostname)
                message = (
                    await authcheck.authentication_results(
                        message, self._hostname, session.client_ip, arrival.sender, session.helo
                    )
                    + message
                )
        # route
        local = sorted({r.mailbox for r in arrival.recipients if r.mailbox is not None})
        remote = [r.recipient for r in arrival.recipients if r.mailbox is None]
        # sign
        outgoing = self._sign(message) if remote else message
        # commit
        def commit(connection: Connection) -> None:
            for mailbox in local:
                mailstore.append(connection, mailbox, return_path + message)
            if remote:
                queue_rows.enqueue(connection, queue_id, arrival.sender, remote, outgoing, time.time())
            if also is not None:
                also(connection)

        # RFC 5321 §4.4: final delivery records the envelope sender
        return_path = f"Return-Path: <{arrival.sender}>\r\n".encode()
        await self._database.write(commit)
        for mailbox in local:
            log.event("delivered", queue_id=queue_id, to=mailbox, relay="local", dsn="2.0.0", size=len(message))
        if remote:
            log.event("queued", queue_id=queue_id, sender=f"<{arrival.sender}>", nrcpt=len(remote), size=len(outgoing))
            self._wake()
        return queue_id

    def _sign(self, message: bytes) -> bytes:
        domains = {address.rpartition("@")[2] for address in headers.from_addresses(message)}
        if len(domains) == 1:
            (domain,) = domains
            if self._signer.signs_for(domain):
                return self._signer.sign(message, domain)
        return message
