"""A received message's path, top to bottom: trace -> scan -> check -> filter -> route -> sign -> vouch -> commit.

`Pipeline.stages` lists them in that order, one object each, and each stage's
work is done by its own module (the filters' in mail/filters/). A stage may refuse the message (Rejected,
with the one reply to DATA), before anything is stored. `accept` returns only once the message is committed, so the SMTP
server may say 250 (a 250 means committed); local recipients are delivered in the same
transaction, remote ones are queued and the queue is woken.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from jitaku import log
from jitaku.config import FiltersSettings
from jitaku.mail import authcheck, delivery, headers, reverse_dns, trace
from jitaku.mail.delivery import Copy, Delivery, Entry, ToList, new_queue_id
from jitaku.mail.dkim import Signer
from jitaku.mail.filters import decision, senders
from jitaku.mail.filters.rulebook import Rulebook
from jitaku.mail.filters.scanning import Scan, Scanning
from jitaku.mail.filters.verdict import EngineError, Envelope, Verdict
from jitaku.mail.policy import Accepted
from jitaku.store import Database, Tx, tallies
from jitaku.store import filters as rules


@dataclass(slots=True)
class Arrival:
    sender: str  # "" for the null sender
    recipients: tuple[Accepted, ...]
    data: bytes
    session: trace.Session | None  # None: made here (a bounce), not received over SMTP


@dataclass(slots=True)
class Message:
    """A message on its way: the header lines the stages add, above the data as it arrived.

    Each stored copy is joined once, at the end: prepending at every stage copied a 22 MB message
    four times over (issue 15).
    """

    added: bytes
    data: bytes

    def joined(self, above: bytes = b"") -> bytes:
        return b"".join((above, self.added, self.data))


@dataclass(slots=True)
class Routed:
    """Where the recipients lead: local mailboxes (each once, however many aliases led there), remote
    addresses, and list addresses."""

    local: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    listed: list[Accepted] = field(default_factory=list)


@dataclass(slots=True)
class InFlight:
    """One message between stages: what the stages so far made of it, for the ones after."""

    arrival: Arrival
    queue_id: str
    message: Message
    # ALSO commits with the message: the queue forgets the recipients a bounce reports in its transaction
    also: Callable[[Tx], None] | None
    routed: Routed = field(default_factory=Routed)
    results: bytes = b""  # our Authentication-Results line, by which an allow rule trusts a sender's name
    outgoing: bytes = b""  # the copy that leaves for remote recipients, signed when it may be
    for_lists: Message | None = None  # the copy a list gets, when it differs from MESSAGE
    # the X-Spam lines the filters wrote: our word to our own users, on the copies stored here alone (a copy
    # that leaves, for a remote recipient or a list, carries none, nor does its DKIM signature cover them)
    filter_headers: bytes = b""
    allowed_headers: bytes = b""  # those of a copy an allow rule put in INBOX (filters/decision.py)
    junk: frozenset[str] = frozenset()  # the recipients whose copy the filters put in Junk
    allowed: frozenset[str] = frozenset()  # those whose allow rule let the message through
    junk_why: dict[str, str] = field(default_factory=dict)  # why, by recipient: a list holds its post for it
    client_name: str = ""  # the client's forward-confirmed reverse DNS name, looked up while a spam engine is on
    scan: Scan | None = None  # the engines' scan under way, begun before Check, gathered by Filter


class Rejected(Exception):
    """A stage's refusal of the message: REPLY is the one answer to DATA, and nothing is stored."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class Stage(Protocol):
    async def process(self, flight: InFlight) -> None: ...


class Pipeline:
    def __init__(
        self,
        hostname: str,
        database: Database,
        signer: Signer,
        wake: Callable[[], None],
        wake_lists: Callable[[], None],
        filters: FiltersSettings | None = None,
        scanning: Scanning | None = None,
        count: Callable[[str], None] | None = None,
    ) -> None:
        """FILTERS and SCANNING, the spam and virus filters: without them, no engine is asked, and only the
        allow and block lists of `jitaku filter` apply. COUNT(kind) tallies what the filters made of a message
        (store/tallies.py's FILTER_* kinds), for the health check (health/filters.py COUNTED)."""
        settings = filters or FiltersSettings()
        self.stages: list[Stage] = [
            Trace(hostname, names=settings.rspamd is not None or settings.spamassassin is not None),
            BeginScan(scanning or Scanning(settings, [])),
            Check(hostname),
            Filter(settings, database, count),
            Route(),
            Sign(signer),
            Vouch(hostname),
            Commit(database, wake, wake_lists),
        ]

    async def accept(self, arrival: Arrival, also: Callable[[Tx], None] | None = None) -> str:
        """Run every stage; return the queue id once the message is durable.

        ALSO runs in the same transaction: the queue commits a bounce together
        with forgetting the recipients it reports, so a crash loses neither.
        """
        flight = InFlight(arrival, new_queue_id(), Message(b"", arrival.data), also)
        try:
            for stage in self.stages:
                await stage.process(flight)
        finally:
            if flight.scan is not None:  # refused or cancelled before Filter gathered it
                flight.scan.cancel()
        return flight.queue_id


class Trace:
    """The Received header of mail that came over SMTP (RFC 5321 §4.4), with a stranger's confirmed name in it
    when NAMES (a spam engine is on: rspamd is told it, SpamAssassin reads it there)."""

    def __init__(self, hostname: str, names: bool = False) -> None:
        self._hostname = hostname
        self._names = names

    async def process(self, flight: InFlight) -> None:
        arrival = flight.arrival
        if arrival.session is None:
            return
        if self._names and arrival.session.authenticated_as is None:
            flight.client_name = await reverse_dns.confirmed_name(arrival.session.client_ip)
        recipients = [r.recipient for r in arrival.recipients]
        added = trace.received(arrival.session, self._hostname, flight.queue_id, recipients, flight.client_name)
        flight.message = Message(added, arrival.data)


class BeginScan:
    """Ask the engines about a message received over SMTP: the virus scanner at once, in parallel with Check (it
    reads none of our results), the spam engines from Filter, once Check has written what they read
    (filters/scanning.py). Our own bounces are not scanned."""

    def __init__(self, scanning: Scanning) -> None:
        self._scanning = scanning

    async def process(self, flight: InFlight) -> None:
        arrival, session = flight.arrival, flight.arrival.session
        if session is None or not self._scanning.on:
            return
        envelope = Envelope(
            client=session.client_ip,
            helo=session.helo,
            sender=arrival.sender,
            recipients=tuple(r.recipient for r in arrival.recipients),
            queue_id=flight.queue_id,
            user=session.authenticated_as,
            hostname=flight.client_name,
        )
        flight.scan = self._scanning.begin(flight.message.joined(), envelope, session.authenticated_as is not None)


class Check:
    """SPF, DKIM and DMARC of what strangers send; our own users' mail is vouched for by AUTH. What comes with
    a session came over SMTP, whose server refused it had a line not ending in CRLF (smtp_server.py)."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname

    async def process(self, flight: InFlight) -> None:
        session, message = flight.arrival.session, flight.message
        if session is None or session.authenticated_as is not None:
            return
        data = authcheck.strip_forged(message.data, self._hostname)
        results = await authcheck.authentication_results(
            data, self._hostname, session.client_ip, flight.arrival.sender, session.helo, crlf_checked=True
        )
        flight.results = results
        flight.message = Message(results + message.added, data)


class Filter:
    """The engines' verdicts (BeginScan's scan, finished after Check so that rspamd reads our
    Authentication-Results), and the allow and block lists of each recipient, whose allow rules trust a name
    only as Check's results vouch for it (filters/senders.py): the message is refused whole (Rejected), or each
    recipient's copy goes to INBOX or Junk, with the X-Spam headers above the copies stored here (Commit). A
    bounce made here is not filtered."""

    def __init__(
        self, settings: FiltersSettings, database: Database, count: Callable[[str], None] | None = None
    ) -> None:
        self._settings = settings
        self._rulebook = Rulebook(database)
        self._count = count or (lambda kind: None)

    async def process(self, flight: InFlight) -> None:
        arrival, session = flight.arrival, flight.arrival.session
        if session is None:
            return
        recipients = [r.recipient for r in arrival.recipients]
        authenticated = session.authenticated_as is not None
        verdicts: list[Verdict] = []
        failures: list[EngineError] = []
        if flight.scan is not None:
            verdicts, failures = await flight.scan.finish(flight.message.joined())
        # a user's own submission is scanned for viruses alone: no list applies to it, nor is its From read here
        found = await self._rulebook.current() if not authenticated else ()
        if not verdicts and not failures and not found:
            return

        mailboxes = {r.recipient: r.mailbox for r in arrival.recipients}
        named = await senders.read(arrival.sender, flight.message.data, flight.results) if found else None

        def listed(recipient: str) -> str | None:
            if named is None:
                return None
            return rules.judge(found, recipient, named.names, named.vouched, mailboxes.get(recipient))

        made = decision.decide(self._settings, verdicts, failures, recipients, listed, authenticated)
        if made.refused is not None:
            log.event("filtered", queue_id=flight.queue_id, action="refused", reply=str(made.refused))
            if made.refused.code == 554:
                self._count(tallies.FILTER_VIRUSES)
            elif made.refused.code == 550:
                self._count(tallies.FILTER_REJECTED)
            raise Rejected(str(made.refused))
        junk = frozenset(o.recipient for o in made.outcomes if o.place == "junk")
        if junk:
            log.event("filtered", queue_id=flight.queue_id, action="junk", to=",".join(sorted(junk)))
            self._count(tallies.FILTER_JUNKED)
        if failures:
            self._count(tallies.FILTER_UNCHECKED)
        flight.junk = junk
        flight.junk_why = {o.recipient: o.why for o in made.outcomes if o.place == "junk"}
        flight.filter_headers = made.headers
        flight.allowed_headers = made.allowed_headers
        flight.allowed = frozenset(o.recipient for o in made.outcomes if o.why == decision.ALLOWED)


class Route:
    async def process(self, flight: InFlight) -> None:
        flight.routed = route(flight.arrival.recipients)


class Sign:
    """DKIM-sign mail leaving with a From of one of our domains (RSA takes ~2 ms, and the From field
    of a stranger's header may be long to parse: off the loop)."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    async def process(self, flight: InFlight) -> None:
        if flight.routed.remote:
            flight.outgoing = await asyncio.to_thread(self._signed, flight.message.joined())

    def _signed(self, message: bytes) -> bytes:
        domains = {address.rpartition("@")[2] for address in headers.from_addresses(message)}
        if len(domains) == 1:
            (domain,) = domains
            if self._signer.signs_for(domain):
                return self._signer.sign(message, domain)
        return message


class Vouch:
    """Our own user's post carries our word for it, which a list's ARC set records (RFC 8617 §4.1.1)."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname

    async def process(self, flight: InFlight) -> None:
        session, message = flight.arrival.session, flight.message
        if not flight.routed.listed or session is None or session.authenticated_as is None:
            return
        vouched = f"Authentication-Results: {self._hostname}; auth=pass smtp.auth={session.authenticated_as}\r\n"
        flight.for_lists = Message(
            vouched.encode() + message.added, authcheck.strip_forged(message.data, self._hostname)
        )


class Commit:
    """Every copy in one transaction (mail/delivery.py), then a word to the queue and the list runner. Only the
    copies stored in a mailbox here carry the filters' X-Spam lines; where they wrote them, a list's copy carries
    neither theirs nor the sender's own."""

    def __init__(self, database: Database, wake: Callable[[], None], wake_lists: Callable[[], None]) -> None:
        self._database = database
        self._wake = wake
        self._wake_lists = wake_lists

    async def process(self, flight: InFlight) -> None:
        sender, routed, also = flight.arrival.sender, flight.routed, flight.also
        ours = flight.filter_headers
        read_here = routed.local or (routed.listed and flight.for_lists is None)
        kept = _theirs_dropped(flight.message, ours) if read_here else flight.message
        # RFC 5321 §4.4: final delivery records the envelope sender
        return_path = f"Return-Path: <{sender}>\r\n".encode()
        delivered = kept.joined(return_path + ours) if routed.local else b""
        for_lists = _theirs_dropped(flight.for_lists, ours) if flight.for_lists is not None else kept
        posted = for_lists.joined() if routed.listed else b""
        junk = _junk_mailboxes(flight.arrival.recipients, flight.junk)
        # a copy an allow rule let into INBOX says so (filters/decision.py): one more join of the message
        allowed = _allowed_mailboxes(flight.arrival.recipients, flight.allowed) - junk
        let_through = delivered
        if allowed and flight.allowed_headers != ours:
            let_through = kept.joined(return_path + flight.allowed_headers)
        stored = [Copy(box, let_through if box in allowed else delivered, box in junk) for box in routed.local]
        copies = Delivery(
            stored,
            [Entry(flight.queue_id, sender, routed.remote, flight.outgoing)] if routed.remote else [],
            [_to_list(accepted, sender, posted, flight.junk_why.get(accepted.recipient)) for accepted in routed.listed],
        )

        def commit(tx: Tx) -> None:
            delivery.commit(tx, copies)
            if also is not None:
                also(tx)

        await self._database.transact(commit)
        queue_id = flight.queue_id
        if flight.arrival.session is None:  # over SMTP, the server's "accepted" line names the mailboxes
            for mailbox in routed.local:
                log.event("delivered", queue_id=queue_id, to=mailbox, relay="local", dsn="2.0.0", size=len(delivered))
        if routed.remote:
            size = len(flight.outgoing)
            log.event("queued", queue_id=queue_id, sender=f"<{sender}>", nrcpt=len(routed.remote), size=size)
            self._wake()
        for accepted in routed.listed:
            log.event("delivered", queue_id=queue_id, to=accepted.recipient, relay="list", dsn="2.0.0")
        if routed.listed:
            self._wake_lists()


def _theirs_dropped(message: Message, ours: bytes) -> Message:
    """MESSAGE for the copies our own users read (their mailboxes, below OURS, the filters' X-Spam lines; a
    list's, whose members' mail programs read it as ours): without the sender's own X-Spam-Status and kin
    where the filters wrote ours, for a mail program's rules to read only ours. A copy for a remote recipient
    keeps them: its server reads them as what they are, and we vouch for nothing there."""
    if not ours:
        return message
    return Message(message.added, decision.without_ours(message.data))


def route(recipients: tuple[Accepted, ...]) -> Routed:
    local = sorted({r.mailbox for r in recipients if r.mailbox is not None})
    remote = [r.recipient for r in recipients if r.mailbox is None and r.list_role is None]
    listed = list({r.recipient: r for r in recipients if r.list_role is not None}.values())
    return Routed(local, remote, listed)


def _junk_mailboxes(recipients: tuple[Accepted, ...], junk: frozenset[str]) -> set[str]:
    """The mailboxes whose copy goes to Junk: those every recipient leading there was junked for (a user reached
    by two addresses, one of which allows the sender, gets it in INBOX)."""
    leading: dict[str, list[bool]] = {}
    for accepted in recipients:
        if accepted.mailbox is not None:
            leading.setdefault(accepted.mailbox, []).append(accepted.recipient in junk)
    return {mailbox for mailbox, junked in leading.items() if all(junked)}


def _allowed_mailboxes(recipients: tuple[Accepted, ...], allowed: frozenset[str]) -> set[str]:
    """The mailboxes an allow rule let the message into: those of an address that allows the sender."""
    return {r.mailbox for r in recipients if r.mailbox is not None and r.recipient in allowed}


def _to_list(accepted: Accepted, sender: str, message: bytes, junked: str | None) -> ToList:
    """A post the filters junked goes to the list with why, and the list holds it for its owners (issue 23)."""
    assert accepted.list_role is not None
    list_address, role = accepted.list_role
    note = f"spam: {junked}" if junked is not None and role == "post" else None
    return ToList(list_address, role, accepted.recipient, sender, message, note)
