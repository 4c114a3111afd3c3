"""SpamAssassin through spamd, in its own protocol (SPAMC/1.5, spamd's PROTOCOL file): SYMBOLS for a score and
the rules that fired, TELL to learn (spamd started with --allow-tell). spamd answers one request per connection
and closes it, so there is no connection to keep: each call opens its own, over TCP or a Unix socket.

The score is reported as is: spamd's "Spam: True ; 6.1 / 5.0" weighs it against SpamAssassin's own
required_score, which is not `[filters] junk_score`; the pipeline decides with ours."""

from __future__ import annotations

import asyncio
import re

from jitaku.config import EngineAddress, FiltersSettings
from jitaku.mail.filters.verdict import EngineError, Envelope, Verdict, reason

NAME = "spamassassin"
PROTOCOL = b"SPAMC/1.5"
# spamc's own default (-s): larger messages are cut to this before they are sent, as spamc skips them; the rules
# that matter (headers, the first body parts) see what they need, and spamd's memory stays bounded.
MAX_SIZE = 512 * 1024
MAX_LINE = 8 * 1024  # one header line of spamd's answer
MAX_HEADERS = 32  # header lines in one answer (spamd sends two or three)
MAX_BODY = 64 * 1024  # SYMBOLS' list of rules: a few hundred bytes in practice
MAX_REASON_SYMBOLS = 5  # rules named in the reason, which ends up in an SMTP reply

# spamd's status line: "SPAMD/1.1 0 EX_OK"; errors carry sysexits codes, e.g. "SPAMD/1.0 76 Bad header line"
STATUS = re.compile(rb"SPAMD/1\.\d+ (\d+) ?(.*)")
# "Spam: True ; 1002.7 / 5.0" (also "Yes"/"No" from old servers)
SPAM = re.compile(r"(True|False|Yes|No)\s*;\s*(-?\d+(?:\.\d+)?)\s*/\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
SYMBOL = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


class SpamAssassin:
    """A client of one spamd; implements verdict.Scanner and verdict.Learner."""

    name = NAME

    def __init__(
        self, address: EngineAddress, *, user: str = "", timeout: float = 30.0, max_size: int = MAX_SIZE
    ) -> None:
        self.address = address
        self.user = user
        self.timeout = timeout
        self.max_size = max_size

    @classmethod
    def from_settings(cls, filters: FiltersSettings) -> SpamAssassin:
        if filters.spamassassin is None:
            raise ValueError("[filters.spamassassin] is not set")
        return cls(filters.spamassassin.address, user=filters.spamassassin.user, timeout=filters.timeout)

    async def scan(self, message: bytes, envelope: Envelope) -> Verdict:
        headers, body = await self._request(b"SYMBOLS", message, {})
        spam = headers.get("spam")
        if spam is None:
            raise EngineError(NAME, "no Spam header in the answer")
        match = SPAM.fullmatch(spam.strip())
        if match is None:
            raise EngineError(NAME, f"unreadable Spam header {_short(spam)!r}")
        score = float(match.group(2))
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            raise EngineError(NAME, "the rules' list is not ASCII") from None
        symbols = tuple(name for name in (part.strip() for part in text.split(",")) if name)
        if not all(SYMBOL.fullmatch(name) for name in symbols):
            raise EngineError(NAME, f"unreadable rules' list {_short(text)!r}")
        named = ", ".join(symbols[:MAX_REASON_SYMBOLS]) + (", ..." if len(symbols) > MAX_REASON_SYMBOLS else "")
        reason = f"SpamAssassin score {score:g}" + (f" ({named})" if named else "")
        return Verdict(engine=NAME, score=score, symbols=symbols, reason=reason)

    async def learn(self, message: bytes, spam: bool) -> bool:
        """TELL spamd the message's class in the local database (Bayes). spamd answers DidSet when it learned
        something, nothing when the message was learned so already."""
        headers, _ = await self._request(b"TELL", message, {"Message-class": "spam" if spam else "ham", "Set": "local"})
        return "local" in headers.get("didset", "") or "local" in headers.get("didremove", "")

    async def ping(self) -> None:
        """spamd answers PING with PONG (for the health check); EngineError otherwise."""
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await self._connect()
                try:
                    writer.write(b"PING " + PROTOCOL + b"\r\n\r\n")
                    await writer.drain()
                    status = await _read_line(reader)
                finally:
                    writer.close()
        except TimeoutError:
            raise EngineError(NAME, f"no answer within {self.timeout:g} s") from None
        except (OSError, EOFError, asyncio.IncompleteReadError) as error:
            raise EngineError(NAME, _describe(error)) from None
        match = STATUS.fullmatch(status or b"")
        if match is None or match.group(1) != b"0" or match.group(2).strip() != b"PONG":
            raise EngineError(NAME, f"not PONG: {_short((status or b'').decode('latin-1'))!r}")

    async def close(self) -> None:
        """Nothing held between calls: spamd closes each connection after its answer."""

    async def _request(self, command: bytes, message: bytes, extra: dict[str, str]) -> tuple[dict[str, str], bytes]:
        """One request and its answer within the timeout: the answer's headers (names in lower case) and body."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._exchange(command, message, extra)
        except TimeoutError:
            raise EngineError(NAME, f"no answer within {self.timeout:g} s") from None
        except EngineError:
            raise
        except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as error:
            raise EngineError(NAME, _describe(error)) from None

    async def _exchange(self, command: bytes, message: bytes, extra: dict[str, str]) -> tuple[dict[str, str], bytes]:
        message = _cut(message, self.max_size)
        reader, writer = await self._connect()
        try:
            lines = [command + b" " + PROTOCOL, b"Content-length: %d" % len(message)]
            if self.user:
                lines.append(b"User: " + self.user.encode("utf-8"))
            lines += [f"{key}: {value}".encode("ascii") for key, value in extra.items()]
            writer.write(b"\r\n".join(lines) + b"\r\n\r\n")
            writer.write(message)
            await writer.drain()
            return await _read_answer(reader)
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except OSError:
                pass

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.address.path:
            return await asyncio.open_unix_connection(self.address.path, limit=MAX_LINE)
        return await asyncio.open_connection(self.address.host, self.address.port, limit=MAX_LINE)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[dict[str, str], bytes]:
    status = await _read_line(reader)
    if not status:
        raise EngineError(NAME, "connection closed before an answer")
    match = STATUS.fullmatch(status)
    if match is None:
        raise EngineError(NAME, f"not a spamd answer: {_short(status.decode('latin-1'))!r}")
    code, text = int(match.group(1)), match.group(2).decode("latin-1").strip()
    if code != 0:
        raise EngineError(NAME, f"spamd error {code} {_short(text)}".rstrip())
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = await _read_line(reader)
        if line is None:
            raise EngineError(NAME, "connection closed mid-answer")
        if not line:
            break
        key, colon, value = line.decode("latin-1").partition(":")
        if not colon or not key.strip():
            raise EngineError(NAME, f"bad header line {_short(line.decode('latin-1'))!r}")
        headers[key.strip().lower()] = value.strip()
    else:
        raise EngineError(NAME, "too many header lines in the answer")
    length = headers.get("content-length")
    if length is None:
        body = await reader.read(MAX_BODY + 1)  # TELL and CHECK: no body worth reading, spamd closes
        body = body if len(body) <= MAX_BODY else body[:MAX_BODY]
        return headers, body
    if not length.isdigit() or int(length) > MAX_BODY:
        raise EngineError(NAME, f"bad Content-length {_short(length)!r}")
    try:
        body = await reader.readexactly(int(length))
    except asyncio.IncompleteReadError:
        raise EngineError(NAME, "connection closed mid-answer") from None
    return headers, body


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    """One CRLF-ended line without its end; None at the end of the stream (mid-line included)."""
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise EngineError(NAME, "answer line too long") from None
    return line.rstrip(b"\r\n")


def _cut(message: bytes, size: int) -> bytes:
    """MESSAGE as spamd is sent it: at most SIZE bytes, cut after the last whole line that fits."""
    if len(message) <= size:
        return message
    end = message.rfind(b"\n", 0, size)
    return message[: end + 1] if end > 0 else message[:size]


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, FileNotFoundError):
        return "no socket at that path"
    if isinstance(error, (ConnectionResetError, BrokenPipeError, EOFError, asyncio.IncompleteReadError)):
        return "connection closed mid-answer"
    if isinstance(error, OSError):
        return _short(reason(error))
    return _short(str(error) or type(error).__name__)
