"""Outbound sessions kept open between messages to the same server, as Postfix's connection cache does.

A list post is many queue entries to the same few servers, and each new connection costs a handshake, a
greeting, EHLO and often STARTTLS. A session that finished its messages waits here, keyed by the server's
address and how we talk to it (TLS, login), for IDLE_SECONDS; the next message to that server takes it and
checks it with RSET first, so a session the server dropped meanwhile costs a new connection, never a failed
delivery. A connection carries at most MESSAGES_PER_CONNECTION transactions, as receivers limit them too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable

import aiosmtplib

from jitaku.mail.smtp.pipelined import Session

IDLE_SECONDS = 2.0  # Postfix's smtp_connection_cache_time_limit
MESSAGES_PER_CONNECTION = 100
KEPT_PER_SERVER = 20  # Postfix's default connections per destination


class Sessions:
    def __init__(self) -> None:
        self._idle: dict[Hashable, list[tuple[Session, asyncio.TimerHandle]]] = {}

    async def take(self, key: Hashable) -> Session | None:
        """An idle session to KEY's server that answered RSET; None when there is none."""
        loop = asyncio.get_running_loop()
        waiting = self._idle.get(key)
        while waiting:
            session, timer = waiting.pop()
            timer.cancel()
            if session.loop is not loop or not session.open:
                session.close()
                continue
            try:
                if (await session.reset()).code == 250:
                    return session
            except (aiosmtplib.SMTPException, OSError):
                pass
            session.close()
        return None

    def keep(self, key: Hashable, session: Session) -> None:
        """Let SESSION wait for the next message to its server, or end it when it did its share."""
        waiting = self._idle.setdefault(key, [])
        if (
            not session.open
            or not session.settled
            or session.transactions >= MESSAGES_PER_CONNECTION
            or len(waiting) >= KEPT_PER_SERVER
        ):
            session.quit()
            return
        timer = session.loop.call_later(IDLE_SECONDS, self._expire, key, session)
        waiting.append((session, timer))

    def _expire(self, key: Hashable, session: Session) -> None:
        waiting = self._idle.get(key, [])
        self._idle[key] = [(kept, timer) for kept, timer in waiting if kept is not session]
        if not self._idle[key]:
            del self._idle[key]
        session.quit()

    def close(self) -> None:
        """QUIT every idle session (the daemon stops)."""
        for waiting in self._idle.values():
            for session, timer in waiting:
                timer.cancel()
                session.quit()
        self._idle.clear()
