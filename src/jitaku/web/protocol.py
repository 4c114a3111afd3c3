"""The web server's HTTP/1.1 connections: uvicorn's h11 protocol, with the connection limits of `[web]` and
the timeouts it lacks.

uvicorn closes a connection only when it has been idle after a response (keep-alive); one that never
completes a request head, or stops halfway through a body, stays open for ever (slowloris; issue 15).
Here a request's head must arrive within `header_timeout` seconds, counted from the connection's start or
the end of the previous response, and its body must not stall for `idle_timeout` (nginx's
client_header_timeout and client_body_timeout).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from jitaku.connections import ConnectionLimit

_BUSY = b"Too many connections; try again later.\n"
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nRetry-After: 60\r\nConnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY)
)


def protocol(limit: ConnectionLimit, header_timeout: float, idle_timeout: float) -> type[H11Protocol]:
    """The protocol class for uvicorn.Config(http=...)."""

    class Guarded(H11Protocol):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._counted: str | None = None  # the client address this connection is counted under
            self._timer: asyncio.TimerHandle | None = None
            self._head_began: float | None = None
            self._last_data = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ip = self.client[0] if self.client else "?"
            if limit.admit(ip) is not None:
                transport.write(BUSY)
                transport.close()
                return
            self._counted = ip
            self._last_data = self.loop.time()
            self._watch()

        def data_received(self, data: bytes) -> None:
            if self._counted is None:
                return  # refused and closing
            self._last_data = self.loop.time()
            super().data_received(data)
            self._watch()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._counted is not None:
                limit.release(self._counted)
                self._counted = None
            super().connection_lost(exc)

        def _watch(self) -> None:
            """Arm the one timer for the deadline the client must meet now, if there is one."""
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            deadline = self._deadline()
            if deadline is not None and not self.transport.is_closing():
                self._timer = self.loop.call_at(deadline, self._expire)

        def _deadline(self) -> float | None:
            state = self.conn.their_state
            if state is h11.IDLE:  # waiting for (the rest of) a request's head
                if self._head_began is None:
                    self._head_began = self.loop.time()
                return self._head_began + header_timeout
            self._head_began = None
            if state is h11.SEND_BODY:
                return self._last_data + idle_timeout
            return None  # the request is in: the application's turn

        def _expire(self) -> None:
            self._timer = None
            deadline = self._deadline()
            if deadline is None:
                return
            if self.conn.their_state is h11.SEND_BODY and self.flow.read_paused:
                self._last_data = self.loop.time()  # the application is not reading: not the client's delay
            elif self.loop.time() >= deadline:
                self.transport.close()
                return
            self._watch()

    return Guarded
