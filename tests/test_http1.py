"""The small HTTP/1.1 client rspamd is asked through (mail/filters/http1.py), against a loopback server that
answers as told: each framing HTTP allows is read whole, and what is too long, malformed or dribbled is an
HttpFailure, never a hang of the loop or an exception of another kind."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from jitaku.mail.filters.http1 import MAX_CHUNKS, MAX_HEAD, HttpFailure, Origin, request

Answer = Callable[[asyncio.StreamWriter], Awaitable[None]]


def ask(answer: Answer | bytes, limit: int = 1024, body: bytes = b"message") -> tuple[int, bytes]:
    """REQUEST against a server that reads the request, then writes ANSWER (bytes, or a coroutine) and hangs up."""
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line[15:]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:"))
        seen.append(head + await reader.readexactly(length))
        if isinstance(answer, bytes):
            writer.write(answer)
        else:
            await answer(writer)
        writer.close()

    async def main() -> tuple[int, bytes]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, asyncio.timeout(10):
            origin = Origin.of(f"http://127.0.0.1:{port}/prefix/")
            return await request(origin, "POST", "/checkv2", [(b"Helo", b"mx.example")], body, limit)

    try:
        return asyncio.run(main())
    finally:
        if seen:
            assert seen[0].startswith(b"POST /prefix/checkv2 HTTP/1.1\r\nHost: 127.0.0.1:")
            assert b"\r\nConnection: close\r\n" in seen[0] and b"\r\nHelo: mx.example\r\n" in seen[0]
            assert seen[0].endswith(b"\r\n\r\n" + body)


def failure(answer: Answer | bytes, limit: int = 1024) -> str:
    with pytest.raises(HttpFailure) as caught:
        ask(answer, limit)
    return str(caught.value)


def test_content_length_chunked_and_unsized_bodies_are_read_whole() -> None:
    assert ask(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello") == (200, b"hello")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n"
    assert ask(chunked) == (200, b"hello!")
    assert ask(b'HTTP/1.0 500 Internal Server Error\r\n\r\n{"error":"boom"}') == (500, b'{"error":"boom"}')


def test_what_is_too_long_is_refused_before_it_is_read() -> None:
    assert failure(b"HTTP/1.1 200 OK\r\nContent-Length: 2048\r\n\r\n" + b"x" * 2048) == "answer longer than 1024 bytes"
    assert failure(b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 2048) == "answer longer than 1024 bytes"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + b"x" * 2048 + b"\r\n0\r\n\r\n"
    assert failure(chunked) == "answer longer than 1024 bytes"
    head = b"HTTP/1.1 200 OK\r\nX-Long: " + b"a" * MAX_HEAD + b"\r\n\r\n"
    assert failure(head) == f"answer's header longer than {MAX_HEAD} bytes"


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        (b"", "connection closed before an answer"),
        (b"HTTP/1.1 200 OK\r\nContent-", "connection closed mid-answer"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "connection closed mid-answer"),
        (b"SMTP/1.0 220 hello\r\n\r\n", "not an HTTP answer: b'SMTP/1.0 220 hello'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1_0\r\n\r\n0123456789", "answer's Content-Length is not a number"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "answer's Content-Length is not a number"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", "chunk size is not"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", "does not end where"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "connection closed mid-answer"),
    ],
)
def test_malformed_answers_are_failures_that_say_why(answer: bytes, said: str) -> None:
    assert said in failure(answer)


def test_a_server_dribbling_tiny_chunks_is_cut_off_without_holding_the_loop() -> None:
    """A chunk of one byte at a time, arriving at once, is read a bounded number of times: the loop is not held
    for a read per byte of a megabyte."""
    dribble = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1\r\nx\r\n" * 200_000
    started = time.process_time()
    assert failure(dribble, limit=1024 * 1024) == f"answer in more than {MAX_CHUNKS} chunks"
    assert time.process_time() - started < 5  # a read per chunk of the 200,000 would be far longer


def test_a_url_with_a_password_is_not_taken_and_a_refused_connection_says_so() -> None:
    with pytest.raises(ValueError, match="without user or password"):
        Origin.of("http://admin:secret@127.0.0.1:11334")
    with pytest.raises(HttpFailure, match=r"^cannot connect to 127\.0\.0\.1:1: Connection refused$"):
        asyncio.run(request(Origin.of("http://127.0.0.1:1"), "GET", "/ping", [], b"", 1024))
