"""jitaku.mail.lineserver without the protocols: a stop that comes with a client's line still stops the session,
and a session that ends for any reason gives its login back."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast

import pytest

from jitaku.mail import lineserver
from jitaku.mail.lineserver import Closed, Connection, LoggedIn
from jitaku.mail.login import Authenticator, Logins, Sessions


def test_a_cancel_that_comes_with_a_line_is_not_lost() -> None:
    """The daemon's stop cancels each session and waits for it: in 3.11, asyncio.wait_for returned the line and
    dropped the cancel, and the session served on while the stop waited."""

    async def scene() -> bytes:
        reader = asyncio.StreamReader()
        connection = Connection(reader, cast(asyncio.StreamWriter, None), 1.0, "imap", b"* BYE")
        session = asyncio.create_task(connection.line(timeout=60))
        await asyncio.sleep(0)  # waiting for a line
        reader.feed_data(b"a1 NOOP\r\n")
        session.cancel()  # in the same turn of the event loop
        return await session

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scene())


def test_each_line_has_its_own_idle_timeout() -> None:
    """One timer serves a connection's reads: a line that comes within its own timeout is read even when a
    read before it had a shorter one, and a read with a shorter timeout than the one before ends on time,
    with the client told why."""

    async def scene() -> tuple[list[bytes], float, bytes]:
        said: list[bytes] = []

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connection = Connection(reader, writer, 1.0, "imap", b"* BYE")
            said.append(await connection.line(timeout=0.05))
            said.append(await connection.line(timeout=0.5))  # past the first read's deadline
            said.append(await connection.line(timeout=60))
            try:
                await connection.line(timeout=0.1)
            except Closed:
                connection.close()

        listener = await asyncio.start_server(serve, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        writer.write(b"one\r\n")
        await asyncio.sleep(0.2)
        writer.write(b"two\r\nthree\r\n")
        started = asyncio.get_running_loop().time()
        goodbye = await asyncio.wait_for(reader.read(), 10)
        took = asyncio.get_running_loop().time() - started
        writer.close()
        listener.close()
        return said, took, goodbye

    said, took, goodbye = asyncio.run(scene())
    assert said == [b"one\r\n", b"two\r\n", b"three\r\n"]
    assert goodbye == b"* BYE autologout: idle too long\r\n"
    assert took < 30  # the last read's 0.1 s, not the 60 s of the one before


@dataclass
class _Session:
    client: str
    user: LoggedIn | None = None


@pytest.mark.parametrize("ending", ["client quits", "bug", "daemon stops"])
def test_a_session_that_ends_gives_its_login_back_and_says_goodbye_on_a_stop(ending: str) -> None:
    """Each IMAP or POP3 session a user holds counts against the ten allowed from one address: one that did not
    give its login back when it ended, by a bug of ours above all, would soon lock the user out."""
    sessions = Sessions(limit=1)

    async def scene() -> bytes:
        session = _Session("127.0.0.1")
        serving: list[asyncio.Task[None]] = []
        under_way = asyncio.Event()

        async def command() -> None:
            sessions.open("alice@example.test", session.client)
            session.user = LoggedIn("alice@example.test")
            if ending == "client quits":
                raise Closed
            if ending == "bug":
                raise RuntimeError("a bug")
            under_way.set()
            await asyncio.sleep(60)

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            connection = Connection(reader, writer, 1.0, "imap", b"* BYE")
            logins = Logins(cast(Authenticator, None), sessions)
            serving.append(cast("asyncio.Task[None]", asyncio.current_task()))
            await lineserver.serve(connection, session, logins, b"* OK ready", command, b"* BYE shutting down")

        listener = await asyncio.start_server(serve, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        await reader.readline()
        if ending == "daemon stops":
            await asyncio.wait_for(under_way.wait(), 10)
            serving[0].cancel()  # as jitaku.connections.OpenSessions does
        said = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        listener.close()
        return said

    said = asyncio.run(scene())
    assert said == (b"* BYE shutting down\r\n" if ending == "daemon stops" else b"")
    assert sessions.open("alice@example.test", "127.0.0.1")  # the one allowed is free again
