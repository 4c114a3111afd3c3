"""Request bodies are bounded before anything reads them (issue 15: strangers' multipart uploads to /login
and the list pages were spooled to the temp dir without limit, 2 GB held): a body announced or grown past
`[web] max_body_size` is answered 413, and our forms take a few short fields and no file. The few routes that
take more (the admin's post editor, its image upload) are given a larger bound of their own, by path."""

from __future__ import annotations

import re
from collections.abc import Mapping

from starlette.datastructures import FormData, Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Every form we serve (login, list subscribe and confirm, one-click unsubscribe) is a few text fields; a route given
# a larger body (BodyLimit's LARGER: a post's Markdown) may have one field that large, and the admin's image upload
# reads its file with limits of its own.
FORM_FIELDS = 16
FORM_FIELD_BYTES = 16384
FORM_KEY = "jitaku.form"  # in the scope: the form csrf.Protect read and checked, so the body is parsed once
LARGER_KEY = "jitaku.larger_body"  # in the scope: the bytes the body of a route given a larger bound may have
DROP_AT_MOST = 1 << 20  # bytes of a refused body read and dropped so that the client hears the 413
_LENGTH = re.compile(r"[0-9]{1,18}")


class _TooLarge(Exception):
    """The body has grown past the cap while the app was reading it."""


class BodyLimit:
    """ASGI middleware for every route: refuses a Content-Length over MAX_BYTES before the body is read, and
    counts the bytes of any body (chunked ones have no length) as the app receives them. A route that needs
    more bounds its own body and is named in OWN, by path prefix: the comment form, whose refusal is a page
    that keeps what the reader wrote (web/comments.py). A route that needs a larger bound, the same way, is
    named in LARGER, by path prefix, with its bound in bytes."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, own: tuple[str, ...] = (), larger: Mapping[str, int] | None = None
    ) -> None:
        self._app = app
        self._max_bytes = max_bytes
        self._own = own
        self._larger = sorted((larger or {}).items(), key=lambda item: -len(item[0]))  # the longest prefix first

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] != "http" or path.startswith(self._own):
            await self._app(scope, receive, send)
            return
        max_bytes = next((bound for prefix, bound in self._larger if path.startswith(prefix)), None)
        if max_bytes is not None:
            scope[LARGER_KEY] = max_bytes
        else:
            max_bytes = self._max_bytes
        announced = Headers(scope=scope).get("content-length", "0")
        if not _LENGTH.fullmatch(announced):  # not isdigit(), which takes "²"
            await self._refuse(scope, receive, send, drop=0, max_bytes=max_bytes)
            return
        if int(announced) > max_bytes:
            await self._refuse(scope, receive, send, drop=int(announced), max_bytes=max_bytes)
            return
        received = 0
        more = True
        responding = False

        async def counted() -> Message:
            nonlocal received, more
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                more = bool(message.get("more_body", False))
                if received > max_bytes:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal responding
            responding = responding or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._app(scope, counted, watched)
        except _TooLarge:
            if responding:
                raise
            await self._refuse(scope, receive, send, drop=DROP_AT_MOST if more else 0, max_bytes=max_bytes)

    @staticmethod
    async def _refuse(scope: Scope, receive: Receive, send: Send, drop: int, max_bytes: int) -> None:
        """413, and the connection closed after it. A body of at most DROP_AT_MOST bytes still on its way is
        read and dropped first: closing a socket with unread bytes sends a reset, which can reach the client
        before our answer (a browser then shows "connection reset", not why). A larger one is never read."""
        if drop <= DROP_AT_MOST:
            while drop > 0:
                message = await receive()
                if message["type"] != "http.request":
                    break
                drop -= len(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        text = f"request body over {max_bytes} bytes\n"
        await PlainTextResponse(text, status_code=413, headers={"connection": "close"})(scope, receive, send)


async def read_form(request: Request) -> FormData:
    """The fields of one of our forms; a file, too many fields or a long one is answered 400. A field of a route
    given a larger bound may be as large as that bound."""
    checked = request.scope.get(FORM_KEY)
    if isinstance(checked, FormData):
        return checked
    larger = request.scope.get(LARGER_KEY)
    field_bytes = larger if isinstance(larger, int) else FORM_FIELD_BYTES
    return await request.form(max_files=0, max_fields=FORM_FIELDS, max_part_size=field_bytes)
