"""Failed-login limits: for passwords, kept in the store (one count for every protocol and process, kept
across restarts), or, on a standby, whose store is the primary's and read-only, in this process's memory (only
the web's admin logs in there); for the buddy's token, in this process's memory."""

from __future__ import annotations

import asyncio
import functools
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from jitaku import log, store
from jitaku.config import LoginSettings
from jitaku.connections import address_key
from jitaku.store import Database, Tx

MAX_LOGIN = 320  # octets of a user name kept (RFC 5321's longest address); a longer one is cut
WAIT_STEP = 0.1  # seconds between looks while tries being checked fill the limit
MAX_WAIT = 30.0  # seconds a try waits for those at most; then it is refused as if they had failed


def login_key(user: str) -> str:
    return user.strip().lower()[:MAX_LOGIN]


@dataclass(frozen=True)
class Attempt:
    """A password check under way, counted against the limits since it started."""

    id: int
    client: str
    login: str


class Limiter(Protocol):
    """What the Authenticator asks of a failed-login limiter."""

    async def allows(self, client: str, user: str) -> bool: ...

    async def start(self, client: str, user: str) -> Attempt | None: ...

    async def failed(self, attempt: Attempt) -> None: ...

    async def succeeded(self, attempt: Attempt) -> None: ...


class LoginLimiter:
    """A user may fail `max_failures` times from one address, and an address `max_failures_per_address`
    times across users, within `window` seconds. A try counts from the moment it starts, not when its
    check has failed: 50 parallel tries were all checked when the limit looked only at finished ones. A try
    that only tries still being checked keep out waits for their outcome: a mail client opening six
    connections at once with the right password got the sixth refused, and imaptest's ten clients half.

    Refusing costs one read; only a try that will be checked is written (and its outcome), so a flood of
    tries costs the writer at most what the limits and the password threads let through.
    """

    def __init__(
        self,
        database: Database,
        settings: LoginSettings,
        clock: Callable[[], float] = time.time,
        max_wait: float = MAX_WAIT,
    ) -> None:
        self._database = database
        self._settings = settings
        self._clock = clock
        self._max_wait = max_wait

    def _within(self, counts: store.logins.Counts) -> bool:
        settings = self._settings
        return counts.login < settings.max_failures and counts.client < settings.max_failures_per_address

    async def allows(self, client: str, user: str) -> bool:
        """Whether USER may try from CLIENT now (a read: a locked-out flood writes nothing)."""
        client, login, now = address_key(client), login_key(user), self._clock()
        since = now - self._settings.window
        counts = await self._database.query(
            lambda statements: store.logins.counts(statements, client, login, since, now), snapshot=False
        )
        return self._within(counts)

    async def start(self, client: str, user: str) -> Attempt | None:
        """Count a try of USER from CLIENT, unless the limits are reached (None); while only tries being
        checked fill them, wait for those."""
        client, login = address_key(client), login_key(user)
        deadline = time.monotonic() + self._max_wait
        while True:
            try:
                started = await self._database.transact(functools.partial(self._start, client, login, self._clock()))
            except store.logins.Wait:
                if time.monotonic() >= deadline:
                    return None
                await asyncio.sleep(WAIT_STEP)
                continue
            return None if started is None else Attempt(started, client, login)

    def _start(self, client: str, login: str, now: float, tx: Tx) -> int | None:
        settings = self._settings
        since = now - settings.window
        return store.logins.start(
            tx, client, login, now, since, settings.max_failures, settings.max_failures_per_address
        )

    async def failed(self, attempt: Attempt) -> None:
        """The password was wrong: the try counts as a failure. Says so once when it locks an address or user
        out."""
        now = self._clock()
        since = now - self._settings.window
        counts = await self._database.transact(
            lambda tx: store.logins.failed(tx, attempt.id, attempt.client, attempt.login, since, now)
        )
        settings = self._settings
        if counts.client == settings.max_failures_per_address or counts.login == settings.max_failures:
            scope = "address" if counts.client == settings.max_failures_per_address else "user"
            log.event("login_locked", client=attempt.client, user=attempt.login, scope=scope)

    async def succeeded(self, attempt: Attempt) -> None:
        now = self._clock()
        await self._database.transact(
            lambda tx: store.logins.succeeded(tx, attempt.id, attempt.client, attempt.login, now)
        )


class MemoryLoginLimiter:
    """LoginLimiter's limits, in memory: for a standby, whose store cannot be written. A try counts from its
    start, as there; a success takes its try back."""

    def __init__(self, settings: LoginSettings, clock: Callable[[], float] = time.time) -> None:
        self._settings = settings
        self._clock = clock
        self._tries: dict[int, tuple[float, str, str]] = {}  # id: when, client, login
        self._next = 0

    def _counts(self, client: str, login: str) -> tuple[int, int]:
        since = self._clock() - self._settings.window
        self._tries = {key: found for key, found in self._tries.items() if found[0] >= since}
        recent = self._tries.values()
        return sum(1 for _, c, u in recent if c == client and u == login), sum(1 for _, c, _u in recent if c == client)

    def _within(self, client: str, login: str) -> bool:
        per_login, per_client = self._counts(client, login)
        return per_login < self._settings.max_failures and per_client < self._settings.max_failures_per_address

    async def allows(self, client: str, user: str) -> bool:
        return self._within(address_key(client), login_key(user))

    async def start(self, client: str, user: str) -> Attempt | None:
        client, login = address_key(client), login_key(user)
        if not self._within(client, login):
            return None
        self._next += 1
        self._tries[self._next] = (self._clock(), client, login)
        return Attempt(self._next, client, login)

    async def failed(self, attempt: Attempt) -> None:
        if not self._within(attempt.client, attempt.login):
            log.event("login_locked", client=attempt.client, user=attempt.login, scope="standby")

    async def succeeded(self, attempt: Attempt) -> None:
        self._tries.pop(attempt.id, None)


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
        client = address_key(client)
        until = self._blocked_until.get(client)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._blocked_until[client]
            return False
        return True

    def failed(self, client: str) -> None:
        client = address_key(client)
        now = time.monotonic()
        recent = self._failures[client]
        recent.append(now)
        while recent and recent[0] < now - self._window:
            recent.popleft()
        if len(recent) >= self._max:
            self._blocked_until[client] = now + self._block
            del self._failures[client]
