"""What the IMAP server does with a connection that idles or speaks nonsense, in process: the timers are
shortened here, which a running daemon's cannot be."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from jitaku.config import LoginSettings
from jitaku.mail.imap import server
from jitaku.mail.login import Authenticator, Logins, Sessions
from jitaku.passwords import Checker
from jitaku.ratelimit import LoginLimiter
from jitaku.store import Database


async def talk(database: Database, *lines: bytes) -> list[bytes]:
    """Connect, send LINES, and read until the server closes the connection."""
    authenticator = Authenticator(database, LoginLimiter(database, LoginSettings()), Checker(1, 0))
    imap = server.ImapServer(database, Logins(authenticator, Sessions()), None)
    listener = await asyncio.start_server(functools.partial(imap.serve, implicit_tls=False), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(line + b"\r\n" for line in lines))
    received = (await asyncio.wait_for(reader.read(), 10)).splitlines()
    writer.close()
    listener.close()
    return received


def test_a_connection_that_does_not_log_in_is_closed_after_the_login_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "LOGIN_TIMEOUT", 0.3)
    database = Database(f"sqlite:///{tmp_path / 'j.db'}")
    received = asyncio.run(talk(database, b"a1 NOOP"))
    assert received[1:] == [b"a1 OK NOOP completed", b"* BYE autologout: idle too long"]
    received = asyncio.run(talk(database, b"a2 LOGIN {5}"))  # and the literal never comes
    assert received[1:] == [b"+ go ahead", b"* BYE autologout: idle too long"]
    database.close()


def test_twenty_bad_commands_in_a_row_close_the_connection(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'j.db'}")
    received = asyncio.run(talk(database, *([b"a1 FROB"] * 10 + [b"a2 NOOP"] + [b"a3 FROB"] * 21)))
    assert received[11] == b"a2 OK NOOP completed"  # an answer that is not BAD starts the count again
    assert received[12:] == [b"a3 BAD unknown command FROB"] * 20 + [b"* BYE too many invalid commands"]
    database.close()
