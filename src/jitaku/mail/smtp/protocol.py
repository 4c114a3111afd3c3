"""The SMTP machine on an asyncio transport: one write per batch of replies, reading paused when the client
sends on while a decision is awaited (so a pipelining client cannot pile commands up in memory) or while it
leaves our replies unread, STARTTLS, the idle timeout, the listener's connection limits and a 421 at shutdown.

aiosmtpd cost 773 µs of CPU a message against 282 for this (issue 20): a coroutine per line and a
StreamReader per connection, where this reads whole batches with bytes.find.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import cast

from jitaku import log
from jitaku.config import SmtpSettings
from jitaku.connections import DESCRIPTORS, GOODBYE_TIMEOUT, ConnectionLimit, OpenSessions
from jitaku.mail import login, trace
from jitaku.mail.login import BadPassword, TryLater
from jitaku.mail.smtp.machine import (
    Close,
    Event,
    Greeted,
    Login,
    Machine,
    MailFrom,
    Message,
    RcptTo,
    Settings,
    StartTls,
)
from jitaku.mail.smtp_server import Handler
from jitaku.mail.spool import Spool, Spooler

TLS_HANDSHAKE_TIMEOUT = 20.0  # seconds for a client to finish the handshake after STARTTLS


class SmtpProtocol(asyncio.Protocol):
    """One connection to the MX or submission."""

    def __init__(
        self,
        handler: Handler,
        hostname: str,
        tls_context: ssl.SSLContext | None,
        settings: SmtpSettings,
        spooler: Spooler,
        limit: ConnectionLimit,
        sessions: OpenSessions,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """LOOP: the running one, given by the listener so that each connection does not ask for it (asking
        is a getpid(2) call: asyncio checks the loop was not inherited across a fork)."""
        self._handler = handler
        self._hostname = hostname
        self._tls_context = tls_context
        self._settings = settings
        self._spooler = spooler
        self._limit = limit
        self._sessions = sessions
        self._loop = loop or asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._machine: Machine | None = None
        self._trace: trace.Session | None = None
        self._client = "?"
        self._counted = False
        self._task: asyncio.Task[None] | None = None
        self._reading = True
        self._writing = True
        self._eof = False
        self._commands = 0
        self._last_command = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._lost = False
        self._closed: asyncio.Future[None] | None = None  # made only for a shutdown to wait on

    # --- asyncio's side

    def connection_made(self, made: asyncio.BaseTransport) -> None:
        self._transport = transport = cast(asyncio.Transport, made)  # uvloop's are one in all but the name
        DESCRIPTORS.accepted(transport)
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if peer else "?"
        refused = self._limit.admit(self._client)
        if refused is not None:
            # Postfix's words for its smtpd_client_connection_count_limit
            who = "from your address" if refused == "address" else "now; try again later"
            transport.write(f"421 4.7.0 {self._hostname} Error: too many connections {who}\r\n".encode())
            transport.close()
            return
        self._counted = True
        self._sessions.add(self, self._shut_down)
        listener = self._handler.listener
        settings = self._settings
        self._machine = Machine(
            Settings(
                hostname=self._hostname,
                max_message_size=settings.max_message_size,
                max_header_size=settings.max_header_size,
                max_header_fields=settings.max_header_fields,
                submission=listener.authenticated,
                starttls=self._tls_context is not None and not listener.implicit_tls,
                tls=listener.implicit_tls,
                loopback=login.is_loopback(self._client),
            ),
            self._spooler.spool,
        )
        self._last_command = self._loop.time()
        self._timer = self._loop.call_later(settings.timeout, self._check_idle)
        self._drive()

    def data_received(self, data: bytes) -> None:
        machine = self._machine
        if machine is None:
            return
        machine.feed(data)
        if self._task is None:
            self._drive()
        else:
            # Paused only now: a client that waits for each reply, as most do, costs no pausing and resuming
            # (two epoll_ctl calls a message); one that sends on leaves the rest in the kernel's buffer.
            self._pause()

    def eof_received(self) -> bool:
        """The client has sent all it will: answer what it sent (a commit under way ends first), then close.
        (A TLS transport cannot stay half open: it closes at once.)"""
        self._eof = True
        if self._machine is None or self._machine.tls:
            return False
        if self._task is None:
            self._drive()
        return True

    def pause_writing(self) -> None:
        self._writing = False
        self._pause()

    def resume_writing(self) -> None:
        self._writing = True
        if self._task is None:
            self._resume()

    def connection_lost(self, error: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        if self._closed is not None:
            self._closed.set_result(None)
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
        if self._machine is not None:
            self._machine.close()
        self._sessions.discard(self)
        if self._counted:
            self._counted = False
            self._limit.release(self._client)

    # --- the session

    def _pause(self) -> None:
        if self._reading and self._transport is not None and not self._transport.is_closing():
            self._reading = False
            self._transport.pause_reading()

    def _resume(self) -> None:
        if not self._reading and self._writing and self._transport is not None and not self._transport.is_closing():
            self._reading = True
            self._transport.resume_reading()

    def _drive(self) -> None:
        """Run the machine over what was fed, until it needs more input or an answer from outside."""
        machine, transport = self._machine, self._transport
        assert machine is not None and transport is not None
        while (event := machine.next_event()) is not None:
            if isinstance(event, Greeted):
                self._handler.greeted()
            elif not isinstance(event, Close) and not self._answered_now(machine, event):
                if isinstance(event, StartTls):
                    self._pause()  # nothing sent after STARTTLS may be read before the handshake (CVE-2011-0411)
                self._task = self._loop.create_task(self._ask(event))
                break
        if machine.commands != self._commands:
            self._commands = machine.commands
            self._last_command = self._loop.time()
        self._flush()
        if machine.closed or (self._eof and self._task is None):
            transport.close()

    def _flush(self) -> None:
        assert self._machine is not None and self._transport is not None
        out = self._machine.output()
        if out:
            self._transport.write(out)

    def _session(self) -> trace.Session:
        """Made again only when HELO, TLS or AUTH changed it: MAIL, RCPT and DATA each ask for it."""
        machine = self._machine
        assert machine is not None
        session, helo = self._trace, machine.helo or ""
        if (
            session is None
            or session.helo != helo
            or session.tls != machine.tls
            or session.authenticated_as != machine.user
        ):
            session = self._trace = trace.Session(self._client, helo, machine.tls, machine.user)
        return session

    def _answered_now(self, machine: Machine, event: Event) -> bool:
        """Answer MAIL or RCPT at once when the handler can decide without a wait (on the MX, nearly always):
        a task, a turn of the loop, and pausing and resuming the reading (two epoll_ctl calls) saved."""
        handler = self._handler
        try:
            if isinstance(event, MailFrom):
                reply = handler.mail_now(self._session(), event.sender)
                if reply is None:
                    return False
                machine.answer(reply)
                return True
            if isinstance(event, RcptTo):
                answer = handler.rcpt_now(self._session(), machine.transaction, event.recipient)
                if answer is None:
                    return False
                machine.answer(*answer)
                return True
        except Exception as error:  # a bug: as in _ask, the session goes on, the client told to try again
            log.event("smtp_failed", client=self._client, error=repr(error))
            machine.answer("451 4.3.0 Error: local error in processing, try again later")
            return True
        return False

    async def _ask(self, event: Event) -> None:
        machine = self._machine
        assert machine is not None
        handler = self._handler
        try:
            if isinstance(event, MailFrom):
                machine.answer(await handler.mail(self._session(), event.sender))
            elif isinstance(event, RcptTo):
                reply, route = await handler.rcpt(self._session(), machine.transaction, event.recipient)
                machine.answer(reply, route)
            elif isinstance(event, Message):
                assert isinstance(event.data, Spool)
                try:
                    reply = await handler.data(self._session(), machine.transaction, event.data)
                finally:
                    event.data.discard()
                machine.answer(reply)
            elif isinstance(event, Login):
                await self._login(machine, event)
            elif isinstance(event, StartTls):
                if not await self._start_tls(machine):
                    return
        except Exception as error:  # a bug: the session goes on, the client told to try again
            log.event("smtp_failed", client=self._client, error=repr(error))
            machine.answer("451 4.3.0 Error: local error in processing, try again later")
        finally:
            self._task = None
            self._last_command = self._loop.time()  # the client's time to answer starts with our reply
        if self._transport is None or self._transport.is_closing():
            return
        self._resume()
        self._drive()

    async def _login(self, machine: Machine, event: Login) -> None:
        listener = self._handler.listener.name
        try:
            user = await self._handler.authenticator.check(self._client, event.username, event.password, listener)
        except TryLater as refused:
            machine.answer(f"454 4.7.0 {str(refused).capitalize()}")
            return
        except BadPassword:
            machine.answer("535 5.7.8 Authentication credentials invalid")
            return
        log.event("auth_ok", client=self._client, user=user, listener=listener)
        machine.logged_in(user)

    async def _start_tls(self, machine: Machine) -> bool:
        """The handshake on this connection; False when it failed (the connection is closed)."""
        transport = self._transport
        assert transport is not None and self._tls_context is not None
        self._flush()  # the 220
        try:
            encrypted = await self._loop.start_tls(
                transport, self, self._tls_context, server_side=True, ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
            log.event("tls_failed", client=self._client, error=repr(error))
            transport.abort()
            self._task = None
            self.connection_lost(None)  # the TLS layer does not tell us, having never told us it was made
            return False
        if encrypted is None:
            self._task = None
            self.connection_lost(None)
            return False
        self._transport = encrypted
        self._reading = True
        machine.tls_started()
        return True

    def _check_idle(self) -> None:
        """RFC 5321 §4.5.3.2.7: the timer runs from the last command, not the last byte (a client that dribbles
        data is cut off as an idle one is), and only while the client owes us a command: a commit slower than
        the timeout is answered, not cut off with a 421 that has the client send again what we stored."""
        timeout = self._settings.timeout
        if self._task is not None:
            self._timer = self._loop.call_later(timeout, self._check_idle)
            return
        idle = self._loop.time() - self._last_command
        if idle < timeout:
            self._timer = self._loop.call_later(timeout - idle, self._check_idle)
            return
        log.event("smtp_timeout", client=self._client)
        self._say_goodbye(f"421 4.4.2 {self._hostname} Error: timeout exceeded")

    def _say_goodbye(self, reply: str) -> None:
        transport, machine = self._transport, self._machine
        if transport is None or machine is None or transport.is_closing():
            return
        machine.close(reply)
        if self._task is not None:
            self._task.cancel()  # before it can run again: a message in DATA is never acknowledged after this
        self._flush()
        transport.close()

    async def _shut_down(self) -> None:
        """The daemon is stopping: 421 (RFC 5321 §3.8), whatever the session was doing, and close, waiting
        GOODBYE_TIMEOUT at most for the client to take it. A message one the store had committed already is sent
        again by its client: a duplicate rather than a loss."""
        self._say_goodbye(f"421 4.3.2 {self._hostname} service shutting down")
        if self._lost:
            return
        if self._closed is None:
            self._closed = self._loop.create_future()
        try:
            async with asyncio.timeout(GOODBYE_TIMEOUT):
                await asyncio.shield(self._closed)
        except TimeoutError:
            if self._transport is not None:
                self._transport.abort()
