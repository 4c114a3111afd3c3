"""Who may see the status page and the dashboard: admins (users flagged admin; the first user is one)
after logging in with their mail password, and, unless `[web] trust_loopback = false`, anyone on this
machine's loopback, where the embedded default listens. List pages stay public."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from jitaku import log
from jitaku.mail.login import Authenticator, BadPassword, TryLater
from jitaku.store import Database, accounts

SECRET_FILE = "web.secret"
SESSION_DAYS = 7
WRONG = "Wrong address or password, or not an admin."  # the same for both, so it tells nobody which
Endpoint = Callable[[Request], Awaitable[Response]]
_templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def session_secret(data_dir: Path) -> str:
    """The key that signs session cookies: made once (written whole, then renamed), kept 0600 in the data dir."""
    path = data_dir / SECRET_FILE
    if not path.exists():
        partial = path.with_name(f"{SECRET_FILE}.{os.getpid()}")
        with os.fdopen(os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as made:
            made.write(secrets.token_hex(32))
            made.flush()
            os.fsync(made.fileno())
        os.replace(partial, path)
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} holds no usable key; delete it and jitaku makes a new one")
    return secret


LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]"}
FORWARDING = ("x-forwarded-for", "forwarded", "x-real-ip")


def _on_this_machine(request: Request) -> bool:
    """A browser on this machine, asking for a local name: a proxy (which adds forwarding headers) or a
    page that rebinds a DNS name to 127.0.0.1 (whose Host is that name) does not count."""
    try:
        loopback = request.client is not None and ipaddress.ip_address(request.client.host).is_loopback
    except ValueError:
        return False
    host = request.headers.get("host", "").rsplit(":", 1)[0].lower()
    return loopback and host in LOCAL_HOSTS and not any(name in request.headers for name in FORWARDING)


def _local_path(target: str) -> str:
    """Where to go after logging in: a path on this site, never another site (`//evil`)."""
    return target if target.startswith("/") and not target.startswith("//") else "/health"


def _key(password_hash: str | None) -> str:
    """Binds a session to the password it was opened with, without putting the hash in the cookie."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


class Gate:
    def __init__(self, database: Database, trust_loopback: bool, authenticator: Authenticator) -> None:
        self._database = database
        self._trust_loopback = trust_loopback
        self._authenticator = authenticator

    async def allowed(self, request: Request) -> bool:
        if self._trust_loopback and _on_this_machine(request):
            return True
        session = request.session
        address, login = session.get("admin"), session.get("key")
        if not address or time.time() - float(session.get("since", 0)) > SESSION_DAYS * 86400:
            return False
        # still an admin, with the same password: a revoked admin or a changed password ends every session
        user = await self._database.read(lambda connection: accounts.find_user(connection, address))
        if user is None or not user.admin or login != _key(user.password_hash):
            session.clear()
            return False
        return True

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
        return self._page(request, _local_path(request.query_params.get("next", "/health")), "")

    def _page(self, request: Request, target: str, error: str, status: int = 200) -> Response:
        context = {"next": target, "error": error}
        return _templates.TemplateResponse(request, "login.html", context, status_code=status)

    async def _login(self, request: Request) -> Response:
        client = request.client.host if request.client else "?"
        form = await request.form()
        address, password = str(form.get("address", "")).strip().lower(), str(form.get("password", ""))
        target = _local_path(str(form.get("next", "/health")))
        try:
            await self._authenticator.check(client, address, password, "web")
        except TryLater as refused:
            return self._page(request, target, f"{str(refused).capitalize()}.", 429)
        except BadPassword:
            return self._page(request, target, WRONG, 401)
        user = await self._database.read(lambda connection: accounts.find_user(connection, address))
        if user is None or not user.admin:
            log.event("web_login_refused", client=client, user=address, reason="not an admin")
            return self._page(request, target, WRONG, 401)
        request.session.update({"admin": user.address, "key": _key(user.password_hash), "since": time.time()})
        log.event("web_login", client=client, user=user.address)
        return RedirectResponse(target, status_code=303)

    async def _logout(self, request: Request) -> Response:
        request.session.clear()
        return RedirectResponse("/login", status_code=303)
