"""A client's session of a line protocol (IMAP, POP3), from its greeting to its end (serve), and its connection:
lines in, each within an idle timeout; responses out, no faster than the client reads them and never waiting
on it for longer than a write timeout.

A large response (a message of tens of megabytes) goes to the transport in pieces, each once the client has
read what was before it, so a session holds one piece of it in the transport at a time; a client that stops
reading for the write timeout is cut off (issue 15: three IMAP sessions that stopped reading a FETCH 1:*
BODY.PEEK[] held 5 GB, for ever, since drain() waited on them without a timeout).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from jitaku import log
from jitaku.connections import close_within
from jitaku.mail import login

PIECE = 64 * 1024  # bytes of a large response handed to the transport at a time
HIGH_WATER = 256 * 1024  # bytes the transport may hold before we wait for the client to read


class Closed(Exception):
    """The session is over."""


@dataclass(frozen=True)
class LoggedIn:
    """A user whose password was right. A command on a user's mail takes one, so none can run before login."""

    address: str


class Session(Protocol):
    """What serve needs of a protocol's session: who is at the other end, and who logged in there."""

    @property
    def client(self) -> str: ...

    @property
    def user(self) -> LoggedIn | None: ...


def logged_in_as(session: Session) -> str | None:
    """The address SESSION logged in as, for its log lines: none before login."""
    return session.user.address if session.user is not None else None


async def serve(
    connection: Connection,
    session: Session,
    logins: login.Logins,
    greeting: bytes,
    command: Callable[[], Awaitable[None]],
    shutting_down: bytes,
) -> None:
    """GREETING, then COMMAND again and again until the client leaves (or is cut off: Closed), the daemon stops
    (SHUTTING_DOWN is the client's last line) or a bug of ours ends the session; then its login is given back."""
    try:
        await connection.send(greeting)
        while True:
            await command()
    except Closed:
        pass
    except asyncio.CancelledError:  # the daemon is stopping (jitaku.connections.OpenSessions)
        await connection.shut_down(shutting_down)
    except Exception as error:  # a bug of ours must cost one session, never the daemon
        log.event(
            f"{connection.protocol}_crashed", client=session.client, user=logged_in_as(session), error=repr(error)
        )
    finally:
        if session.user is not None:
            logins.close(session.user.address, session.client)
        connection.close()


class Connection:
    """Lines in, responses out, with the timers. PROTOCOL names the connection in logs; GOODBYE starts the
    line that tells a client why it is dropped ("* BYE" in IMAP, "-ERR" in POP3)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        write_timeout: float,
        protocol: str,
        goodbye: bytes,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.write_timeout = write_timeout
        self.protocol = protocol
        self._goodbye = goodbye
        self._streaming = False  # a response is half written: any other line now would be read as part of it
        self._deadline: float | None = None  # when the read under way times out, on the event loop's clock
        self._reading: asyncio.Task[object] | None = None  # the task that waits for it
        self._watchdog: asyncio.TimerHandle | None = None
        self._expired = False  # the watchdog cancelled the read

    async def line(self, timeout: float) -> bytes:
        return await self._within(self.reader.readuntil(b"\n"), timeout)

    async def _within(self, reading: Awaitable[bytes], timeout: float) -> bytes:
        """What READING gets; Closed when the client goes away, idles TIMEOUT seconds or overruns a line.

        Not wait_for: in 3.11 it drops a cancel that comes with the line, and the session would serve on
        through the daemon's stop, which waits for it. Nor asyncio.timeout: a timer made and cancelled for each
        line cost a twentieth of the event loop's time under ten IMAP clients. One timer (the watchdog) wakes
        at the earliest deadline of a read; a read that ended meanwhile leaves it nothing to do, and a read
        still under way with a later deadline has it wake again then. Like asyncio.timeout, it cancels the
        reading task, and a cancel of the daemon's that comes with it is kept.
        """
        task = asyncio.current_task()
        assert task is not None, "a session reads in a task"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        self._deadline, self._reading = deadline, task
        if self._watchdog is None or self._watchdog.when() > deadline:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._watchdog = loop.call_at(deadline, self._watch, deadline)
        cancelling = task.cancelling()
        try:
            try:
                return await reading
            finally:  # before anything else awaits: the watchdog is for the read alone
                self._deadline = self._reading = None
        except asyncio.CancelledError:
            if not self._expired:
                raise
            self._expired = False
            if task.uncancel() > cancelling:  # the daemon is stopping too
                raise
            await self.send(self._goodbye + b" autologout: idle too long")
            raise Closed from None
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            raise Closed from None
        except asyncio.LimitOverrunError:
            await self.send(self._goodbye + b" line too long")
            raise Closed from None

    def _watch(self, when: float) -> None:
        """The watchdog, set for WHEN: the read under way, if any, is over its time or has it woken at its own."""
        self._watchdog = None
        if self._deadline is None or self._reading is None:
            return  # no read under way: the next one sets it again
        if self._deadline <= when:
            self._expired = True
            self._reading.cancel()
            return
        self._watchdog = asyncio.get_running_loop().call_at(self._deadline, self._watch, self._deadline)

    def close(self) -> None:
        """The session is over: its watchdog goes with it (it would hold the connection until it woke)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self.writer.close()

    async def send(self, *lines: bytes) -> None:
        """LINES, each ended with CRLF."""
        self.writer.write(b"".join([line + b"\r\n" for line in lines if line]))
        await self._drain()

    async def stream(self, pieces: Iterable[bytes]) -> None:
        """PIECES, as they are (the caller ends the response with CRLF): a large one goes to the transport a
        PIECE at a time, each after the client has read what was before it."""
        small: list[bytes] = []  # written together: one system call, not one per piece
        self._streaming = True
        for piece in pieces:
            if len(piece) <= PIECE:
                small.append(piece)
                continue
            self.writer.write(b"".join(small))
            small.clear()
            view = memoryview(piece)
            for start in range(0, len(view), PIECE):
                self.writer.write(view[start : start + PIECE])
                if self.writer.transport.get_write_buffer_size() > HIGH_WATER:
                    await self._drain()
        self.writer.write(b"".join(small))
        self._streaming = False
        if self.writer.transport.get_write_buffer_size() > HIGH_WATER:
            await self._drain()

    async def shut_down(self, line: bytes) -> None:
        """The daemon is stopping: LINE (with CRLF), unless a response is half written, and close (a client that
        does not read cannot hold the stop: jitaku.connections.close_within)."""
        if not self._streaming:
            self.writer.write(line + b"\r\n")
        await close_within(self.writer)

    async def _drain(self) -> None:
        """Wait until the client has read enough of what we sent, for at most the write timeout.

        Not wait_for, whose task hands the event loop over even when drain() has nothing to wait for: after
        STARTTLS's reply, the loop read the client's TLS hello as plain text before start_tls() could take
        the socket, and the handshake hung (one STARTTLS in twenty). drain() waits only while the transport
        holds more than its high-water mark: below it there is nothing to wait for, and no timer is made.
        uvloop's transport holds every response until the end of the loop's turn: a timer was made and
        cancelled for each, with nothing to wait for.
        """
        transport = self.writer.transport
        if transport.get_write_buffer_size() <= transport.get_write_buffer_limits()[1] and not transport.is_closing():
            return
        try:
            async with asyncio.timeout(self.write_timeout):
                await self.writer.drain()
        except (ConnectionError, ssl.SSLError):
            raise Closed from None
        except TimeoutError:
            log.event(f"{self.protocol}_write_timeout", client=login.client_of(self.writer), seconds=self.write_timeout)
            self.writer.transport.abort()
            raise Closed from None
