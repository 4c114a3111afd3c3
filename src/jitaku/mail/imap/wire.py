"""An IMAP connection's bytes: commands in, with their literals, and responses out, each with a memory bound.

In: a command's literals together may hold at most a given number of bytes (before login, a few KiB: a LOGIN
needs a few hundred; after it, the size of the largest message), refused before they are read (issue 15:
one command chaining five 64 MiB literals before login cost 826 MB). Out: responses go to the socket no
faster than the client reads them; a large literal goes in pieces, so a session holds one piece of it in
the transport at a time, and a client that stops reading for the write timeout is cut off (issue 15: three
sessions that stopped reading a FETCH 1:* BODY.PEEK[] held 5 GB, for ever).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Iterable

from jitaku import log
from jitaku.mail.imap.parser import literal_announced

PIECE = 64 * 1024  # bytes of a literal handed to the transport at a time
HIGH_WATER = 256 * 1024  # bytes the transport may hold before we wait for the client to read


class Closed(Exception):
    """The session is over."""


class LiteralRefused(Exception):
    """A synchronizing literal over the command's bound: answered with a tagged NO, and the client, which
    waits for "+" before it sends a synchronizing literal, sends none of it (RFC 3501 §7.5)."""

    def __init__(self, tag: str, what: str, limit: int) -> None:
        super().__init__(f"{tag} NO [TOOBIG] {what} may hold {limit} bytes now")
        self.answer = str(self)


class Wire:
    """Commands in, with their literals (saying "+" for each synchronizing one); responses out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, write_timeout: float) -> None:
        self.reader = reader
        self.writer = writer
        self.write_timeout = write_timeout

    async def line(self, timeout: float) -> bytes:
        return await self._within(self.reader.readuntil(b"\n"), timeout)

    async def _within(self, reading: Awaitable[bytes], timeout: float) -> bytes:
        """What READING gets; Closed when the client goes away, idles TIMEOUT seconds or overruns a line."""
        try:
            return await asyncio.wait_for(reading, timeout)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            raise Closed from None
        except TimeoutError:
            await self.send(b"* BYE autologout: idle too long")
            raise Closed from None
        except asyncio.LimitOverrunError:
            await self.send(b"* BYE line too long")
            raise Closed from None

    async def command(self, timeout: float, limit: int, literal_limit: int) -> bytes:
        """One command, its lines and literals together at most LIMIT bytes (and one line more: a line is
        read whole before it is looked at, up to the reader's own bound), each literal at most LITERAL_LIMIT
        (an APPEND's message, RFC 7889). A synchronizing literal past them is refused (LiteralRefused); a
        non-synchronizing one, already on its way, closes the connection (RFC 7888 §4)."""
        pieces: list[bytes] = []
        taken = 0
        while True:
            line = await self.line(timeout)
            pieces.append(line)
            taken += len(line)
            announced = literal_announced(line)
            if announced is None:
                return b"".join(pieces)
            size, synchronizing = announced
            taken += size
            if taken > limit or size > literal_limit:
                if synchronizing:
                    tag = pieces[0].split(b" ", 1)[0].decode("ascii", "replace")
                    if size > literal_limit:
                        raise LiteralRefused(tag, "a literal", literal_limit)
                    raise LiteralRefused(tag, "one command", limit)
                await self.send(b"* BYE [TOOBIG] a literal that large is refused")
                raise Closed
            if synchronizing:
                await self.send(b"+ go ahead")
            pieces.append(await self._within(self.reader.readexactly(size), timeout))

    async def send(self, *lines: bytes) -> None:
        """LINES, each ended with CRLF."""
        self.writer.write(b"".join(line + b"\r\n" for line in lines if line))
        await self._drain()

    async def stream(self, pieces: Iterable[bytes]) -> None:
        """PIECES, as they are (the caller ends the response with CRLF): a large one goes to the transport a
        PIECE at a time, each after the client has read what was before it."""
        small: list[bytes] = []  # written together: one system call, not one per piece
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
        if self.writer.transport.get_write_buffer_size() > HIGH_WATER:
            await self._drain()

    async def _drain(self) -> None:
        """Wait until the client has read what we sent, for at most the write timeout."""
        try:
            await asyncio.wait_for(self.writer.drain(), self.write_timeout)
        except (ConnectionError, ssl.SSLError):
            raise Closed from None
        except TimeoutError:
            log.event("imap_write_timeout", client=_peer(self.writer), seconds=self.write_timeout)
            self.writer.transport.abort()
            raise Closed from None


def _peer(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) else "?"
