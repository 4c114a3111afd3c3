"""The client side of an SMTP session's mail transactions, pipelined when the server offers it (RFC 2920).

aiosmtplib opens the session (greeting, EHLO, STARTTLS, AUTH) and then hands its transport over: it sends a
command and waits for the reply, one round trip each, four per copy (MAIL, RCPT, DATA, the text), and a list
post is a thousand copies. With PIPELINING, MAIL, every RCPT and DATA go in one write and the replies are read
in order, each recipient's on its own; the text follows once DATA is answered with 354: two round trips a copy.
A session is kept for the next message to the same server (mail/reuse.py): RSET, then the next transaction.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from dataclasses import dataclass
from typing import cast

import aiosmtplib

# A server that never ends its reply must not fill our memory (RFC 5321 §4.5.3.1.5: 512 octets a line)
MAX_REPLY = 64 * 1024
_LINE_END = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


@dataclass(frozen=True)
class Reply:
    code: int
    text: str  # the lines' words without their codes, joined by newlines, as aiosmtplib gives them

    def __str__(self) -> str:
        return f"{self.code} {self.text}".strip()


@dataclass(frozen=True)
class Replies:
    """What the server said to one transaction: MAIL, each RCPT in order, and the end of the text (None when
    no recipient was taken, so no text went)."""

    mail: Reply
    recipients: list[Reply]
    data: Reply | None


def text_of(message: bytes) -> bytes:
    """MESSAGE as DATA carries it, without the final dot: CRLF line ends, a leading dot doubled (RFC 5321
    §4.5.2). A copy made of parts (a member's own header lines, then the shared post) is the parts' texts
    joined, so the shared part is prepared once for all copies."""
    text = _LEADING_DOT.sub(b"..", _LINE_END.sub(b"\r\n", message))
    return text if not text or text.endswith(b"\r\n") else text + b"\r\n"


def _taken(mail: Reply, recipients: list[Reply]) -> bool:
    """Whether the server took the sender and at least one recipient, so the text is to be sent."""
    return mail.code == 250 and any(reply.code in (250, 251) for reply in recipients)


class ReplyReader(asyncio.Protocol):
    """The server's replies in order, however the network splits or joins them."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._replies: deque[Reply] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self.lost: Exception | None = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        start = 0
        lines: list[bytes] = []
        while (end := self._buffer.find(b"\n", start)) != -1:
            line = bytes(self._buffer[start:end]).rstrip(b"\r")
            start = end + 1
            if len(line) < 3 or not line[:3].isdigit():
                self._fail(aiosmtplib.SMTPResponseException(-1, f"Malformed SMTP response line: {line[:80]!r}"))
                return
            lines.append(line)
            if line[3:4] != b"-":  # the last line of a reply: "250 ok" or a bare "250"
                text = "\n".join(part[4:].strip(b" \t").decode("utf-8", "surrogateescape") for part in lines)
                self._replies.append(Reply(int(line[:3]), text))
                lines = []
                del self._buffer[:start]
                start = 0
        if len(self._buffer) > MAX_REPLY:
            self._fail(aiosmtplib.SMTPResponseException(-1, "Response too long"))
        self._wake()

    def eof_received(self) -> bool:
        self._fail(aiosmtplib.SMTPServerDisconnected("Unexpected EOF received"))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        lost = aiosmtplib.SMTPServerDisconnected("Connection lost")
        lost.__cause__ = exc
        self._fail(lost)

    def _fail(self, error: Exception) -> None:
        if self.lost is None:
            self.lost = error
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def next(self) -> Reply:
        while not self._replies:
            if self.lost is not None:
                raise self.lost
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._replies.popleft()


class Session:
    """An open, greeted (and perhaps TLS and logged-in) session, for one transaction after another."""

    def __init__(self, client: aiosmtplib.SMTP, host: str, timeout: float) -> None:
        assert client.transport is not None, "an open aiosmtplib session has its transport"
        transport = cast(asyncio.Transport, client.transport)  # uvloop's is one in all but the name
        self.host = host  # the server's name, for outcomes and sentences
        self.timeout = timeout
        self.pipelining = client.supports_extension("pipelining")
        self.utf8 = client.supports_extension("smtputf8")
        self.transactions = 0  # on this connection so far (mail/reuse.py bounds them)
        self.loop = asyncio.get_running_loop()
        self._reader = ReplyReader()
        self._transport = transport
        transport.set_protocol(self._reader)
        self._clean = True  # no transaction left open: the next one needs no RSET
        self._ahead: tuple[str, list[str]] | None = None  # the envelope whose commands went with the last text

    @property
    def open(self) -> bool:
        return self._reader.lost is None and not self._transport.is_closing()

    async def reset(self) -> Reply:
        """RSET: whether a session that waited is still there, and in a known state."""
        self._write(b"RSET\r\n")
        reply = await self._read()
        self._clean = reply.code == 250
        return reply

    async def _abandon(self) -> None:
        """RSET at once after a transaction that failed, as Postfix's client does before it reuses a connection:
        the server then holds nothing of it (smtp-sink keeps a file open for a transaction until it ends)."""
        self._write(b"RSET\r\n")
        reply = await self._read()
        self._clean = reply.code == 250

    async def transaction(
        self, sender: str, recipients: list[str], text: bytes, then: tuple[str, list[str]] | None = None
    ) -> Replies:
        """Send TEXT (see `text_of`) from SENDER to RECIPIENTS; what the server said to each step.

        THEN, the sender and recipients of the transaction the caller runs next on this session: with
        PIPELINING its commands go in the same write as this text, whose end closes this transaction
        whatever the reply, so each further copy costs one round trip, not two."""
        self.transactions += 1
        envelope = (sender, list(recipients))
        if self.pipelining:
            if self._ahead == envelope:  # already sent, after the previous text
                self._ahead = None
            else:
                rset = [] if self._clean else [b"RSET\r\n"]
                self._write(b"".join([*rset, *self._commands(sender, recipients)]))
                for _ in rset:
                    await self._read()
            self._clean = False
            mail_reply = await self._read()
            rcpt_replies = [await self._read() for _ in recipients]
            data_reply = await self._read()
            if data_reply.code == 354 and not _taken(mail_reply, rcpt_replies):
                # the server took DATA with no one to send to: an empty text ends it (RFC 2920 §3.1)
                self._write(b".\r\n")
                await self._read()
                return Replies(mail_reply, rcpt_replies, None)
        else:
            if not self._clean:
                self._write(b"RSET\r\n")
                await self._read()
            self._clean = False
            mail, *rcpts, data = self._commands(sender, recipients)
            self._write(mail)
            mail_reply = await self._read()
            if mail_reply.code != 250:
                await self._abandon()
                return Replies(mail_reply, [], None)
            rcpt_replies = []
            for command in rcpts:
                self._write(command)
                rcpt_replies.append(await self._read())
            if not _taken(mail_reply, rcpt_replies):
                await self._abandon()
                return Replies(mail_reply, rcpt_replies, None)
            self._write(data)
            data_reply = await self._read()
        if not _taken(mail_reply, rcpt_replies):
            await self._abandon()
            return Replies(mail_reply, rcpt_replies, None)
        if data_reply.code != 354:
            await self._abandon()
            return Replies(mail_reply, rcpt_replies, data_reply)
        if then is not None and self.pipelining:
            self._write(b"".join([text, b".\r\n", *self._commands(*then)]))
            self._ahead = (then[0], list(then[1]))
        else:
            self._write(text + b".\r\n")
        end = await self._read()
        self._clean = True
        return Replies(mail_reply, rcpt_replies, end)

    @property
    def settled(self) -> bool:
        """No commands sent ahead await their transaction: the session may wait for another message."""
        return self._ahead is None

    def _commands(self, sender: str, recipients: list[str]) -> list[bytes]:
        mail = b"MAIL FROM:<" + self._address(sender) + (b"> SMTPUTF8\r\n" if self._needs_utf8(sender) else b">\r\n")
        return [mail, *(b"RCPT TO:<" + self._address(r) + b">\r\n" for r in recipients), b"DATA\r\n"]

    def quit(self) -> None:
        """Say goodbye without waiting for it: the text of every message is already answered."""
        if self.open:
            self._transport.write(b"QUIT\r\n")
        self._transport.close()  # after what is written has gone

    def close(self) -> None:
        """Drop the connection at once: it broke, or is in a state nobody knows."""
        self._transport.abort()

    def _needs_utf8(self, address: str) -> bool:
        return self.utf8 and not address.isascii()

    def _address(self, address: str) -> bytes:
        if any(c in address for c in "\r\n<>"):
            raise ValueError(f"an address cannot hold a line end or angle bracket: {address!r}")
        return address.encode("utf-8" if self.utf8 else "ascii")

    def _write(self, data: bytes) -> None:
        if not self.open:
            raise self._reader.lost or aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._transport.write(data)

    async def _read(self) -> Reply:
        async with asyncio.timeout(self.timeout):
            return await self._reader.next()
