"""Delivery to other servers: straight to the recipient domain's MX, or through a relayhost.

Every outcome says at the source whether a retry can help (`permanent`), so
the queue never guesses from strings.

IPv6 to an MX is opt-in (`[delivery] ipv6`): Gmail and others refuse mail from an IPv6 address without a
PTR record, which most home lines cannot set. With it on, and a global IPv6 address on an interface, an MX
host's IPv6 addresses go first, and a 5.7.x refusal over IPv6 goes again over IPv4 at once.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import aiosmtplib
import dns.asyncresolver
import dns.exception
import dns.resolver

from jitaku import failures, interfaces, log
from jitaku.config import DeliverySettings, RelaySettings
from jitaku.mail.reuse import Sessions
from jitaku.mail.smtp.pipelined import Replies, Reply, Session, text_of
from jitaku.store.queue import Personal

NO_PERSONAL: Mapping[str, Personal] = {}


@dataclass(frozen=True)
class Outcome:
    recipient: str
    delivered: bool
    permanent: bool
    reply: str  # the remote server's words, e.g. "550 5.1.1 User unknown", or what went wrong in words
    host: str | None = None  # the server that said it
    # The server refused the whole session, not this recipient: its greeting, EHLO or MAIL, or the same
    # words for every recipient (a provider's 5.7.1 block of our address). A list counts it once for the
    # domain instead of once against every member there.
    session_wide: bool = False
    detail: str | None = None  # the exception behind REPLY, for the log only


class Transport(Protocol):
    async def deliver(
        self,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        personal: Mapping[str, Personal] = NO_PERSONAL,
        queue_id: str | None = None,
    ) -> list[Outcome]:
        """PERSONAL recipients each get their own transaction (own sender, own header lines) on the same session;
        QUEUE_ID names the message in the log line of each connection."""
        ...


class DeliveryError(Exception):
    """Reaching a server failed before any recipient was answered."""

    def __init__(
        self,
        reply: str,
        permanent: bool,
        host: str | None = None,
        unreachable: bool = False,
        detail: str | None = None,
    ) -> None:
        super().__init__(reply)
        self.reply = reply
        self.permanent = permanent
        self.host = host
        self.unreachable = unreachable  # no TCP connection at all: another address may do
        self.detail = detail  # the exception behind REPLY, for the log (failures.detail)


@dataclass(frozen=True)
class Endpoint:
    name: str  # what we call it in logs and TLS (SNI, certificate check)
    address: str
    source: str | None = None  # the address we connect from; None: the kernel's choice


def family(address: str) -> str:
    """How a sentence or a log line names the path to ADDRESS: "IPv4" or "IPv6"."""
    return "IPv6" if ":" in address else "IPv4"


async def addresses(name: str) -> list[str]:
    """A and AAAA of NAME through our resolver; an IP literal is itself."""
    try:
        ipaddress.ip_address(name)
        return [name]
    except ValueError:
        pass
    resolver = dns.asyncresolver.get_default_resolver()
    found: list[str] = []
    failed: list[tuple[str, dns.exception.DNSException]] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = await resolver.resolve(name, rdtype)
            found.extend(str(record) for record in answer)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            pass
        except dns.exception.DNSException as error:
            failed.append((rdtype, error))
    if not found and failed:
        rdtype, first = failed[0]
        raise DeliveryError(
            f"4.4.3 {failures.lookup(first, name, rdtype)}", permanent=False, detail=failures.detail(first)
        )
    return found


async def _connect(endpoint: Endpoint, port: int, timeout: float) -> socket.socket:
    family = socket.AF_INET6 if ":" in endpoint.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if endpoint.source is not None:
            sock.bind((endpoint.source, 0))
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (endpoint.address, port)), timeout)
    except (TimeoutError, OSError) as error:
        sock.close()
        raise DeliveryError(
            f"4.4.1 {failures.network(error, failures.peer(endpoint.name, endpoint.address, port), timeout)}",
            permanent=False,
            host=endpoint.name,
            unreachable=True,
            detail=failures.detail(error),
        ) from None
    return sock


def _reply(error: aiosmtplib.SMTPResponseException) -> str:
    return f"{error.code} {error.message}".strip()


# RFC 3463's enhanced status code; X.1.Y is about the address, X.2.Y about the mailbox: such a reply is
# about its recipient, even when every recipient of the session gets it ("5.1.1 User unknown").
_ENHANCED = re.compile(r"\b[45]\.(\d{1,3})\.\d{1,3}\b")


def _whole_session(outcomes: list[Outcome]) -> list[Outcome]:
    """Mark refusals that were the session's, not each recipient's: two or more recipients, none
    delivered, all with the same reply code and enhanced code (the text may carry a transaction's id),
    or the same words when there is no enhanced code, and that code not about an address or mailbox."""
    if len(outcomes) < 2 or any(outcome.delivered for outcome in outcomes):
        return outcomes
    kinds = set()
    for outcome in outcomes:
        enhanced = _ENHANCED.search(outcome.reply)
        if enhanced is not None and enhanced.group(1) in ("1", "2"):
            return outcomes
        kinds.add(f"{outcome.reply[:3]} {enhanced.group()}" if enhanced else outcome.reply)
    return [replace(outcome, session_wide=True) for outcome in outcomes] if len(kinds) == 1 else outcomes


# RFC 3463 X.7.Y is security or policy. Over IPv6 it is how Gmail refuses a sender whose address has no PTR
# record ("550-5.7.1 ... does not meet IPv6 sending guidelines regarding PTR records and authentication"),
# at any step of the session; the same server takes the message from our IPv4 address.
_POLICY_REFUSAL = re.compile(r"5\d\d[ -]5\.7\.\d{1,3}\b")


def _refused_over_ipv6(address: str, reply: str) -> bool:
    return family(address) == "IPv6" and _POLICY_REFUSAL.match(reply) is not None


def _transaction(host: str, recipients: Sequence[str], replies: Replies) -> list[Outcome]:
    """One outcome per recipient from what the server said to a transaction; a refused MAIL is the
    session's refusal, before any recipient."""
    if replies.mail.code != 250:
        raise DeliveryError(str(replies.mail), permanent=replies.mail.code >= 500, host=host)
    outcomes = []
    for recipient, reply in zip(recipients, replies.recipients, strict=True):
        if reply.code not in (250, 251):
            outcomes.append(Outcome(recipient, False, reply.code >= 500, str(reply), host))
        elif replies.data is None or replies.data.code != 250:
            end = replies.data or Reply(-1, "no answer to the text")  # not reached: a taken recipient gets DATA
            outcomes.append(Outcome(recipient, False, end.code >= 500, str(end), host))
        else:
            outcomes.append(Outcome(recipient, True, False, f"{replies.data.code} {replies.data.text}", host))
    return outcomes


async def _transactions(
    session: Session,
    sender: str,
    recipients: Sequence[str],
    message: bytes,
    personal: Mapping[str, Personal],
) -> list[Outcome]:
    """One transaction for the recipients who share the copy, then one per personal copy."""
    host = session.host
    text = text_of(message)
    shared = [r for r in recipients if r not in personal]
    own_copies = [(r, personal[r]) for r in recipients if r in personal]
    # each transaction names the next, whose commands then go with its text (smtp/pipelined.py)
    envelopes = [(own.sender, [r]) for r, own in own_copies] + [None]
    outcomes = (
        _transaction(host, shared, await session.transaction(sender, shared, text, envelopes[0])) if shared else []
    )
    for index, (recipient, own) in enumerate(own_copies):
        try:
            copy = text_of(own.prefix) + text
            replies = await session.transaction(own.sender, [recipient], copy, envelopes[index + 1])
            outcomes += _transaction(host, [recipient], replies)
        except DeliveryError as error:  # MAIL refused for this copy: the session itself still works
            # a refusal of our sender, before any recipient: never about the member
            outcomes.append(Outcome(recipient, False, error.permanent, error.reply, host, session_wide=True))
        except (aiosmtplib.SMTPException, OSError) as error:
            if not outcomes:
                raise
            # the session broke after some copies went: keep their results, retry the rest later
            reply = f"4.4.2 {failures.network(error, host, session.timeout)}"
            broken = Outcome(recipient, False, False, reply, host, detail=failures.detail(error))
            outcomes += [replace(broken, recipient=r) for r, _ in own_copies[index:]]
            session.close()
            break
    return outcomes


@dataclass(frozen=True)
class _Hop:
    """How to talk to one server: TLS and login policy."""

    port: int
    local_hostname: str
    timeout: float
    implicit_tls: bool = False
    try_starttls: bool = True
    require_tls: bool = False
    verify: bool = False
    credentials: tuple[str, str] | None = None


async def _open(endpoint: Endpoint, hop: _Hop) -> Session:
    """A new session to ENDPOINT, greeted, with TLS and login as HOP says, ready for transactions."""
    sock = await _connect(endpoint, hop.port, hop.timeout)
    client = aiosmtplib.SMTP(
        hostname=endpoint.name,
        sock=sock,
        local_hostname=hop.local_hostname,
        timeout=hop.timeout,
        use_tls=hop.implicit_tls,
        start_tls=False,
        validate_certs=hop.verify,
    )
    try:
        await client.connect()
        await client.ehlo()
        if not hop.implicit_tls and hop.try_starttls:
            if client.supports_extension("starttls"):
                try:
                    await client.starttls(server_hostname=endpoint.name, validate_certs=hop.verify)
                except (aiosmtplib.SMTPException, OSError) as error:
                    if hop.require_tls:
                        why = failures.network(error, endpoint.name, hop.timeout)
                        raise DeliveryError(
                            f"4.7.5 {why} (STARTTLS)", False, endpoint.name, detail=failures.detail(error)
                        ) from None
                    # opportunistic TLS (RFC 7435): a broken STARTTLS means start again in the clear
                    client.close()
                    return await _open(endpoint, replace(hop, try_starttls=False))
            elif hop.require_tls:
                raise DeliveryError(
                    f"4.7.4 {endpoint.name} does not offer STARTTLS; credentials are never sent in the clear",
                    permanent=False,
                    host=endpoint.name,
                )
        if hop.credentials is not None:
            try:
                await client.login(*hop.credentials)
            except aiosmtplib.SMTPResponseException as error:
                raise DeliveryError(
                    f"4.7.8 {endpoint.name} refused our login: {_reply(error)}", False, endpoint.name
                ) from None
            except aiosmtplib.SMTPException as error:
                raise DeliveryError(f"4.7.8 login to {endpoint.name} failed: {error}", False, endpoint.name) from None
        return Session(client, endpoint.name, hop.timeout)
    except (aiosmtplib.SMTPException, OSError) as error:
        client.close()
        raise _failure(error, endpoint, hop) from None
    except BaseException:
        client.close()
        raise


async def _session(
    sessions: Sessions,
    endpoint: Endpoint,
    hop: _Hop,
    sender: str,
    recipients: Sequence[str],
    message: bytes,
    personal: Mapping[str, Personal],
) -> list[Outcome]:
    """Deliver on a session to ENDPOINT kept from an earlier message, or a new one; keep it for the next."""
    key = (endpoint, hop)
    session = await sessions.take(key) or await _open(endpoint, hop)
    try:
        outcomes = _whole_session(await _transactions(session, sender, recipients, message, personal))
    except (aiosmtplib.SMTPException, OSError) as error:
        session.close()
        raise _failure(error, endpoint, hop) from None
    except BaseException:
        session.close()
        raise
    sessions.keep(key, session)
    return outcomes


def _failure(error: aiosmtplib.SMTPException | OSError, endpoint: Endpoint, hop: _Hop) -> DeliveryError:
    """What went wrong with ENDPOINT's session, as the queue hears it: the server's own reply when it gave
    one (permanent when 5xx), else a network failure worth trying again."""
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return DeliveryError(_reply(error), permanent=error.code >= 500, host=endpoint.name)
    why = failures.network(error, endpoint.name, hop.timeout)
    return DeliveryError(f"4.4.2 {why}", False, endpoint.name, detail=failures.detail(error))


def _failed(recipients: Sequence[str], error: DeliveryError) -> list[Outcome]:
    """Every recipient's outcome when the session failed as a whole; one with a server (error.host) is
    session-wide, one without (no such domain, a null MX) is about the recipients' addresses."""
    return [
        Outcome(r, False, error.permanent, error.reply, error.host, error.host is not None, error.detail)
        for r in recipients
    ]


class RelayTransport:
    """Everything through one smarthost, with SASL (PLAIN, LOGIN, CRAM-MD5) or IP-authenticated."""

    def __init__(self, relay: RelaySettings, local_hostname: str, timeout: float) -> None:
        credentials = (relay.username, relay.password or "") if relay.username else None
        self._relay = relay
        self._hop = _Hop(
            port=relay.port,
            local_hostname=local_hostname,
            timeout=timeout,
            implicit_tls=relay.port == 465,
            require_tls=credentials is not None,
            verify=credentials is not None,
            credentials=credentials,
        )
        self._sessions = Sessions()

    async def deliver(
        self,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        personal: Mapping[str, Personal] = NO_PERSONAL,
        queue_id: str | None = None,
    ) -> list[Outcome]:
        try:
            found = await addresses(self._relay.host)
            if not found:
                raise DeliveryError(f"4.4.4 relayhost {self._relay.host} has no address", False, self._relay.host)
            last: DeliveryError | None = None
            for address in found:
                endpoint = Endpoint(self._relay.host, address)
                try:
                    outcomes = await _session(
                        self._sessions, endpoint, self._hop, sender, recipients, message, personal
                    )
                except DeliveryError as error:
                    _log_attempt(queue_id, endpoint, error=error)
                    if not error.unreachable:
                        raise
                    last = error
                    continue
                _log_attempt(queue_id, endpoint, outcomes)
                return outcomes
            assert last is not None
            raise last
        except DeliveryError as error:
            return _failed(recipients, error)


class DirectTransport:
    """Straight to each recipient domain's MX (RFC 5321 §5.1), one connection per domain."""

    def __init__(self, port: int, local_hostname: str, timeout: float, ipv6: bool = False) -> None:
        self._hop = _Hop(port=port, local_hostname=local_hostname, timeout=timeout)
        self._sessions = Sessions()
        self._ipv6 = ipv6

    def _ipv6_source(self) -> tuple[str | None, str]:
        """The address we send from over IPv6 (None: we do not), and why not, in words for a queue entry.

        It is the global address DDNS publishes and `jitaku dns records` asks a PTR for, not one the kernel
        may prefer (a temporary privacy address, RFC 8981): the address Gmail checks has to be that one."""
        if not self._ipv6:
            return None, "[delivery] ipv6 is off"
        ours = interfaces.global_ipv6()  # asked each time: a home line's prefix comes and goes
        if ours is None:
            return None, "this host has no global IPv6 address to send from"
        return str(ours), ""

    async def deliver(
        self,
        sender: str,
        recipients: Sequence[str],
        message: bytes,
        personal: Mapping[str, Personal] = NO_PERSONAL,
        queue_id: str | None = None,
    ) -> list[Outcome]:
        by_domain: dict[str, list[str]] = {}
        for recipient in recipients:
            by_domain.setdefault(recipient.rpartition("@")[2].lower(), []).append(recipient)
        route = _Route(self._sessions, self._hop, sender, message, personal, queue_id, *self._ipv6_source())
        results = await asyncio.gather(*(route.domain(domain, group) for domain, group in by_domain.items()))
        outcomes = {outcome.recipient: outcome for group in results for outcome in group}
        return [outcomes[r] for r in recipients]


@dataclass(frozen=True)
class _Route:
    """One message's way to the MX hosts of its recipients' domains."""

    sessions: Sessions
    hop: _Hop
    sender: str
    message: bytes
    personal: Mapping[str, Personal]
    queue_id: str | None
    ipv6_source: str | None  # our address over IPv6, whose MX addresses then go first; None: IPv4 only
    no_ipv6: str  # why IPv4 only

    async def domain(self, domain: str, recipients: list[str]) -> list[Outcome]:
        """Each MX host in turn, each of its addresses in turn, until one answers for every recipient.

        A recipient an IPv6 address refused with 5.7.x goes again to the same host's IPv4 addresses at once,
        in this attempt: waiting for the retry interval would only meet the same refusal."""
        answered: dict[str, Outcome] = {}
        pending = recipients
        try:
            hosts = await mx_hosts(domain)
            last: DeliveryError | None = None
            ipv6_only: list[str] = []
            for host in hosts:
                found = await addresses(host)
                ipv4 = [a for a in found if family(a) == "IPv4"]
                ipv6 = [a for a in found if family(a) == "IPv6"]
                if self.ipv6_source is None and ipv6 and not ipv4:
                    ipv6_only.append(host)
                    continue
                untried = (ipv6 if self.ipv6_source is not None else []) + ipv4
                while untried:
                    address = untried.pop(0)
                    endpoint = Endpoint(host, address, self.ipv6_source if family(address) == "IPv6" else None)
                    try:
                        outcomes = await _session(
                            self.sessions, endpoint, self.hop, self.sender, pending, self.message, self.personal
                        )
                    except DeliveryError as error:
                        fallback = bool(ipv4) and _refused_over_ipv6(endpoint.address, error.reply)
                        _log_attempt(self.queue_id, endpoint, error=error, then="IPv4" if fallback else None)
                        if fallback:
                            untried = [a for a in untried if family(a) == "IPv4"]
                        elif error.permanent:
                            raise
                        last = error  # a server that cannot take it now: try the next one (§5.1)
                        continue
                    again = [o for o in outcomes if ipv4 and _refused_over_ipv6(endpoint.address, o.reply)]
                    _log_attempt(self.queue_id, endpoint, outcomes, then="IPv4" if again else None)
                    pending = [o.recipient for o in again]
                    answered.update((o.recipient, o) for o in outcomes if o.recipient not in pending)
                    if not pending:
                        return [answered[r] for r in recipients]
                    untried = [a for a in untried if family(a) == "IPv4"]
                    last = DeliveryError(again[0].reply, True, host)
            if last is None and ipv6_only:
                last = DeliveryError(
                    f"4.4.4 {_hosts_of(domain, ipv6_only)} IPv6 addresses only, and {self.no_ipv6}", False
                )
            raise last or DeliveryError(f"4.4.4 no address for any MX host of {domain}", False)
        except DeliveryError as error:
            failed = {outcome.recipient: outcome for outcome in _failed(pending, error)}
            return [answered.get(r) or failed[r] for r in recipients]


def _hosts_of(domain: str, hosts: list[str]) -> str:
    """Who has them, in a sentence: 'the MX host of example.net, mx.example.net, has'."""
    if len(hosts) == 1:
        return f"the MX host of {domain}, {hosts[0]}, has"
    return f"the MX hosts of {domain}, {', '.join(hosts)}, have"


def _log_attempt(
    queue_id: str | None,
    endpoint: Endpoint,
    outcomes: Sequence[Outcome] = (),
    error: DeliveryError | None = None,
    then: str | None = None,
) -> None:
    """One line per connection: which address and family, and what came of it (THEN: where the rest goes)."""
    refused = [o for o in outcomes if not o.delivered]
    log.event(
        "delivery_attempt",
        queue_id=queue_id,
        host=endpoint.name,
        address=endpoint.address,
        family=family(endpoint.address),
        source=endpoint.source,
        delivered=None if error else len(outcomes) - len(refused),
        recipients=None if error else len(outcomes),
        reply=error.reply if error else refused[0].reply if refused else None,
        then=then,
    )


async def mx_hosts(domain: str) -> list[str]:
    """MX targets by preference; the domain itself when there is no MX (implicit MX, RFC 5321 §5.1)."""
    resolver = dns.asyncresolver.get_default_resolver()
    try:
        answer = await resolver.resolve(domain, "MX")
    except dns.resolver.NoAnswer:
        return [domain]
    except dns.exception.DNSException as error:
        permanent = isinstance(error, dns.resolver.NXDOMAIN)  # RFC 3463 X.1.2: bad destination system address
        raise DeliveryError(
            f"{'5.1.2' if permanent else '4.4.3'} {failures.lookup(error, domain, 'MX')}",
            permanent,
            detail=failures.detail(error),
        ) from None
    records = sorted(answer, key=lambda record: record.preference)
    if len(records) == 1 and str(records[0].exchange) == ".":
        raise DeliveryError(f"5.1.10 {domain} accepts no mail (null MX, RFC 7505)", permanent=True)
    return [str(record.exchange).rstrip(".") for record in records if str(record.exchange) != "."]


def build(relay: RelaySettings | None, delivery: DeliverySettings, local_hostname: str) -> Transport:
    """A relayhost is the user's choice of server: it is reached at whatever addresses it has, as before."""
    if relay is None:
        return DirectTransport(delivery.port, local_hostname, delivery.timeout, delivery.ipv6)
    return RelayTransport(relay, local_hostname, delivery.timeout)
