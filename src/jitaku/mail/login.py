"""Passwords, checked the same way for every protocol that takes them (submission, POP3, IMAP, the web
login): under the failed-login limit, on argon2's own threads, as slowly for an unknown user as for a known one."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import ipaddress
from collections import Counter

from jitaku import log
from jitaku.passwords import Busy, Checker
from jitaku.ratelimit import Limiter
from jitaku.store import Database, accounts
from jitaku.store.errors import StoreError


class Refused(Exception):
    """A login that did not open a session; each protocol words its own answer."""


class BadPassword(Refused):
    pass


class TryLater(Refused):
    """A login refused whatever its password, for now: the protocol's temporary answer, worded by str()."""


class TooManySessions(Refused):
    pass


LOCKED = "too many failed logins from your address; try again later"
BUSY = "too many logins at once; try again in a moment"
UNAVAILABLE = "passwords cannot be checked now; try again later"


class Authenticator:
    """Checks a user's password: refused while the failed-login limit holds or every password thread is
    taken, counted against the limit from the moment it starts."""

    def __init__(self, database: Database, limiter: Limiter, checker: Checker) -> None:
        self._database = database
        self._limiter = limiter
        self._checker = checker

    async def allows(self, client: str, user: str) -> bool:
        """Whether USER may try from CLIENT now, for protocols that learn the user before the password."""
        return await self._limiter.allows(client, user)

    async def check(self, client: str, user: str, password: str, listener: str) -> str:
        """The user's address when PASSWORD is theirs; BadPassword or TryLater otherwise."""
        try:
            return await self._check(client, user, password, listener)
        except StoreError as error:  # no check without its count in the store (a full disk)
            log.event("login_store_failed", client=client, listener=listener, error=repr(error))
            raise TryLater(UNAVAILABLE) from None

    async def _check(self, client: str, user: str, password: str, listener: str) -> str:
        if not await self._limiter.allows(client, user):
            raise TryLater(LOCKED)
        try:
            self._checker.reserve()
        except Busy:
            raise TryLater(BUSY) from None
        try:
            attempt = await self._limiter.start(client, user)
            found = await self._database.query(
                lambda statements: accounts.find_user(statements, user.strip()), snapshot=False
            )
        except BaseException:
            self._checker.release()
            raise
        if attempt is None:
            self._checker.release()
            raise TryLater(LOCKED)
        # an unknown user is checked against a hash of nobody's password: the same cost, so no enumeration
        if await self._checker.verify(found.password_hash if found else None, password) and found is not None:
            await self._limiter.succeeded(attempt)
            return found.address
        await self._limiter.failed(attempt)
        log.event("auth_failed", client=client, user=attempt.login, listener=listener)
        raise BadPassword


class Sessions:
    """How many sessions each user has open from each address. One address (a phone that reconnects without
    closing, a script gone wrong) must not hold a user's sessions without end; Dovecot's
    mail_max_userip_connections has the same rule and default."""

    def __init__(self, limit: int = 10) -> None:
        self._limit = limit
        self._open: Counter[tuple[str, str]] = Counter()

    def open(self, user: str, client: str) -> bool:
        """Count one more session of USER from CLIENT, unless that would pass the limit."""
        if self._open[user, client] >= self._limit:
            return False
        self._open[user, client] += 1
        return True

    def close(self, user: str, client: str) -> None:
        self._open[user, client] -= 1
        if self._open[user, client] <= 0:
            del self._open[user, client]


class Logins:
    """How IMAP and POP3 let a user in: the password (Authenticator, shared with submission and the web) and
    the sessions a user has open from one address."""

    def __init__(self, authenticator: Authenticator, sessions: Sessions) -> None:
        self._authenticator = authenticator
        self._sessions = sessions

    async def allows(self, client: str, user: str) -> bool:
        return await self._authenticator.allows(client, user)

    async def open(self, client: str, user: str, password: str, listener: str) -> str:
        """The user's address, with one more session of theirs counted (close() it when the session ends);
        BadPassword, TryLater or TooManySessions otherwise."""
        address = await self._authenticator.check(client, user, password, listener)
        if not self._sessions.open(address, client):
            log.event("too_many_sessions", client=client, user=address, listener=listener)
            raise TooManySessions
        return address

    def close(self, address: str, client: str) -> None:
        self._sessions.close(address, client)


class MalformedPlain(ValueError):
    """A SASL PLAIN response that is not base64 of authzid NUL authcid NUL password."""


class ForeignIdentity(ValueError):
    """A SASL PLAIN response that asks to act as another user (an authzid other than the authcid)."""


def plain(response: str) -> tuple[str, str]:
    """The user and password in a SASL PLAIN response (RFC 4616); logging in as another user is refused."""
    try:
        authzid, user, password = base64.b64decode(response, validate=True).decode().split("\0")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise MalformedPlain(response[:40]) from None
    if authzid and authzid.lower() != user.lower():
        raise ForeignIdentity(authzid)
    return user, password


def client_of(writer: asyncio.StreamWriter) -> str:
    """The connecting client's address, for logs and the failed-login limit."""
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if peer else "?"


def may_send_password(client: str, tls: bool) -> bool:
    return tls or is_loopback(client)


@functools.lru_cache(maxsize=1024)
def is_loopback(host: str) -> bool:
    """Passwords travel in the clear only on this machine (RFC 8314 §3, our rule for every protocol).
    Remembered per address: every SMTP connection asks."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
