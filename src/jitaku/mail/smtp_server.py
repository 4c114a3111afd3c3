"""SMTP listeners on aiosmtpd: the MX (strangers, local recipients only) and submission (AUTH, any recipient).

The protocol is aiosmtpd's; every decision is asked of `Policy` and every
accepted message is handed to `Pipeline` (protocol apart from policy).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from email._header_value_parser import get_addr_spec, get_angle_addr
from email.errors import HeaderParseError
from typing import Any, AnyStr

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from jitaku import log
from jitaku.config import SmtpSettings
from jitaku.connections import ConnectionLimit, OpenSessions, close_within
from jitaku.mail import headers, login, trace
from jitaku.mail.login import Authenticator, BadPassword, TryLater
from jitaku.mail.pipeline import Arrival, Pipeline
from jitaku.mail.policy import Accepted, Policy
from jitaku.mail.spool import Spool, Spooler
from jitaku.store import tallies
from jitaku.store.tallies import Tally


def has_bare_line_end(data: bytes) -> bool:
    """RFC 5321 §2.3.8: lines end in CRLF; a bare CR or LF is how SMTP smuggling hides a second message.

    Counting is ~10x faster than a regex on large messages, and it runs on the event loop (a few ms for
    the largest message `max_message_size` lets in).
    """
    crlf = data.count(b"\r\n")
    return data.count(b"\r") != crlf or data.count(b"\n") != crlf


_LINE_TOO_LONG = "500 5.5.6 Line too long (RFC 5321 §4.5.3.1.6)"
_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"

# aiosmtpd's own fixed replies, given the enhanced status codes (RFC 3463) our other replies carry.
_ENHANCED = {
    "552 Error: message size exceeds fixed maximum message size": _TOO_BIG,
    "503 Error: need MAIL command": "503 5.5.1 Error: need MAIL command",
    "503 Error: need RCPT command": "503 5.5.1 Error: need RCPT command",
    "503 Error: nested MAIL command": "503 5.5.1 Error: nested MAIL command",
    "500 Error: bad syntax": "500 5.5.2 Error: bad syntax",
    "502 Command not implemented": "502 5.5.1 Command not implemented",
    "554 Command refused due to lack of security": "530 5.7.0 Must issue a STARTTLS command first",
}


@dataclass(frozen=True)
class Listener:
    """What kind of port this is."""

    name: str  # "mx", "submission", "submissions"
    authenticated: bool  # AUTH required, any recipient allowed after it
    implicit_tls: bool = False


class RoutedEnvelope(Envelope):
    """aiosmtpd's envelope plus the policy's decision for each accepted recipient, and the message
    (in a spool, where aiosmtpd keeps it in memory as original_content)."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: list[Accepted] = []
        self.spool: Spool | None = None


def client_ip(session: Session) -> str:
    peer: Any = session.peer
    return str(peer[0]) if peer else "?"


def is_loopback(peer: Any) -> bool:
    try:
        return login.is_loopback(str(peer[0]))
    except (TypeError, IndexError):
        return False


class JitakuSMTP(SMTP):
    """aiosmtpd's SMTP with our AUTH handling (async password checks, failure limits, TLS unless loopback),
    our DATA (into a spool, bounded), the listener's connection limits and a 421 at shutdown."""

    def __init__(
        self,
        handler: Handler,
        spooler: Spooler,
        settings: SmtpSettings,
        limit: ConnectionLimit,
        sessions: OpenSessions,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, **kwargs)
        self._handler_ref = handler
        self._spooler = spooler
        self._max_header_size = settings.max_header_size
        self._max_header_fields = settings.max_header_fields
        self._limit = limit
        self._sessions = sessions
        self._counted: str | None = None  # the client address this connection is counted under
        self._refused: str | None = None  # why the connection limit refused it
        self._pending_login: LoginPassword | None = None
        self._in_rcpt = False
        self._greeted = False

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd 1.4.6's own version, less the typing.Protocol class it defines on
        # every call (a third of the cost of each MAIL and RCPT).
        if not arg:
            return "", ""
        address: Any
        try:
            if arg.lstrip().startswith("<"):
                address, rest = get_angle_addr(arg)
            else:
                address, rest = get_addr_spec(arg)
        except (HeaderParseError, IndexError):  # the stdlib parser overruns on "x@" (an empty domain)
            return None, None
        addr: str = address.addr_spec
        if self.local_part_limit and len(addr.rpartition("@")[0]) > self.local_part_limit:
            return None, None
        return addr, rest

    def _create_envelope(self) -> RoutedEnvelope:
        return RoutedEnvelope()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        starttls = self._original_transport is not None  # the same connection, now over TLS
        super().connection_made(transport)
        assert self.session is not None
        if not starttls:
            ip = client_ip(self.session)
            self._refused = self._limit.admit(ip)
            if self._refused is None:
                self._counted = ip
            self._sessions.add(self, self._shut_down)
        # RFC 8314 / our rule: passwords only over TLS, except from this very machine.
        if is_loopback(self.session.peer):
            self._auth_require_tls = False

    async def _handle_client(self) -> None:
        if self._refused is None:
            await super()._handle_client()
            return
        # Postfix's words for its smtpd_client_connection_count_limit
        who = "from your address" if self._refused == "address" else "now; try again later"
        await self.push(f"421 4.7.0 {self.hostname} Error: too many connections {who}")
        assert self.transport is not None
        self.transport.close()

    async def _shut_down(self) -> None:
        """The daemon is stopping: 421 (RFC 5321 §3.8), whatever the session was doing, and close (boundedly:
        jitaku.connections.close_within). The session's handler is cancelled in the same step, before it can run
        again: a message in DATA is never acknowledged after the 421 (one the store had committed already is sent
        again by its client, a duplicate rather than a loss)."""
        writer = self._writer  # on the TLS transport after STARTTLS
        if writer.is_closing():
            return
        writer.write(f"421 4.3.2 {self.hostname} service shutting down\r\n".encode())
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        await close_within(writer)

    def connection_lost(self, error: Exception | None) -> None:
        self._sessions.discard(self)
        if self._counted is not None:
            self._limit.release(self._counted)
            self._counted = None
        super().connection_lost(error)

    async def push(self, status: AnyStr) -> None:
        # Replies may echo what the client sent; undecodable bytes come back as "?" (found by fuzzing).
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else str(status)
        text = text.encode("utf-8", "replace").decode("utf-8")
        if text.rstrip() == "250-AUTH":
            return  # aiosmtpd would advertise AUTH with no mechanisms on the MX
        if self._in_rcpt and text.startswith("553 5.1.3") and not (self.session and self.session.authenticated):
            # A recipient aiosmtpd cannot even parse ("a@b@c", route lists) is a relay attempt to us.
            text = "554 5.7.1 Relay access denied: malformed recipient address"
        await super().push(_ENHANCED.get(text, text))

    async def smtp_HELO(self, hostname: str) -> None:
        self._count_session()
        await super().smtp_HELO(hostname)

    async def smtp_EHLO(self, hostname: str) -> None:
        self._count_session()
        await super().smtp_EHLO(hostname)

    def _count_session(self) -> None:
        """A client that greets us is a session on the MX; a bare connect (a port check, a scanner) is not."""
        if not self._greeted and not self._handler_ref.listener.authenticated:
            self._handler_ref.tally.count(tallies.SMTP_SESSIONS)
        self._greeted = True

    async def smtp_RCPT(self, arg: str) -> None:
        self._in_rcpt = True
        try:
            await super().smtp_RCPT(arg)
        finally:
            self._in_rcpt = False

    async def smtp_DATA(self, arg: str) -> None:
        """aiosmtpd's DATA, reading into a Spool and keeping nothing past a limit.

        aiosmtpd kept every fragment of a line it had already found too long: one 500 MB line without
        CRLF cost 470 MB (issue 15). The reply to a refused message still waits for the end of the data,
        as aiosmtpd's and Postfix's do (RFC 5321 §4.2.5).
        """
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        envelope = self.envelope
        assert isinstance(envelope, RoutedEnvelope)
        if not envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        spool = self._spooler.spool()
        try:
            status = await self._receive(spool)
            if status is None:
                envelope.spool = spool
                status = await self._call_handler_hook("DATA")
        finally:
            spool.discard()
        self.envelope = self._create_envelope()  # what aiosmtpd's _set_post_data_state does
        await self.push(status)

    async def _receive(self, spool: Spool) -> str | None:
        """Read the data up to the lone dot into SPOOL; the reply that refuses it, if it must be refused."""
        session = self.session
        assert session is not None
        refusal: str | None = None
        size = 0
        in_header, header_size, fields = True, 0, 0
        rest_of_long_line = False
        while True:
            try:
                line = await self._reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as overrun:
                # RFC 5321 §4.5.3.1.6: a line is at most 1,000 octets; read past this one, and keep nothing of
                # the message, refused now, while its data goes on
                size += len(await self._reader.read(overrun.consumed))
                refusal = refusal or _LINE_TOO_LONG
                rest_of_long_line = True
                spool.discard()
                continue
            except asyncio.CancelledError:
                self._writer.close()
                raise
            if rest_of_long_line:
                rest_of_long_line = False
                continue
            if line == b".\r\n":
                return refusal
            size += len(line)
            if refusal is not None:
                continue
            if self.data_size_limit and size > self.data_size_limit:
                refusal = _TOO_BIG
            elif len(line) > self.line_length_limit:
                refusal = _LINE_TOO_LONG
            elif in_header:
                if line == b"\r\n":
                    in_header = False
                else:
                    header_size += len(line)
                    fields += line[:1] not in (b" ", b"\t")
                    refusal = self._header_refusal(header_size, fields)
            if refusal is None:
                try:
                    spool.add(line[1:] if line[:1] == b"." else line)  # RFC 5321 §4.5.2 dot-stuffing
                except OSError as error:
                    log.event("spool_failed", client=client_ip(session), error=repr(error))
                    refusal = "452 4.3.1 Insufficient system storage"
            if refusal is not None:
                spool.discard()

    def _header_refusal(self, size: int, fields: int) -> str | None:
        """A bound on the header section, which every later step parses (issue 15): Postfix cuts a field
        at header_size_limit (100 KiB) and goes on; we refuse rather than alter what we store or relay."""
        if size > self._max_header_size:
            return f"552 5.3.4 Message header too large: more than {self._max_header_size} bytes"
        if fields > self._max_header_fields:
            return f"552 5.3.4 Too many header fields: more than {self._max_header_fields}"
        return None

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        # aiosmtpd calls this synchronously; keep the credentials and check them in smtp_AUTH,
        # off the event loop (argon2 takes tens of milliseconds).
        self._pending_login = auth_data
        return AuthResult(success=False, handled=True)

    async def smtp_AUTH(self, arg: str) -> None:
        assert self.session is not None
        self._pending_login = None
        await super().smtp_AUTH(arg)
        credentials, self._pending_login = self._pending_login, None
        if credentials is None:
            return
        client = client_ip(self.session)
        listener = self._handler_ref.listener.name
        username = credentials.login.decode("utf-8", "replace")
        password = credentials.password.decode("utf-8", "replace")
        try:
            user = await self._handler_ref.authenticator.check(client, username, password, listener)
        except TryLater as refused:
            await self.push(f"454 4.7.0 {str(refused).capitalize()}")
            return
        except BadPassword:
            await self.push("535 5.7.8 Authentication credentials invalid")
            return
        self.session.authenticated = True
        self.session.auth_data = user
        log.event("auth_ok", client=client, user=user, listener=listener)
        await self.push("235 2.7.0 Authentication successful")


MAX_HOPS = 50  # Received headers, as Postfix's hopcount_limit

# How aiosmtpd holds the null sender (RFC 5321 §4.5.5): an empty mail_from would mean "no MAIL yet".
NULL_SENDER = "<>"


class Handler:
    """aiosmtpd hooks for one listener."""

    def __init__(
        self,
        listener: Listener,
        policy: Policy,
        pipeline: Pipeline,
        authenticator: Authenticator,
        max_recipients: int,
        tally: Tally,
    ) -> None:
        self.listener = listener
        self.policy = policy
        self.pipeline = pipeline
        self.authenticator = authenticator
        self.max_recipients = max_recipients
        self.tally = tally

    def _user(self, session: Session) -> str | None:
        if self.listener.authenticated and session.authenticated:
            return str(session.auth_data)
        return None

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: RoutedEnvelope, address: str, options: list[str]
    ) -> str:
        user = self._user(session)
        if self.listener.authenticated and not await self.policy.owns(user or "", address):
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user {user}"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: RoutedEnvelope, address: str, options: list[str]
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Error: too many recipients"
        decision = await self.policy.recipient(address, authenticated=self._user(session) is not None)
        if not isinstance(decision, Accepted):
            log.event(
                "rcpt_rejected",
                client=client_ip(session),
                sender=f"<{envelope.mail_from}>",
                to=address,
                reply=decision.reply,
            )
            return decision.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        envelope.routes.append(decision)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: RoutedEnvelope) -> str:
        assert envelope.spool is not None
        try:
            async with envelope.spool.loaded() as data:
                return await self._accept(session, envelope, data)
        except OSError as error:  # the spool file could not be read back: nothing was committed
            log.event("spool_failed", client=client_ip(session), error=repr(error))
            return "451 4.3.0 Error: queue file read error, try again later"

    async def _accept(self, session: Session, envelope: RoutedEnvelope, data: bytes) -> str:
        if has_bare_line_end(data):
            return "554 5.6.0 Message contains a bare CR or LF; lines must end in CRLF (RFC 5321 §2.3.8)"
        if headers.hops(data) > MAX_HOPS:
            return f"554 5.4.6 Too many hops: more than {MAX_HOPS} Received headers, a mail loop (RFC 5321 §6.3)"
        user = self._user(session)
        if user is not None:
            # a From field up to max_header_size takes a while to parse: off the loop
            for author in await asyncio.to_thread(headers.from_addresses, data):
                if not await self.policy.owns(user, author):
                    return f"553 5.7.1 From: <{author}> is not an address of user {user}"
        arrival = Arrival(
            sender="" if envelope.mail_from == NULL_SENDER else envelope.mail_from or "",
            recipients=tuple(envelope.routes),
            data=data,
            session=trace.Session(
                client_ip=client_ip(session),
                helo=session.host_name or "",
                tls=session.ssl is not None,
                authenticated_as=user,
            ),
        )
        try:
            queue_id = await self.pipeline.accept(arrival)
        except Exception as error:  # nothing was committed: the client must try again
            log.event("accept_failed", client=client_ip(session), sender=f"<{arrival.sender}>", error=repr(error))
            return "451 4.3.0 Error: queue file write error, try again later"
        if not self.listener.authenticated:
            self.tally.count(tallies.MAIL_IN)
        log.event(
            "accepted",
            queue_id=queue_id,
            client=client_ip(session),
            listener=self.listener.name,
            sender=f"<{arrival.sender}>",
            nrcpt=len(arrival.recipients),
            size=len(data),
            user=user,
        )
        return f"250 2.0.0 Ok: queued as {queue_id}"


def protocol_factory(
    handler: Handler,
    hostname: str,
    tls_context: ssl.SSLContext | None,
    settings: SmtpSettings,
    spooler: Spooler,
    limit: ConnectionLimit,
    sessions: OpenSessions,
) -> Callable[[], JitakuSMTP]:
    listener = handler.listener

    def build() -> JitakuSMTP:
        return JitakuSMTP(
            handler,
            spooler,
            settings,
            limit,
            sessions,
            hostname=hostname,
            ident="ESMTP jitaku",
            data_size_limit=settings.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            tls_context=None if listener.implicit_tls else tls_context,
            require_starttls=False,
            timeout=settings.timeout,
            auth_required=listener.authenticated,
            auth_require_tls=True,
            authenticator=lambda *args: AuthResult(success=False),
            auth_exclude_mechanism=[] if listener.authenticated else ["PLAIN", "LOGIN"],
        )

    return build
