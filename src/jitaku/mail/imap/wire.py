"""An IMAP connection's bytes: commands in, with their literals, and responses out, each with a memory bound.

In: a command's literals together may hold at most a given number of bytes (before login, a few KiB: a LOGIN
needs a few hundred; after it, the size of the largest message), refused before they are read (issue 15:
one command chaining five 64 MiB literals before login cost 826 MB). Out: as every line protocol's
(jitaku.mail.lineserver), with backpressure and a write timeout.
"""

from __future__ import annotations

import asyncio
import socket

from jitaku.mail.imap.parser import literal_announced
from jitaku.mail.lineserver import Closed, Connection


class LiteralRefused(Exception):
    """A synchronizing literal over the command's bound: answered with a tagged NO, and the client, which
    waits for "+" before it sends a synchronizing literal, sends none of it (RFC 3501 §7.5)."""

    def __init__(self, tag: str, what: str, limit: int) -> None:
        super().__init__(f"{tag} NO [TOOBIG] {what} may hold {limit} bytes now")
        self.answer = str(self)


class Wire(Connection):
    """Commands in, with their literals (saying "+" for each synchronizing one); responses out."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, write_timeout: float) -> None:
        super().__init__(reader, writer, write_timeout, "imap", b"* BYE")

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
                self._acknowledge()  # the literal, as soon as it comes
            pieces.append(await self._within(self.reader.readexactly(size), timeout))
            self._acknowledge()

    def _acknowledge(self) -> None:
        """Acknowledge what came in at once. A client that writes a literal and the end of its line apart
        (Python's imaplib does) holds the end back, under Nagle's algorithm, until the literal is acknowledged,
        which Linux delays up to 40 ms on a connection that talks back and forth: every APPEND took that long.
        Said after "+", the literal is acknowledged as it arrives; after reading it, whatever is still due."""
        sock = self.writer.get_extra_info("socket")
        quickack = getattr(socket, "TCP_QUICKACK", None)  # Linux's
        if sock is None or quickack is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        try:
            sock.setsockopt(socket.IPPROTO_TCP, quickack, 1)
        except OSError:  # the connection is gone: the next read says so
            return
