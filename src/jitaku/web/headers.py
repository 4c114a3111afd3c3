"""What every response tells the browser about itself: no script, no framing, no type sniffing, no
Referer carrying a list token to another site (issue 15, point 12)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Our pages have no script at all; they do have <style> blocks and style attributes (the dashboard's
# legend colours), hence 'unsafe-inline' for styles alone. The graphs are inline SVG, which needs nothing. The
# blog's pages take their stylesheet (/site.css) and their photos, audio and video (/media/) from the site itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self'; media-src 'self';"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-frame-options": "DENY",  # frame-ancestors for browsers that predate CSP 2
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",  # unsubscribe and confirmation URLs carry a member's token
}


class SecurityHeaders:
    """ASGI middleware: adds SECURITY_HEADERS to every response, errors included; a route may set a stricter
    Content-Security-Policy of its own (web/archive/pages.py's downloads: `sandbox`)."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    # a response with a policy of its own keeps it: an archived attachment's "sandbox"
                    if name != "content-security-policy" or name not in headers:
                        headers[name] = value
            await send(message)

        await self._app(scope, receive, with_headers)
