"""Failed-login limits: for passwords, kept in the store (one count for every protocol and process, kept
across restarts); for the buddy's token, in this process's memory."""

from __future__ import annotations

import ipaddress
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass

from jitaku import log
from jitaku.config import LoginSettings
from jitaku.store import Database
from jitaku.store import logins as rows

IPV6_PREFIX = 64  # one household's IPv6 network: its devices may take any address in it, and so may an attacker
MAX_LOGIN = 320  # octets of a user name kept (RFC 5321's longest address); a longer one is cut


def address_key(client: str) -> str:
    """The address whose failures count together: an IPv4 address, or an IPv6 client's /64."""
    try:
        address = ipaddress.ip_address(client.split("%")[0])
    except ValueError:
        return client[:64]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def login_key(user: str) -> str:
    return user.strip().lower()[:MAX_LOGIN]


@dataclass(frozen=True)
class Attempt:
    """A password check under way, counted against the limits since it started."""

    client: str
    login: str
    last_for_login: bool  # it took this user's last try from this address
    last_for_client: bool  # it took this address's last try


class LoginLimiter:
    """A user may fail `max_failures` times from one address, and an address `max_failures_per_address`
    times across users, within `window` seconds. A try counts from the moment it starts, not when its
    check has failed: 50 parallel tries were all checked when the limit looked only at finished ones.

    Refusing costs one read; only a try that will be checked is written (and its success), so a flood of
    tries costs the writer at most what the limits and the password threads let through.
    """

    def __init__(self, database: Database, settings: LoginSettings, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._settings = settings
        self._clock = clock

    def _since(self) -> float:
        return self._clock() - self._settings.window

    def _within(self, counts: rows.Counts) -> bool:
        settings = self._settings
        return counts.login < settings.max_failures and counts.client < settings.max_failures_per_address

    async def allows(self, client: str, user: str) -> bool:
        """Whether USER may try from CLIENT now (a read: a locked-out flood writes nothing)."""
        client, login, since = address_key(client), login_key(user), self._since()
        counts = await self._database.read(lambda connection: rows.counts(connection, client, login, since))
        return self._within(counts)

    async def start(self, client: str, user: str) -> Attempt | None:
        """Count a try of USER from CLIENT, unless the limits are reached (None)."""
        client, login = address_key(client), login_key(user)
        now, settings = self._clock(), self._settings
        counts = await self._database.write(
            lambda connection: rows.start(
                connection,
                client,
                login,
                now,
                now - settings.window,
                settings.max_failures,
                settings.max_failures_per_address,
            )
        )
        if counts is None:
            return None
        return Attempt(
            client=client,
            login=login,
            last_for_login=counts.login >= settings.max_failures,
            last_for_client=counts.client >= settings.max_failures_per_address,
        )

    def failed(self, attempt: Attempt) -> None:
        """The password was wrong: the try stays counted. Says so once when it locks an address or user out."""
        if attempt.last_for_client or attempt.last_for_login:
            scope = "address" if attempt.last_for_client else "user"
            log.event("login_locked", client=attempt.client, user=attempt.login, scope=scope)

    async def succeeded(self, attempt: Attempt) -> None:
        await self._database.write(lambda connection: rows.succeeded(connection, attempt.client, attempt.login))


class FailureLimiter:
    """After MAX_FAILURES failed tries within WINDOW seconds, refuse that address for BLOCK seconds.

    For the buddy's token, compared in microseconds: a race between parallel tries costs nothing there.
    """

    def __init__(self, max_failures: int = 5, window: float = 300.0, block: float = 900.0) -> None:
        self._max = max_failures
        self._window = window
        self._block = block
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._blocked_until: dict[str, float] = {}

    def blocked(self, client: str) -> bool:
        until = self._blocked_until.get(client)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._blocked_until[client]
            return False
        return True

    def failed(self, client: str) -> None:
        now = time.monotonic()
        recent = self._failures[client]
        recent.append(now)
        while recent and recent[0] < now - self._window:
            recent.popleft()
        if len(recent) >= self._max:
            self._blocked_until[client] = now + self._block
            del self._failures[client]
