"""What the IMAP server does with a connection that idles or speaks nonsense, in process: the timers are
shortened here, which a running daemon's cannot be."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from jitaku import passwords
from jitaku.config import ImapSettings, LoginSettings
from jitaku.mail.imap import server
from jitaku.mail.login import Authenticator, Logins, Sessions
from jitaku.passwords import Checker
from jitaku.ratelimit import LoginLimiter
from jitaku.store import Database, accounts, mailstore


def logins(database: Database) -> Logins:
    return Logins(Authenticator(database, LoginLimiter(database, LoginSettings()), Checker(1, 0)), Sessions())


async def talk(database: Database, *lines: bytes) -> list[bytes]:
    """Connect, send LINES, and read until the server closes the connection."""
    imap = server.ImapServer(database, logins(database), None)
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


def test_a_search_or_list_past_its_time_answers_no_limit_and_the_session_goes_on(tmp_path: Path) -> None:
    """[imap] max_command_time bounds the work a SEARCH or LIST does in its worker thread (issue 15)."""
    database = Database(f"sqlite:///{tmp_path / 'j.db'}")
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", passwords.hash_password("secret"))
        for number in range(3):
            mailstore.append(connection, "alice@example.test", b"Subject: %d\r\n\r\nhello\r\n" % number)

    async def run(settings: ImapSettings) -> list[bytes]:
        imap = server.ImapServer(database, logins(database), None, settings)
        listener = await asyncio.start_server(functools.partial(imap.serve, implicit_tls=False), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        writer.write(b"a LOGIN alice@example.test secret\r\nb SELECT INBOX\r\nc SEARCH TEXT hello\r\n")
        writer.write(b'd LIST "" *\r\ne SEARCH ALL\r\nf LOGOUT\r\n')
        received = (await asyncio.wait_for(reader.read(), 10)).splitlines()
        writer.close()
        listener.close()
        return [line for line in received if line[:1] in b"cdef" or line.startswith(b"* SEARCH")]

    assert asyncio.run(run(ImapSettings(max_command_time=1e-9))) == [
        b"c NO [LIMIT] the search took too long: narrow it, or search fewer messages",
        b"d NO [LIMIT] listing took too long: ask for fewer mailboxes",
        b"e NO [LIMIT] the search took too long: narrow it, or search fewer messages",
        b"f OK LOGOUT completed",
    ]
    assert asyncio.run(run(ImapSettings()))[:3] == [b"* SEARCH 1 2 3", b"c OK SEARCH completed", b"d OK LIST completed"]
    database.close()


def test_a_missing_mailbox_is_nonexistent_unless_creating_it_would_help(tmp_path: Path) -> None:
    """RFC 5530: TRYCREATE is for APPEND, COPY and MOVE to a mailbox that CREATE would make; DELETE, RENAME
    and UNSUBSCRIBE got it too. A name no mailbox can have is NO [CANNOT], and no BAD to count."""
    database = Database(f"sqlite:///{tmp_path / 'j.db'}")
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", passwords.hash_password("secret"))
    commands = [b"DELETE Nowhere", b"RENAME Nowhere Elsewhere", b"SUBSCRIBE Nowhere", b"UNSUBSCRIBE Nowhere"]
    commands += [b"APPEND Nowhere {1+}\r\nx", b"SELECT &Jjo", b"LOGOUT"]
    received = asyncio.run(
        talk(database, b"a LOGIN alice@example.test secret", *(b"t%d " % n + line for n, line in enumerate(commands)))
    )
    assert [line.partition(b"]")[0] for line in received if line.startswith(b"t")] == [
        b"t0 NO [NONEXISTENT",
        b"t1 NO [NONEXISTENT",
        b"t2 NO [NONEXISTENT",
        b"t3 NO [NONEXISTENT",
        b"t4 NO [TRYCREATE",
        b"t5 NO [CANNOT",
        b"t6 OK LOGOUT completed",
    ]
    database.close()
