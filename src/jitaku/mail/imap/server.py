"""The IMAP server: one session per connection, commands as the parser types them, each handed to its
handler (mailboxes, fetching, changes, searching) with the Backend, the store and limits they share.

The session (jitaku.mail.imap.session) keeps its view of the selected mailbox up to date after each command
(at most every REFRESH_EVERY in a run of FETCH, STORE or SEARCH), and every IDLE_POLL while IDLE.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from jitaku import log
from jitaku.config import ImapSettings
from jitaku.mail import lineserver, login
from jitaku.mail.imap import changes, fetching, mailboxes, search, searching
from jitaku.mail.imap.backend import Backend, Refused
from jitaku.mail.imap.budget import Workers
from jitaku.mail.imap.parser import (
    Append,
    Authenticate,
    BadCharset,
    BadName,
    Command,
    Copy,
    Create,
    Enable,
    Fetch,
    Id,
    ListMailboxes,
    Login,
    MailboxCommand,
    OverLimit,
    ParseError,
    Rename,
    Search,
    Select,
    Simple,
    Status,
    Store,
    UidExpunge,
    parse,
)
from jitaku.mail.imap.session import AUTOLOGOUT, Session, refresh
from jitaku.mail.imap.wire import LiteralRefused, Wire
from jitaku.mail.lineserver import Closed, LoggedIn
from jitaku.store import Database
from jitaku.store.errors import StoreError, out_of_space

MAX_LINE = 64 * 1024
# Before login a command holds a LOGIN's user and password, which take a few hundred bytes (RFC 7888's
# LITERAL- allows 4,096 per literal without asking): two of those
MAX_COMMAND_BEFORE_LOGIN = 8 * 1024
MAX_MESSAGE_SIZE = 26_214_400  # [smtp] max_message_size's default: the largest APPEND, as for mail received
REFRESH_EVERY = 0.1  # seconds: FETCH, STORE and SEARCH look for others' changes at most this often
IDLE_POLL = 0.5  # seconds between looks at the mailbox while IDLE: mail shows up within a second
MAX_BAD_COMMANDS = 20  # in a row, then the connection is closed: a client that speaks something else
CAPABILITIES = (
    "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UIDPLUS MOVE UNSELECT CHILDREN SPECIAL-USE CONDSTORE ESEARCH"
    " LIST-EXTENDED LIST-STATUS STATUS=SIZE BINARY SEARCHRES APPENDLIMIT={appendlimit}"
)


class ImapServer:
    def __init__(
        self,
        database: Database,
        logins: login.Logins,
        tls: ssl.SSLContext | None,
        settings: ImapSettings | None = None,
        max_message_size: int = MAX_MESSAGE_SIZE,
        training: bool = False,
    ) -> None:
        self._backend = Backend(database, Workers(), settings or ImapSettings(), max_message_size, training=training)
        self._logins = logins
        self._tls = tls

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, implicit_tls: bool) -> None:
        session = Session(client=login.client_of(writer), tls=implicit_tls)
        wire = Wire(reader, writer, self._backend.settings.write_timeout)
        greeting = b"* OK [CAPABILITY " + self._capabilities(session).encode() + b"] jitaku IMAP ready"
        # RFC 3501 §7.1.5: BYE when the daemon stops, in a command or between two
        await lineserver.serve(
            wire, session, self._logins, greeting, lambda: self._one(wire, session), b"* BYE server shutting down"
        )

    def _capabilities(self, session: Session) -> str:
        words = [CAPABILITIES.format(appendlimit=self._backend.max_message_size)]
        if session.user is None:
            if not session.tls and self._tls is not None:
                words.append("STARTTLS")
            words.append("AUTH=PLAIN" if session.may_log_in else "LOGINDISABLED")
        return " ".join(words)

    async def _one(self, wire: Wire, session: Session) -> None:
        # after login a literal may hold the largest message (APPEND), and a command a line's worth more
        if session.user is None:
            limit = literal_limit = MAX_COMMAND_BEFORE_LOGIN
        else:
            limit, literal_limit = self._backend.max_message_size + MAX_LINE, self._backend.max_message_size
        try:
            data = await wire.command(session.timeout, limit, literal_limit)
        except LiteralRefused as refused:
            await wire.send(refused.answer.encode())
            return
        try:
            tag, command = parse(data, self._backend.settings.max_search_keys)
        except OverLimit as error:
            await wire.send(f"{error.tag} NO [LIMIT] {error}".encode())
            return
        except BadName as error:  # RFC 5530: no mailbox can ever have that name
            await wire.send(f"{error.tag} NO [CANNOT] {error}".encode())
            return
        except ParseError as error:
            await self._bad(wire, session, f"{error.tag} BAD {error}")
            return
        except BadCharset as error:
            if error.saves and session.view is not None:
                session.view.saved = set()
            tag = data.split(b" ", 1)[0].decode("ascii", "replace")
            await wire.send(f"{tag} NO [BADCHARSET (UTF-8 US-ASCII)] unknown charset".encode())
            return
        session.fresh = False
        try:
            done = await self._command(wire, session, tag, command)
        except Refused as refused:
            done = f"NO {refused}"
        except ParseError as error:
            done = f"BAD {error}"
        except StoreError as error:  # the store failed (a full disk): the command did nothing, the session goes on
            log.event(
                "imap_store_failed", client=session.client, user=lineserver.logged_in_as(session), error=repr(error)
            )
            done = "NO " + _store_failure(error)
        if done is None:  # STARTTLS: answered before the handshake
            return
        busy = isinstance(command, (Fetch, Store, Search))
        # A client fetching message by message (mbsync sends a FETCH per message) hears of others' changes
        # at most every REFRESH_EVERY; any other command, NOOP and IDLE above all, looks at once, unless it
        # brought the view up to date itself (Session.up_to_date)
        user = session.user
        stale = not busy or time.monotonic() - session.refreshed_at >= REFRESH_EVERY
        if user is not None and stale and not session.fresh:
            try:
                await refresh(self._backend.database, user, session, allow_expunge=_is_uid(command) or not busy)
            except StoreError as error:  # the next command looks again
                log.event("imap_store_failed", client=session.client, user=user.address, error=repr(error))
        if done.startswith("BAD "):
            await wire.send(*session.lines)
            session.lines.clear()
            await self._bad(wire, session, f"{tag} {done}")
            return
        session.bad = 0
        await wire.send(*session.lines, f"{tag} {done}".encode())
        session.lines.clear()

    @staticmethod
    async def _bad(wire: Wire, session: Session, answer: str) -> None:
        session.bad += 1
        if session.bad > MAX_BAD_COMMANDS:
            await wire.send(b"* BYE too many invalid commands")
            raise Closed
        await wire.send(answer.encode())

    async def _command(self, wire: Wire, session: Session, tag: str, command: Command) -> str | None:
        """The tagged response's text, after the untagged ones in session.lines; None when it went out already."""
        match command:  # in any state (RFC 3501 §6.1, §6.2)
            case Simple():
                return await self._simple(wire, session, tag, command.name)
            case Id():
                session.say('* ID ("name" "jitaku")')
                return "OK ID completed"
            case Enable():
                enabled = [name for name in command.capabilities if name == "CONDSTORE"]
                if enabled:
                    session.enable_condstore()
                session.say("* ENABLED " + " ".join(enabled))
                return "OK ENABLE completed"
            case Login() | Authenticate():
                return await self._log_in(wire, session, command)
        user = session.user
        if user is None:
            return "BAD log in first"
        if _enables_condstore(command):
            session.enable_condstore()
        backend = self._backend
        match command:  # once logged in (RFC 3501 §6.3)
            case ListMailboxes():
                return await mailboxes.list_mailboxes(backend, user, session, command)
            case Status():
                return await mailboxes.status(backend, user, session, command)
            case Select():
                return await mailboxes.select(backend, user, session, command)
            case Create() | MailboxCommand() | Rename():
                return await mailboxes.manage(backend, user, session, command)
            case Append():
                return await changes.append(backend, user, session, command)
        view = session.view
        if view is None:
            return "BAD select a mailbox first"
        match command:  # in a selected mailbox (RFC 3501 §6.4)
            case Fetch():
                return await fetching.fetch(backend, wire, user, session, view, command)
            case Store():
                return await changes.store(backend, user, session, view, command)
            case Copy():
                return await changes.copy(backend, user, session, view, command)
            case Search():
                return await searching.search(backend, user, session, view, command, tag)
            case UidExpunge():
                return await changes.expunge(backend, user, session, view, view.resolve(command.sequence, uid=True))

    async def _simple(self, wire: Wire, session: Session, tag: str, name: str) -> str | None:
        """The commands without arguments, in the same three states."""
        match name:
            case "CAPABILITY":
                session.say("* CAPABILITY " + self._capabilities(session))
                return "OK CAPABILITY completed"
            case "NOOP" | "CHECK":
                return f"OK {name} completed"
            case "LOGOUT":
                await wire.send(b"* BYE jitaku IMAP server logging out", f"{tag} OK LOGOUT completed".encode())
                raise Closed
            case "STARTTLS":
                return await self._start_tls(wire, session, tag)
            case "NAMESPACE":
                session.say('* NAMESPACE (("" "/")) NIL NIL')
                return "OK NAMESPACE completed"
        user = session.user
        if user is None:
            return "BAD log in first"
        if name == "IDLE":
            return await self._idle(wire, user, session, tag)
        view = session.view
        if view is None:
            return "BAD select a mailbox first"
        if name == "EXPUNGE":
            return await changes.expunge(self._backend, user, session, view, None)
        return await mailboxes.close(self._backend, user, session, view, name)  # CLOSE and UNSELECT

    async def _start_tls(self, wire: Wire, session: Session, tag: str) -> str | None:
        """STARTTLS (RFC 3501 §6.2.1): its OK goes out before the handshake, so there is nothing to answer after."""
        if session.tls or self._tls is None or session.user is not None:
            return "BAD STARTTLS is not available now"
        await wire.send(f"{tag} OK begin TLS negotiation now".encode())
        try:
            await wire.writer.start_tls(self._tls)
        except (OSError, ssl.SSLError):
            raise Closed from None
        session.tls = True
        return None

    async def _log_in(self, wire: Wire, session: Session, command: Login | Authenticate) -> str:
        if session.user is not None:
            return "BAD already logged in"
        if not session.may_log_in:
            return "NO [PRIVACYREQUIRED] passwords only over TLS: use STARTTLS, or the IMAPS port"
        if isinstance(command, Login):
            user, password = command.user, command.password
        else:
            if command.mechanism != "PLAIN":
                return "NO [CANNOT] only AUTHENTICATE PLAIN is offered"
            response = command.initial
            if response is None:
                await wire.send(b"+ ")
                response = (await wire.line(session.timeout)).decode("ascii", "replace").strip()
            if response == "*":
                return "BAD authentication cancelled"
            try:
                user, password = login.plain(response)
            except login.MalformedPlain:
                return "BAD malformed PLAIN response"
            except login.ForeignIdentity:
                return "NO [AUTHORIZATIONFAILED] logging in as another user is not allowed"
        try:
            address = await self._logins.open(session.client, user, password, "imap")
        except login.BadPassword:
            return "NO [AUTHENTICATIONFAILED] authentication failed"
        except login.TryLater as refused:
            return f"NO [UNAVAILABLE] {refused}"
        except login.TooManySessions:
            return "NO [LIMIT] too many sessions for this user from your address; close one first"
        session.user = LoggedIn(address)
        log.event("imap_login", client=session.client, user=address)
        return f"OK [CAPABILITY {self._capabilities(session)}] logged in"

    async def _idle(self, wire: Wire, user: LoggedIn, session: Session, tag: str) -> str:
        await wire.send(b"+ idling")
        done = asyncio.ensure_future(wire.line(timeout=AUTOLOGOUT))
        try:
            while True:
                finished, _ = await asyncio.wait({done}, timeout=IDLE_POLL)
                if finished:
                    line = done.result()
                    if line.strip().upper() != b"DONE":
                        return "BAD expected DONE"
                    return "OK IDLE terminated"
                await refresh(self._backend.database, user, session, allow_expunge=True)
                if session.lines:
                    await wire.send(*session.lines)
                    session.lines.clear()
        finally:
            done.cancel()


def _store_failure(error: StoreError) -> str:
    """The code and text of the NO for a command the store could not do (RFC 5530): [LIMIT] when the disk is
    full, a bound of the machine's and no fault of ours, [SERVERBUG] for any other failure."""
    if out_of_space(error):
        return "[LIMIT] the server's disk is full; try again later"
    return "[SERVERBUG] the server could not read or write its store; try again later"


def _is_uid(command: Command) -> bool:
    return isinstance(command, (Fetch, Store, Search)) and command.uid


def _enables_condstore(command: Command) -> bool:
    """RFC 7162 §3.1's CONDSTORE enabling commands, but for ENABLE and SELECT (CONDSTORE), which say so."""
    if isinstance(command, Fetch):
        return command.changed_since is not None or any(item.name == "MODSEQ" for item in command.items)
    if isinstance(command, Store):
        return command.unchanged_since is not None
    if isinstance(command, Search):
        return search.uses_modseq(command.key)
    return isinstance(command, Status) and "HIGHESTMODSEQ" in command.items
