"""ClamAV's clamd, spoken to with INSTREAM over TCP or a Unix socket (`[filters.clamav] address`).

The protocol (clamd(8)): `zINSTREAM\\0`, then the message in chunks, each a 4-byte big-endian length and that
many bytes, then a zero length; clamd answers one NUL-terminated line, `stream: OK`, `stream: NAME FOUND`, or
`... ERROR` (for example `INSTREAM size limit exceeded. ERROR`), and closes the connection.

Size: at most `[filters.clamav] max_size` bytes of a message are sent. clamd refuses a stream longer than its own
`StreamMaxLength` (it answers ERROR and hangs up), so that setting must be at least `max_size`, or every message
longer than StreamMaxLength becomes an EngineError. clamd's MaxFileSize and MaxScanSize apply to the stream too:
below `max_size`, a message between them and `max_size` is scanned only partly, or, with AlertExceedsMax, is
"Heuristics.Limits.Exceeded.MaxFileSize FOUND", which this client passes on as a virus like any other name. A
longer message is scanned on its first `max_size` bytes
only, and when nothing is found there it counts as clean: the verdict's reason says how much was scanned. It is
not an EngineError because the engine is not at fault, and `on_error = "tempfail"` would otherwise refuse every
large message forever; `max_size` defaults to the largest message the MX accepts, so it happens only where the
site chose so.

Connections: clamd closes the connection after each command outside an IDSESSION, and IDSESSION replies may come
in any order and are cut off by clamd's IdleTimeout, so each scan opens its own connection (on loopback or a
Unix socket this costs microseconds); at most `concurrency` scans talk to clamd at once, the rest wait their
turn within the same timeout.
"""

from __future__ import annotations

import asyncio
import re
import struct

from jitaku.config import ClamavSettings, EngineAddress
from jitaku.mail.filters.verdict import EngineError, Envelope, Verdict

NAME = "clamav"
CHUNK = 256 * 1024  # bytes per INSTREAM chunk: clamd reads each into a buffer of StreamMaxLength at most
MAX_REPLY = 1024  # bytes of a reply read at most: clamd's are one short line
_FOUND = re.compile(r"stream: ([\x21-\x7e][\x20-\x7e]{0,200}) FOUND")  # printable: the name goes into a 554


class Clamav:
    """A clamd client implementing verdict.Scanner; `ping()` for the health check."""

    name = NAME

    def __init__(self, settings: ClamavSettings, timeout: float, concurrency: int = 8) -> None:
        self.address: EngineAddress = settings.address
        self.max_size = settings.max_size
        self.timeout = timeout
        self._slots = asyncio.Semaphore(concurrency)

    async def scan(self, message: bytes, envelope: Envelope) -> Verdict:
        """clamd's verdict on the first `max_size` bytes of MESSAGE; EngineError when it gives none in time."""
        sent = memoryview(message)[: self.max_size]
        reply = await self._command(b"zINSTREAM\0", sent)
        found = _FOUND.fullmatch(reply)
        if found:
            return Verdict(engine=NAME, virus=found[1], reason=f"virus {found[1]}")
        if reply == "stream: OK":
            if len(sent) < len(message):
                return Verdict(engine=NAME, reason=f"clean in the first {len(sent)} of {len(message)} bytes")
            return Verdict(engine=NAME)
        raise self._refusal(reply)

    async def ping(self) -> None:
        """clamd answers PONG; EngineError otherwise."""
        reply = await self._command(b"zPING\0", None)
        if reply != "PONG":
            raise self._refusal(reply)

    async def close(self) -> None:
        """Nothing is kept open between scans."""

    def _refusal(self, reply: str) -> EngineError:
        if reply.endswith("ERROR"):
            return EngineError(NAME, f"clamd answered {_shown(reply)}")
        return EngineError(NAME, f"not clamd's answer: {_shown(reply)}")

    async def _command(self, command: bytes, stream: memoryview | None) -> str:
        """Send COMMAND (and STREAM as INSTREAM chunks), return clamd's reply without its NUL; every failure, the
        wait for a turn included, an EngineError within `timeout`."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    return await self._exchange(command, stream)
        except TimeoutError:
            raise EngineError(NAME, f"no answer from {self.address} within {self.timeout:g} s") from None

    async def _exchange(self, command: bytes, stream: memoryview | None) -> str:
        try:
            if self.address.path:
                reader, writer = await asyncio.open_unix_connection(self.address.path, limit=MAX_REPLY)
            else:
                reader, writer = await asyncio.open_connection(self.address.host, self.address.port, limit=MAX_REPLY)
        except OSError as error:
            raise EngineError(NAME, f"cannot connect to {self.address}: {error.strerror or error}") from None
        try:
            try:
                writer.write(command)
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
            return await _reply(reader)
        finally:
            writer.transport.abort()  # clamd is done with the connection either way; nothing to flush


async def _reply(reader: asyncio.StreamReader) -> str:
    try:
        line = await reader.readuntil(b"\0")
    except asyncio.IncompleteReadError as error:
        if partial := error.partial.decode("latin-1"):
            raise EngineError(NAME, f"connection closed mid-answer: {_shown(partial)}") from None
        raise EngineError(NAME, "connection closed before an answer") from None
    except asyncio.LimitOverrunError:
        raise EngineError(NAME, f"answer longer than {MAX_REPLY} bytes: not clamd's") from None
    except OSError as error:
        raise EngineError(NAME, f"connection lost: {error.strerror or error}") from None
    return line[:-1].decode("latin-1").strip("\r\n")


def _shown(text: str) -> str:
    """TEXT fit for one log line: printable, short."""
    printable = "".join(c if " " <= c <= "~" else "?" for c in text)
    return repr(printable[:80] + ("..." if len(printable) > 80 else ""))
