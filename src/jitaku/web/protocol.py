"""The web server's HTTP/1.1 connections: uvicorn's httptools protocol (llhttp, C: twice the pages per second
of uvicorn's pure-Python h11 on a bare page, issue 21), with the connection limits of `[web]` and the timeouts
uvicorn lacks.

uvicorn closes a connection only when it has been idle after a response (keep-alive); one that never
completes a request head, or stops halfway through a body, stays open for ever (slowloris; issue 15).
Here a request's head must arrive within `header_timeout` seconds, counted from the connection's start or
the end of the previous response, and its body must not stall for `idle_timeout` (nginx's
client_header_timeout and client_body_timeout). While the application works on a request, or has paused
reading, the client owes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from jitaku.connections import ConnectionLimit

_BUSY = b"Too many connections; try again later.\n"
BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Content-Length: %d\r\nRetry-After: 60\r\nConnection: close\r\n\r\n%s" % (len(_BUSY), _BUSY)
)


def protocol(limit: ConnectionLimit, header_timeout: float, idle_timeout: float) -> type[HttpToolsProtocol]:
    """The protocol class for uvicorn.Config(http=...)."""

    class Guarded(HttpToolsProtocol):
        """The parser has no state to ask, so its callbacks keep what is awaited of the client: a head (from
        `_head_began`), the rest of a body (`_in_body`, since `_last_data`), or nothing while the latest
        request's response is not complete."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._counted: str | None = None  # the client address this connection is counted under
            self._timer: asyncio.TimerHandle | None = None
            self._head_began = 0.0
            self._in_body = False
            self._last_data = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            ip = self.client[0] if self.client else "?"
            if limit.admit(ip) is not None:
                transport.write(BUSY)
                transport.close()
                return
            self._counted = ip
            self._head_began = self._last_data = self.loop.time()
            self._watch()

        def data_received(self, data: bytes) -> None:
            if self._counted is None:
                return  # refused and closing
            self._last_data = self.loop.time()
            super().data_received(data)
            self._watch()

        def on_headers_complete(self) -> None:
            self._in_body = True
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_body = False
            super().on_message_complete()

        def on_response_complete(self) -> None:
            self._head_began = self.loop.time()
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
            if self._in_body:
                return self._last_data + idle_timeout
            if self.cycle is not None and not self.cycle.response_complete:
                return None  # the request is in: the application's turn
            return self._head_began + header_timeout  # waiting for (the rest of) a request's head

        def _expire(self) -> None:
            self._timer = None
            deadline = self._deadline()
            if deadline is None:
                return
            if self._in_body and self.flow.read_paused:
                self._last_data = self.loop.time()  # the application is not reading: not the client's delay
            elif self.loop.time() >= deadline:
                self.transport.close()
                return
            self._watch()

    return Guarded
