"""Passwords, checked the same way for every protocol that takes them (submission, POP3, IMAP)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
from collections import Counter

from jitaku import log
from jitaku.passwords import verify_password
from jitaku.ratelimit import FailureLimiter
from jitaku.store import Database, accounts


async def verify(database: Database, address: str, password: str) -> str | None:
    """The user's address when PASSWORD is theirs; None otherwise. Hashing runs off the event loop
    (argon2 takes tens of milliseconds), and an unknown user costs as long as a known one."""
    user = await database.read(lambda connection: accounts.find_user(connection, address))
    valid = await asyncio.to_thread(verify_password, user.password_hash if user else None, password)
    return user.address if user and valid else None


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


class Refused(Exception):
    """A login that did not open a session; each protocol words its own answer."""


class BadPassword(Refused):
    pass


class TooManySessions(Refused):
    pass


class Logins:
    """How IMAP and POP3 let a user in: the password, the failed-login limit shared with submission, and
    the sessions a user has open from one address."""

    def __init__(self, database: Database, limiter: FailureLimiter, sessions: Sessions) -> None:
        self._database = database
        self._limiter = limiter
        self._sessions = sessions

    def blocked(self, client: str) -> bool:
        return self._limiter.blocked(client)

    async def open(self, client: str, user: str, password: str, listener: str) -> str:
        """The user's address, with one more session of theirs counted (close() it when the session ends);
        BadPassword or TooManySessions otherwise."""
        address = await verify(self._database, user, password)
        if address is None:
            self._limiter.failed(client)
            log.event("auth_failed", client=client, user=user.lower(), listener=listener)
            raise BadPassword
        self._limiter.succeeded(client)
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


def is_loopback(host: str) -> bool:
    """Passwords travel in the clear only on this machine (RFC 8314 §3, our rule for every protocol)."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False
