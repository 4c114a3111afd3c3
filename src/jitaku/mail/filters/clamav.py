"""ClamAV's clamd, spoken to with INSTREAM over TCP or a Unix socket (`[filters.clamav] address`).

The protocol (clamd(8)): `zINSTREAM\\0`, then the message in chunks, each a 4-byte big-endian length and that
many bytes, then a zero length; clamd answers one NUL-terminated line, `stream: OK`, `stream: NAME FOUND`, or
`... ERROR` (for example `INSTREAM size limit exceeded. ERROR`, after which it hangs up).

Size: at most `[filters.clamav] max_size` bytes of a message are sent. clamd refuses a stream longer than its own
`StreamMaxLength`, so that setting must be at least `max_size`, or every message longer than StreamMaxLength
becomes an EngineError. clamd's MaxFileSize and MaxScanSize apply to the stream too: below `max_size`, a message
between them and `max_size` is scanned only partly, or, with AlertExceedsMax, is "Heuristics.Limits.Exceeded.
MaxFileSize FOUND", which this client passes on as a virus like any other name (scanning.py makes it a scan not
finished). A longer message is scanned on its first `max_size` bytes only, and when nothing is found there it
counts as clean but not whole: the verdict's reason says how much was scanned, and the delivered copy says so in
X-Virus-Status (decision.py). It is not an EngineError because the engine is not at fault, and `on_error =
"tempfail"` would otherwise refuse every large message forever; `max_size` defaults to the largest message the MX
accepts, so it happens only where the site chose so.

Connections: each is an IDSESSION (`zIDSESSION\\0`; replies then start with the command's number, "1: ", "2: "),
used by one scan at a time, so replies come in order; at most `concurrency` at once, the rest of the scans wait
their turn within the same timeout. One idle for `IDLE_REUSE` seconds or more is closed rather than reused,
below clamd's IdleTimeout (30 s by default), and one that clamd closed anyway (a restart) is replaced once, within
the same timeout: scanning twice is harmless.
"""

from __future__ import annotations

import asyncio
import re
import struct
import time
from dataclasses import dataclass

from jitaku.config import ClamavSettings, EngineAddress
from jitaku.mail.filters.verdict import EngineError, Envelope, Verdict, reason

NAME = "clamav"
CHUNK = 256 * 1024  # bytes per INSTREAM chunk: clamd reads each into a buffer of StreamMaxLength at most
MAX_REPLY = 1024  # bytes of a reply read at most: clamd's are one short line
IDLE_REUSE = 10.0  # seconds a connection may wait in the pool; clamd's IdleTimeout must be longer
_FOUND = re.compile(r"stream: ([\x21-\x7e][\x20-\x7e]{0,200}) FOUND")  # printable: the name goes into a 554


class _Closed(EngineError):
    """The connection ended before any answer: on a reused connection, clamd may have closed it while idle."""


@dataclass
class _Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    commands: int = 0  # sent so far: the next reply's number is one more
    idle_since: float = 0.0


class Clamav:
    """A clamd client implementing verdict.Scanner; `ping()` for the health check."""

    name = NAME

    def __init__(self, settings: ClamavSettings, timeout: float, concurrency: int = 8) -> None:
        self.address: EngineAddress = settings.address
        self.max_size = settings.max_size
        self.timeout = timeout
        self.concurrency = concurrency
        self.connections_opened = 0  # for the tests and metrics: how often the pool had to connect
        self._slots = asyncio.Semaphore(concurrency)
        self._idle: list[_Session] = []

    async def scan(self, message: bytes, envelope: Envelope) -> Verdict:
        """clamd's verdict on the first `max_size` bytes of MESSAGE; EngineError when it gives none in time."""
        sent = memoryview(message)[: self.max_size]
        reply = await self._command(b"zINSTREAM\0", sent)
        found = _FOUND.fullmatch(reply)
        if found:
            return Verdict(engine=NAME, virus=found[1], reason=f"virus {found[1]}")
        if reply == "stream: OK":
            if len(sent) < len(message):
                return Verdict(NAME, reason=f"clean in the first {len(sent)} of {len(message)} bytes", whole=False)
            return Verdict(engine=NAME)
        raise _refusal(reply)

    async def ping(self) -> None:
        """clamd answers PONG; EngineError otherwise."""
        reply = await self._command(b"zPING\0", None)
        if reply != "PONG":
            raise _refusal(reply)

    async def close(self) -> None:
        while self._idle:
            self._idle.pop().writer.transport.abort()

    async def _command(self, command: bytes, stream: memoryview | None) -> str:
        """Send COMMAND (and STREAM as INSTREAM chunks) in a session, return clamd's reply without its number and
        NUL; every failure, the wait for a turn included, an EngineError within `timeout`."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    session, reused = self._reusable(), True
                    if session is None:
                        session, reused = await self._connect(), False
                    try:
                        reply = await _exchange(session, command, stream)
                    except _Closed:
                        if not reused:
                            raise
                        session = await self._connect()
                        reply = await _exchange(session, command, stream)
                    if not _complete(reply) or len(self._idle) >= self.concurrency:
                        session.writer.transport.abort()  # clamd ends a session after an ERROR
                    else:
                        session.idle_since = time.monotonic()
                        self._idle.append(session)
                    return reply
        except TimeoutError:
            raise EngineError(NAME, f"no answer from {self.address} within {self.timeout:g} s") from None

    def _reusable(self) -> _Session | None:
        while self._idle:
            session = self._idle.pop()
            if time.monotonic() - session.idle_since < IDLE_REUSE and not session.reader.at_eof():
                return session
            session.writer.transport.abort()
        return None

    async def _connect(self) -> _Session:
        try:
            if self.address.path:
                reader, writer = await asyncio.open_unix_connection(self.address.path, limit=MAX_REPLY)
            else:
                reader, writer = await asyncio.open_connection(self.address.host, self.address.port, limit=MAX_REPLY)
        except OSError as error:
            raise EngineError(NAME, f"cannot connect to {self.address}: {reason(error)}") from None
        self.connections_opened += 1
        writer.write(b"zIDSESSION\0")  # no reply of its own: the first command's comes as "1: ..."
        return _Session(reader, writer)


async def _exchange(session: _Session, command: bytes, stream: memoryview | None) -> str:
    """One command and its reply on SESSION; the connection is aborted on any failure."""
    try:
        writer = session.writer
        try:
            writer.write(command)
            session.commands += 1
            if stream is not None:
                for start in range(0, len(stream), CHUNK):
                    chunk = stream[start : start + CHUNK]
                    writer.write(struct.pack(">I", len(chunk)))
                    writer.write(chunk)
                    await writer.drain()
                writer.write(struct.pack(">I", 0))
            await writer.drain()
        except OSError:
            # clamd hangs up mid-stream when the stream passes its StreamMaxLength, after saying so: read why
            pass
        number, _, reply = (await _reply(session.reader)).partition(": ")
        if number != str(session.commands):
            raise EngineError(NAME, f"not clamd's answer: {_shown(number + _ + reply)}")
        return reply
    except BaseException:
        session.writer.transport.abort()
        raise


async def _reply(reader: asyncio.StreamReader) -> str:
    try:
        line = await reader.readuntil(b"\0")
    except asyncio.IncompleteReadError as error:
        if partial := error.partial.decode("latin-1"):
            raise EngineError(NAME, f"connection closed mid-answer: {_shown(partial)}") from None
        raise _Closed(NAME, "connection closed before an answer") from None
    except asyncio.LimitOverrunError:
        raise EngineError(NAME, f"answer longer than {MAX_REPLY} bytes: not clamd's") from None
    except OSError as error:
        raise _Closed(NAME, f"connection lost: {reason(error)}") from None
    return line[:-1].decode("latin-1").strip("\r\n")


def _complete(reply: str) -> bool:
    """REPLY is one after which the session may serve the next scan: not after a FOUND, which a clamd with
    AllMatchScan follows with a reply for each other signature matched, that the next scan would read as its own."""
    return reply in ("stream: OK", "PONG")


def _refusal(reply: str) -> EngineError:
    if reply.endswith("ERROR"):
        return EngineError(NAME, f"clamd answered {_shown(reply)}")
    return EngineError(NAME, f"not clamd's answer: {_shown(reply)}")


def _shown(text: str) -> str:
    """TEXT fit for one log line: printable, short."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return repr(printable[:80] + ("..." if len(printable) > 80 else ""))
