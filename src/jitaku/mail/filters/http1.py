"""The little of HTTP/1.1 that rspamd's protocol uses: one request with a Content-Length body, one answer read
whole, a connection for each (rspamd answers every request with "Connection: close", so there is nothing to keep).

Our own and not httpx's because of the cost, measured on bench/smtp_accept's 4.9 kB message at 20 at once:
httpx (httpcore over anyio) spent 1.7-1.9 ms of the daemon's CPU on each /checkv2, about as much as rspamd
spends scanning it, where this spends 0.37 ms; that was most of what filtering cost the daemon itself.

Every answer is bounded: its head by MAX_HEAD, its body by the caller's LIMIT (checked against Content-Length
before reading, and while reading a chunked or unsized body), its chunks by MAX_CHUNKS. The caller bounds the
time (asyncio.timeout), which can cut in only where a read waits: what arrives at once is taken in a few reads,
never one per byte, so a server dribbling tiny chunks cannot hold the loop."""

from __future__ import annotations

import asyncio
import functools
import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from jitaku.mail.filters.verdict import reason

MAX_HEAD = 64 * 1024  # status line and header fields of an answer; rspamd's are a few hundred bytes
MAX_INTERIM = 4  # 1xx answers read past before the final one
MAX_CHUNKS = 256  # of a chunked answer (rspamd sends Content-Length): more is a server dribbling, not answering
_STATUS = re.compile(rb"HTTP/1\.[01] ([1-5][0-9][0-9])(?: [^\r\n]*)?")
_LENGTH = re.compile(rb"[0-9]{1,12}")
_CHUNK_SIZE = re.compile(rb"([0-9a-fA-F]{1,8})(?:;[^\r\n]*)?\r\n")


class HttpFailure(Exception):
    """No usable answer: the connection failed or closed early, or what came is not HTTP or is too long."""


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host and port of a URL, and its path (a prefix, for an rspamd behind a proxy)."""

    host: str
    port: int
    tls: bool
    prefix: str

    @classmethod
    def of(cls, url: str) -> Origin:
        parts = urlsplit(url)
        tls = parts.scheme == "https"
        if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
            raise ValueError(f"expected an http(s) URL without user or password, got {url!r}")
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls, parts.path.rstrip("/"))

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


async def request(
    origin: Origin, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, limit: int
) -> tuple[int, bytes]:
    """The status and body of the answer to METHOD ORIGIN's PATH; HttpFailure when there is none."""
    try:
        reader, writer = await asyncio.open_connection(
            origin.host, origin.port, ssl=_tls() if origin.tls else None, limit=MAX_HEAD
        )
    except OSError as error:
        raise HttpFailure(f"cannot connect to {origin.authority}: {reason(error)}") from None
    try:
        head = [f"{method} {origin.prefix}{path} HTTP/1.1".encode(), b"Host: " + origin.authority.encode()]
        head += [b"Content-Length: " + str(len(body)).encode(), b"Connection: close"]
        head += [name + b": " + value for name, value in headers]
        writer.write(b"\r\n".join(head) + b"\r\n\r\n")
        writer.write(body)
        await writer.drain()
        return await _answer(reader, limit)
    except OSError as error:
        raise HttpFailure(f"connection lost: {reason(error)}") from None
    finally:
        writer.transport.abort()


async def _answer(reader: asyncio.StreamReader, limit: int) -> tuple[int, bytes]:
    for _ in range(MAX_INTERIM + 1):
        status, lines = await _head(reader)
        if not 100 <= status < 200:
            break
    else:
        raise HttpFailure(f"more than {MAX_INTERIM} interim (1xx) answers")
    fields: dict[bytes, bytes] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if colon:
            fields[name.strip().lower()] = value.strip()
    try:
        if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
            content = await _chunked(reader, limit)
        elif b"content-length" in fields:
            if not _LENGTH.fullmatch(fields[b"content-length"]):
                raise HttpFailure("answer's Content-Length is not a number")
            length = int(fields[b"content-length"])
            if length > limit:
                raise HttpFailure(f"answer longer than {limit} bytes")
            content = await reader.readexactly(length)
        else:
            content = await _until_closed(reader, limit)
    except asyncio.IncompleteReadError:
        raise HttpFailure("connection closed mid-answer") from None
    except asyncio.LimitOverrunError:
        raise HttpFailure("answer's framing is not HTTP's") from None
    return status, content


async def _head(reader: asyncio.StreamReader) -> tuple[int, list[bytes]]:
    """An answer's status and header lines (a proxy may send 100 Continue first, which RFC 9110 §15.2 says a
    client reads past)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        said = "closed mid-answer" if error.partial else "closed before an answer"
        raise HttpFailure(f"connection {said}") from None
    except asyncio.LimitOverrunError:
        raise HttpFailure(f"answer's header longer than {MAX_HEAD} bytes") from None
    status_line, *lines = head[:-4].split(b"\r\n")
    status = _STATUS.fullmatch(status_line)
    if status is None:
        raise HttpFailure(f"not an HTTP answer: {status_line[:60]!r}")
    return int(status[1]), lines


async def _until_closed(reader: asyncio.StreamReader, limit: int) -> bytes:
    content = bytearray()
    while chunk := await reader.read(limit + 1 - len(content)):
        content += chunk
    if len(content) > limit:
        raise HttpFailure(f"answer longer than {limit} bytes")
    return bytes(content)


async def _chunked(reader: asyncio.StreamReader, limit: int) -> bytes:
    content = bytearray()
    for _ in range(MAX_CHUNKS):
        line = _CHUNK_SIZE.fullmatch(await reader.readuntil(b"\r\n"))
        if line is None:
            raise HttpFailure("answer's chunk size is not HTTP's")
        size = int(line[1], 16)
        if len(content) + size > limit:
            raise HttpFailure(f"answer longer than {limit} bytes")
        if size == 0:
            return bytes(content)  # trailer fields, if any, are not read: the connection closes
        data = await reader.readexactly(size + 2)
        if data[-2:] != b"\r\n":
            raise HttpFailure("answer's chunk does not end where its size says")
        content += data[:-2]
    raise HttpFailure(f"answer in more than {MAX_CHUNKS} chunks")


@functools.cache
def _tls() -> ssl.SSLContext:
    """The system's trust for an https URL, loaded once (loading it is milliseconds of CPU on the loop)."""
    return ssl.create_default_context()
