"""Plain HTTP on port 80 sent to HTTPS, and HSTS on HTTPS, once a real certificate is served (issue 25); before
that, a browser sent to HTTPS (or told to come back only by HTTPS) would meet the self-signed certificate and be
locked out. Each wraps the app of one group of web listeners (services._web): port 80's, port 443's."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import quote, urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitaku.config import Settings
from jitaku.tls import RealCertificate
from jitaku.web.headers import SECURITY_HEADERS

CHALLENGE = "/.well-known/acme-challenge/"  # HTTP-01 renews over plain HTTP on port 80: never redirected
# The pair's boxes ask each other here (ha/peer.py: signed, follows no redirect, often by a LAN address the
# certificate does not carry): sent to HTTPS, a failover would find its peer unreachable when it matters most.
PEER = "/api/ha/"
HSTS = "max-age=31536000"  # a year; no includeSubDomains: other names in the domain are not ours to promise
KEEP_METHOD = 308  # RFC 7538: a POST stays a POST; 301 lets a browser turn it into a GET without its body


class ToHttps:
    """ASGI wrapper for port 80: every request answered with a redirect to the same path and query on HTTPS while
    REAL says a real certificate is served, ACME's challenges and the pair's requests excepted. The host is the
    request's own only when the certificate served carries it, else the web URL's host if it does, else the
    certificate's first name: a forged Host header never makes us send a browser elsewhere, and a name the CA left
    out (mta-sts, say) is never sent to an HTTPS whose certificate would not carry it."""

    def __init__(self, app: ASGIApp, real: RealCertificate, settings: Settings) -> None:
        self._app = app
        self._real = real
        self._web_host = (urlsplit(settings.web_url).hostname or settings.mail_hostname).lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        names = () if scope["type"] != "http" or scope["path"].startswith((CHALLENGE, PEER)) else self._real.names()
        ours = [name for name in names if not name.startswith("*.")]  # a wildcard is no host to send anyone to
        if not ours:
            await self._app(scope, receive, send)
            return
        path = (scope.get("raw_path") or quote(scope["path"]).encode()).decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        location = f"https://{self._host(scope, ours)}{path}" + (f"?{query}" if query else "")
        status = 301 if scope["method"] in ("GET", "HEAD") else KEEP_METHOD
        await Response(status_code=status, headers={**SECURITY_HEADERS, "location": location})(scope, receive, send)

    def _host(self, scope: Scope, ours: list[str]) -> str:
        """The Host header's name without its port (an IPv6 literal never is one of ours), when it is ours."""
        asked = Headers(scope=scope).get("host", "").lower()
        name = asked.rsplit(":", 1)[0] if asked.count(":") == 1 else asked
        if name in ours:
            return name
        return self._web_host if self._web_host in ours else ours[0]


class Hsts:
    """ASGI wrapper for port 443: every response carries Strict-Transport-Security while REAL says a real
    certificate is served, never before (a browser that kept it would refuse the self-signed one with no way past
    the warning). Plain HTTP never carries it (RFC 6797 §7.2): only port 443's group is wrapped."""

    def __init__(self, app: ASGIApp, real: Callable[[], bool]) -> None:
        self._app = app
        self._real = real

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._real():
            await self._app(scope, receive, send)
            return

        async def with_hsts(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["strict-transport-security"] = HSTS  # set once, whoever set it before
            await send(message)

        await self._app(scope, receive, with_hsts)
