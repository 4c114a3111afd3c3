"""POP3 (RFC 1939) over each user's INBOX, with CAPA and response codes (RFC 2449, 3206), STLS (RFC 2595)
and SASL PLAIN (RFC 5034, 4616).

A session sees the maildrop as it was at login; DELE only marks, and the marked messages are removed in
one transaction at QUIT. A connection that drops, or times out, removes nothing.

RFC 1939 asks for an exclusive lock on the maildrop; like Dovecot's default, there is none. A connection
that died without a FIN (a phone leaving the Wi-Fi) would otherwise lock its user out until the
autologout timer, the stale-lock trouble this project exists to end. Two sessions at once stay safe:
each deletes only what it marked, and a message the other removed answers "-ERR ... is gone".
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from jitaku import log
from jitaku.config import Pop3Settings
from jitaku.mail import lineserver, login
from jitaku.mail.lineserver import Closed, LoggedIn
from jitaku.store import Database, mailstore
from jitaku.words import counted

MAX_LINE = 1024  # RFC 2449 §4 allows 255 octets a command; a longer line is an error, not a reason to buffer
IDLE_TIMEOUT = 600.0  # RFC 1939 §3: an autologout timer of at least 10 minutes
MAX_BAD_COMMANDS = 20  # then the connection is closed: a client that speaks something else


_Line = Callable[[int, int, int], str]  # one scan line of LIST or UIDL from (number, uid, size)


@dataclass
class Transaction:
    """The TRANSACTION state (RFC 1939 §5): who logged in and the maildrop as it was then. A command on the
    maildrop takes one, so none can run before login."""

    user: LoggedIn
    drop: mailstore.Maildrop
    deleted: set[int] = field(default_factory=set)  # message numbers marked by DELE


@dataclass
class Session:
    client: str
    tls: bool
    named: str | None = None  # the user USER named, until PASS succeeds or fails
    transaction: Transaction | None = None
    bad: int = 0

    @property
    def user(self) -> LoggedIn | None:
        return self.transaction.user if self.transaction is not None else None

    @property
    def may_log_in(self) -> bool:
        return login.may_send_password(self.client, self.tls)


_Handler = Callable[["Pop3Server", "_Connection", Session, str], Awaitable[None]]
_TransactionHandler = Callable[["Pop3Server", "_Connection", Session, Transaction, str], Awaitable[None]]


class Pop3Server:
    """The POP3 listeners' connection handler."""

    def __init__(
        self,
        database: Database,
        logins: login.Logins,
        tls: ssl.SSLContext | None,
        settings: Pop3Settings | None = None,
    ) -> None:
        self._database = database
        self._logins = logins
        self._tls = tls
        self._settings = settings or Pop3Settings()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, implicit_tls: bool) -> None:
        session = Session(client=login.client_of(writer), tls=implicit_tls)
        connection = _Connection(reader, writer, self._settings.write_timeout)

        async def command() -> None:
            await self._command(connection, session, await connection.command())

        # RFC 3206 §4: SYS/TEMP, try again later
        await lineserver.serve(
            connection,
            session,
            self._logins,
            b"+OK jitaku POP3 server ready",
            command,
            b"-ERR [SYS/TEMP] server shutting down",
        )

    async def _command(self, connection: _Connection, session: Session, line: str) -> None:
        verb, _, argument = line.partition(" ")
        verb = verb.upper()
        transaction = session.transaction
        if transaction is not None and verb in self._TRANSACTION:
            await self._TRANSACTION[verb](self, connection, session, transaction, argument.strip())
        elif transaction is None and verb in self._AUTHORIZATION:
            await self._AUTHORIZATION[verb](self, connection, session, argument.strip())
        else:
            session.bad += 1
            if session.bad > MAX_BAD_COMMANDS:
                await connection.reply("-ERR too many unknown commands; goodbye")
                raise Closed
            known = verb in self._AUTHORIZATION or verb in self._TRANSACTION
            await connection.reply(f"-ERR {verb[:20]} is not valid {'now' if known else 'here'}")

    async def _capa(self, connection: _Connection, session: Session, _argument: str) -> None:
        logins = ["USER", "SASL PLAIN"] if session.may_log_in else []
        tls = ["STLS"] if not session.tls and self._tls is not None else []
        await _capabilities(connection, logins + tls)

    async def _capa_logged_in(
        self, connection: _Connection, _session: Session, _transaction: Transaction, _argument: str
    ) -> None:
        await _capabilities(connection, [])

    async def _stls(self, connection: _Connection, session: Session, _argument: str) -> None:
        if session.tls or self._tls is None:
            await connection.reply("-ERR TLS is " + ("already on" if session.tls else "not available"))
            return
        await connection.reply("+OK begin TLS negotiation")
        try:
            await connection.writer.start_tls(self._tls)
        except (OSError, ssl.SSLError):
            raise Closed from None
        session.tls, session.named = True, None  # RFC 2595 §4: forget what was said in the clear

    async def _user(self, connection: _Connection, session: Session, argument: str) -> None:
        if not await self._may_try(connection, session):
            return
        if not await self._logins.allows(session.client, argument):
            await connection.reply(f"-ERR [SYS/TEMP] {login.LOCKED}")
            return
        session.named = argument
        await connection.reply("+OK send PASS")

    async def _pass(self, connection: _Connection, session: Session, argument: str) -> None:
        if session.named is None:
            await connection.reply("-ERR USER first")
            return
        user, session.named = session.named, None
        if await self._may_try(connection, session):
            await self._log_in(connection, session, user, argument)

    async def _auth(self, connection: _Connection, session: Session, argument: str) -> None:
        mechanism, _, initial = argument.partition(" ")
        if not mechanism:  # the mechanism list, as clients probe for it (RFC 1734 style)
            await connection.reply("+OK", "PLAIN", ".")
            return
        if mechanism.upper() != "PLAIN":
            await connection.reply("-ERR [AUTH] only PLAIN is offered")
            return
        if not await self._may_try(connection, session):
            return
        if not initial:
            await connection.reply("+ ")
            initial = await connection.command()
        if initial == "*":
            await connection.reply("-ERR authentication cancelled")
            return
        try:
            user, password = login.plain(initial)
        except login.MalformedPlain:
            await connection.reply("-ERR [AUTH] malformed PLAIN response")
            return
        except login.ForeignIdentity:
            await connection.reply("-ERR [AUTH] logging in as another user is not allowed")
            return
        await self._log_in(connection, session, user, password)

    async def _may_try(self, connection: _Connection, session: Session) -> bool:
        if not session.may_log_in:
            await connection.reply("-ERR [AUTH] passwords only over TLS: use STLS, or the POP3S port")
            return False
        return True

    async def _log_in(self, connection: _Connection, session: Session, user: str, password: str) -> None:
        try:
            address = await self._logins.open(session.client, user, password, "pop3")
        except login.BadPassword:
            await connection.reply("-ERR [AUTH] authentication failed")
            return
        except login.TryLater as refused:
            await connection.reply(f"-ERR [SYS/TEMP] {refused}")
            return
        except login.TooManySessions:
            await connection.reply("-ERR [IN-USE] too many sessions for this user from your address; close one first")
            return
        drop = await self._database.query(lambda s: mailstore.maildrop(s, address))
        session.transaction = transaction = Transaction(LoggedIn(address), drop)
        log.event("pop3_login", client=session.client, user=address, messages=len(drop.messages))
        count, size = _totals(transaction)
        await connection.reply(f"+OK {address} has {counted(count, 'message')} ({size} octets)")

    async def _quit(self, connection: _Connection, _session: Session, _argument: str) -> None:
        await connection.reply("+OK bye")
        raise Closed

    async def _update(
        self, connection: _Connection, session: Session, transaction: Transaction, _argument: str
    ) -> None:
        """QUIT after login: the UPDATE state (RFC 1939 §6) removes what DELE marked."""
        address, drop = transaction.user.address, transaction.drop
        uids = [drop.messages[number - 1][0] for number in sorted(transaction.deleted)]
        try:
            removed = await self._database.transact(lambda tx: mailstore.remove(tx, address, uids))
        except Exception as error:
            log.event("pop3_update_failed", client=session.client, user=address, error=repr(error))
            await connection.reply("-ERR [SYS/TEMP] the marked messages could not be removed; they are still there")
            raise Closed from None
        log.event("pop3_logout", client=session.client, user=address, deleted=removed)
        await connection.reply(f"+OK bye ({counted(removed, 'message')} removed)")
        raise Closed

    async def _stat(self, connection: _Connection, _session: Session, transaction: Transaction, _argument: str) -> None:
        count, size = _totals(transaction)
        await connection.reply(f"+OK {count} {size}")

    async def _list(self, connection: _Connection, _session: Session, transaction: Transaction, argument: str) -> None:
        await _listing(connection, transaction, argument, lambda number, uid, size: f"{number} {size}")

    async def _uidl(self, connection: _Connection, _session: Session, transaction: Transaction, argument: str) -> None:
        validity = transaction.drop.uidvalidity
        await _listing(connection, transaction, argument, lambda number, uid, size: f"{number} {validity}.{uid}")

    async def _retr(self, connection: _Connection, _session: Session, transaction: Transaction, argument: str) -> None:
        await self._send_message(connection, transaction, argument, None)

    async def _top(self, connection: _Connection, _session: Session, transaction: Transaction, argument: str) -> None:
        which, _, lines = argument.partition(" ")
        if not lines.strip().isdigit():
            await connection.reply("-ERR usage: TOP message lines")
            return
        await self._send_message(connection, transaction, which, int(lines))

    async def _send_message(
        self, connection: _Connection, transaction: Transaction, argument: str, body_lines: int | None
    ) -> None:
        number = await _message(connection, transaction, argument)
        if number is None:
            return
        address, (uid, size) = transaction.user.address, transaction.drop.messages[number - 1]
        stored = await self._database.query(lambda s: mailstore.get_message(s, address, uid))
        if stored is None:  # an IMAP client expunged it meanwhile
            await connection.reply(f"-ERR [SYS/PERM] message {number} is gone")
            return
        data = stored.body if body_lines is None else _top(stored.body, body_lines)
        await connection.send_data(f"+OK {size} octets", data)

    async def _dele(self, connection: _Connection, _session: Session, transaction: Transaction, argument: str) -> None:
        number = await _message(connection, transaction, argument)
        if number is not None:
            transaction.deleted.add(number)
            await connection.reply(f"+OK message {number} deleted")

    async def _rset(self, connection: _Connection, _session: Session, transaction: Transaction, _argument: str) -> None:
        transaction.deleted.clear()
        count, size = _totals(transaction)
        await connection.reply(f"+OK maildrop has {count} messages ({size} octets)")

    async def _noop(
        self, connection: _Connection, _session: Session, _transaction: Transaction, _argument: str
    ) -> None:
        await connection.reply("+OK")

    _AUTHORIZATION: dict[str, _Handler] = {
        "CAPA": _capa,
        "STLS": _stls,
        "USER": _user,
        "PASS": _pass,
        "AUTH": _auth,
        "QUIT": _quit,
    }
    _TRANSACTION: dict[str, _TransactionHandler] = {
        "CAPA": _capa_logged_in,
        "STAT": _stat,
        "LIST": _list,
        "UIDL": _uidl,
        "RETR": _retr,
        "TOP": _top,
        "DELE": _dele,
        "RSET": _rset,
        "NOOP": _noop,
        "QUIT": _update,
    }


async def _capabilities(connection: _Connection, logins: list[str]) -> None:
    """CAPA's answer; LOGINS are the ways to log in (and STLS) still open to the session."""
    capabilities = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", *logins]
    await connection.reply("+OK capability list follows", *capabilities, "IMPLEMENTATION jitaku", ".")


async def _listing(connection: _Connection, transaction: Transaction, argument: str, line: _Line) -> None:
    """LIST or UIDL: one message's LINE when ARGUMENT names it, else every message's not marked deleted."""
    drop = transaction.drop
    if argument:
        number = await _message(connection, transaction, argument)
        if number is not None:
            uid, size = drop.messages[number - 1]
            await connection.reply("+OK " + line(number, uid, size))
        return
    lines = [
        line(number, uid, size)
        for number, (uid, size) in enumerate(drop.messages, 1)
        if number not in transaction.deleted
    ]
    count, size = _totals(transaction)
    await connection.reply(f"+OK {counted(count, 'message')} ({size} octets)", *lines, ".")


def _totals(transaction: Transaction) -> tuple[int, int]:
    kept = [
        size for number, (_uid, size) in enumerate(transaction.drop.messages, 1) if number not in transaction.deleted
    ]
    return len(kept), sum(kept)


async def _message(connection: _Connection, transaction: Transaction, argument: str) -> int | None:
    """The message number ARGUMENT names, if it names one that is there and not deleted."""
    if not argument.isdigit() or not 1 <= int(argument) <= len(transaction.drop.messages):
        await connection.reply(f"-ERR no message {argument[:20]}")
        return None
    number = int(argument)
    if number in transaction.deleted:
        await connection.reply(f"-ERR message {number} is already deleted")
        return None
    return number


def _top(body: bytes, lines: int) -> bytes:
    """The header, the blank line, and the first LINES lines of the body (RFC 1939 TOP)."""
    head, separator, rest = body.partition(b"\r\n\r\n")
    if not separator:
        return body
    kept = rest.split(b"\r\n")[:lines] if lines else []
    return head + separator + b"\r\n".join(kept) + (b"\r\n" if kept else b"")


class _Connection(lineserver.Connection):
    """Commands in and replies out as text (jitaku.mail.lineserver: the idle timer, backpressure and the write
    timeout), and dot-stuffing."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, write_timeout: float) -> None:
        super().__init__(reader, writer, write_timeout, "pop3", b"-ERR")

    async def command(self) -> str:
        raw = await self.line(IDLE_TIMEOUT)
        return raw.rstrip(b"\r\n").decode("utf-8", "replace")

    async def reply(self, *lines: str) -> None:
        await self.send(*(line.encode() for line in lines))

    async def send_data(self, first: str, data: bytes) -> None:
        """FIRST, then DATA dot-stuffed and ended with CRLF.CRLF (RFC 1939 §3), as fast as the client reads it."""
        stuffed = data.replace(b"\r\n.", b"\r\n..")
        if stuffed.startswith(b"."):
            stuffed = b"." + stuffed
        end = b".\r\n" if stuffed.endswith(b"\r\n") else b"\r\n.\r\n"
        await self.stream([first.encode() + b"\r\n", stuffed, end])
