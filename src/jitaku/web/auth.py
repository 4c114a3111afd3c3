"""Who may see the status page and the dashboard: admins (users flagged admin; the first user is one)
after logging in with their mail password, and, unless `[web] trust_loopback = false`, anyone on this
machine's loopback, where the embedded default listens. List pages stay public."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Awaitable, Callable

from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from jitaku import log
from jitaku.mail.login import Authenticator, BadPassword, TryLater
from jitaku.store import Database, accounts
from jitaku.web.bodies import read_form
from jitaku.web.templates import templates

SESSION_COOKIE = "jitaku_session"
SESSION_DAYS = 7
WRONG = "Wrong address or password, or not an admin."  # the same for both, so it tells nobody which
Endpoint = Callable[[Request], Awaitable[Response]]


class CookieSessions:
    """Starlette's signed cookie sessions (SameSite=Strict, HttpOnly), with `Secure` on the cookie of a
    request that came over HTTPS (port 443), so the browser never sends it over plain HTTP."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        """SECRET: web/secret.py's key, read once for every cookie the web signs."""
        self._plain, self._secure = (
            SessionMiddleware(
                app,
                secret_key=secret,
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_DAYS * 86400,
                same_site="strict",
                https_only=secure,
            )
            for secure in (False, True)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self._secure if scope.get("scheme") == "https" else self._plain
        await chosen(scope, receive, send)


LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]"}
# What a proxy adds (RFC 7239 Forwarded, the X-Forwarded-* family, nginx's X-Real-IP, RFC 9110 Via)
FORWARDING = ("forwarded", "x-real-ip", "via")


def _forwarded(request: Request) -> bool:
    return any(name in FORWARDING or name.startswith("x-forwarded-") for name in request.headers.keys())


def _on_this_machine(request: Request) -> bool:
    """A browser on this machine, asking for a local name: a proxy (which adds forwarding headers) or a
    page that rebinds a DNS name to 127.0.0.1 (whose Host is that name) does not count."""
    try:
        loopback = request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False
    return loopback and _host_name(request.headers.get("host", "")).lower() in LOCAL_HOSTS and not _forwarded(request)


def _host_name(host: str) -> str:
    """The Host header's name without its port (RFC 9110 §7.2): "[::1]:8025" and "[::1]" are both "[::1]"."""
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() else host


def _local_path(target: str) -> str:
    """Where to go after logging in: a path on this site, never another site (`//evil`)."""
    return target if target.startswith("/") and not target.startswith("//") else "/admin/health"


class Gate:
    def __init__(self, database: Database, trust_loopback: bool, authenticator: Authenticator) -> None:
        self._database = database
        self._trust_loopback = trust_loopback
        self._authenticator = authenticator

    async def allowed(self, request: Request) -> bool:
        if self._trust_loopback and _on_this_machine(request):
            return True
        return await self._admin(request) is not None

    async def signed_in(self, request: Request) -> bool:
        """Whether REQUEST carries an admin's session: only then is there anything to log out of (a browser
        let in for being on this machine has none)."""
        return await self._admin(request) is not None

    async def _admin(self, request: Request) -> accounts.User | None:
        """The admin whose session this request carries, while it lasts: the cookie is signed but stateless,
        so a copy taken before log out, a new password or a revoked right is refused by the user's session
        generation in the database, which each of those moves on."""
        session = request.session
        address = session.get("admin")
        if not address or time.time() - float(session.get("since", 0)) > SESSION_DAYS * 86400:
            return None
        user = await self._database.query(lambda statements: accounts.find_user(statements, address), snapshot=False)
        if (
            user is None
            or not user.admin
            or (user.id, user.session_generation) != (session.get("user"), session.get("generation"))
        ):
            session.clear()
            return None
        return user

    def protect(self, endpoint: Endpoint, api: bool = False) -> Endpoint:
        async def guarded(request: Request) -> Response:
            if await self.allowed(request):
                return await endpoint(request)
            if api:
                return JSONResponse({"error": "log in as an admin first"}, status_code=401)
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

        return guarded

    def routes(self) -> list[Route]:
        return [
            Route("/login", self._form, methods=["GET"]),
            Route("/login", self._login, methods=["POST"]),
            Route("/logout", self._logout, methods=["POST"]),
        ]

    async def _form(self, request: Request) -> Response:
        return self._page(request, _local_path(request.query_params.get("next", "/admin/health")), "")

    def _page(self, request: Request, target: str, error: str, status: int = 200) -> Response:
        context = {"next": target, "error": error}
        return templates().TemplateResponse(request, "login.html", context, status_code=status)

    async def _login(self, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        form = await read_form(request)
        address, password = str(form.get("address", "")).strip().lower(), str(form.get("password", ""))
        target = _local_path(str(form.get("next", "/admin/health")))
        try:
            await self._authenticator.check(client, address, password, "web")
        except TryLater as refused:
            return self._page(request, target, f"{str(refused).capitalize()}.", 429)
        except BadPassword:
            return self._page(request, target, WRONG, 401)
        user = await self._database.query(lambda statements: accounts.find_user(statements, address), snapshot=False)
        if user is None or not user.admin:
            log.event("web_login_refused", client=client, user=address, reason="not an admin")
            return self._page(request, target, WRONG, 401)
        request.session.update(
            {"admin": user.address, "user": user.id, "generation": user.session_generation, "since": time.time()}
        )
        log.event("web_login", client=client, user=user.address)
        return RedirectResponse(target, status_code=303)

    async def _logout(self, request: Request) -> Response:
        """Ends every session of the admin, not just this browser's: a copy of the cookie is worth nothing."""
        user = await self._admin(request)
        if user is not None:
            await self._database.transact(lambda tx: accounts.end_sessions(tx, user.address))
            log.event("web_logout", user=user.address)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)
