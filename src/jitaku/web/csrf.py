"""Cross-site request forgery: a form POSTed from another site is refused (issue 21). Double submit: a random
value in the cookie `jitaku_csrf` (SameSite=Strict, HttpOnly, Secure over HTTPS), and in each form a hidden
field `csrf` holding its HMAC under the key that signs the session cookies, so a value planted in the cookie
by someone without the key makes no field that passes.

The check is one ASGI middleware in front of every route rather than a call in each handler, so that a POST
route added later is guarded unless it is exempted here. It checks each request whose route declared its
method (`methods=["POST"]`); any other POST gets the router's answer (the site's catch-all, which only reads,
answers 405 or 404). It reads the form (after BodyLimit has bounded the body), checks the field, and hands
the parsed form on in the scope, where `bodies.read_form` takes it, so the body is read and parsed once.
A GET costs a small object in the scope and a look at the response's start.

Exempt: RFC 8058 one-click unsubscribe (mail providers POST it without a page; the member's token in its
URL is its proof), `/api/buddy/*` (its shared token), `/api/ha/*` (signed with the pair's secret), `/comments/*`
(the comment form's own signed token), and the admin's post editor (`/admin/posts/new`, `/admin/posts/ID`),
whose form carries an image upload: megabytes a stranger could send, which its route reads only once the admin is
let in, and then checks the same field with `refusal` (web/admin/posts.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request, cookie_parser
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jitaku.web.bodies import FORM_KEY, read_form

COOKIE = "jitaku_csrf"
FIELD = "csrf"
SCOPE_KEY = "jitaku.csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
EXEMPT = re.compile(r"/lists/[^/]+/unsubscribe/[^/]+|/api/buddy/.*|/api/ha/.*|/comments/.*|/admin/posts/(?:new|[0-9]+)")
_VALUE = re.compile(r"[A-Za-z0-9_-]{43}")  # what secrets.token_urlsafe(32) makes

REFUSED = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Form refused</title>
<style>body { font: 16px/1.5 system-ui, sans-serif; margin: 3rem auto; max-width: 30rem; padding: 0 1rem; }</style>
</head>
<body>
<h1>Form refused</h1>
<p>This form did not come from a page of this site, or the page is too old (cookies off, or cleared since).
Nothing was changed. Go back, reload the page, and send the form again.</p>
<p lang="ja">このフォームは受け付けられませんでした。何も変更されていません。
ページを再読み込みして、もう一度送信してください。</p>
</body>
</html>
"""


class Token:
    """One request's CSRF value: the cookie's, or a new one that the response sets."""

    __slots__ = ("_key", "_scope", "value", "new")

    def __init__(self, key: bytes, scope: Scope) -> None:
        self._key = key
        self._scope = scope
        self.value: str | None = None
        self.new = False

    def cookie(self) -> str | None:
        """The value the browser sent, if it is one of ours in form."""
        header = Headers(scope=self._scope).get("cookie")
        sent = cookie_parser(header).get(COOKIE) if header else None
        return sent if sent is not None and _VALUE.fullmatch(sent) else None

    def field(self) -> str:
        """What a form of this page carries in its hidden field; makes the cookie's value if there is none."""
        if self.value is None:
            self.value = self.cookie()
        if self.value is None:
            self.value, self.new = secrets.token_urlsafe(32), True
        return self.signed(self.value)

    def signed(self, value: str) -> str:
        return hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()

    def matches(self, sent: object) -> bool:
        """Whether SENT is the field this request's cookie makes. Ours is ASCII, and compare_digest raises on a
        str that is not (a forged field of "é" would be a 500)."""
        value = self.cookie()
        return (
            value is not None
            and isinstance(sent, str)
            and sent.isascii()
            and hmac.compare_digest(self.signed(value), sent)
        )


def field(request: Request) -> str:
    """The value of the hidden `csrf` field of a form on the page REQUEST asked for (templates.py's
    `csrf_field` renders it)."""
    token = request.scope.get(SCOPE_KEY)
    if not isinstance(token, Token):
        raise RuntimeError("csrf.field: the request did not pass through csrf.Protect")
    return token.field()


def refusal(request: Request, sent: object) -> Response | None:
    """For a route exempt above that reads its own form: the 403 page unless SENT is the field this request's
    cookie makes; None when it is."""
    token = request.scope.get(SCOPE_KEY)
    if isinstance(token, Token) and token.matches(sent):
        return None
    return HTMLResponse(REFUSED, status_code=403)


class Protect:
    """ASGI middleware: refuses with 403 an unsafe request (POST) whose form's `csrf` field does not match its
    cookie, before the route sees it; sets the cookie on a response whose page made a new value."""

    def __init__(self, app: ASGIApp, secret: str) -> None:
        self._app = app
        self._key = secret.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        token = scope[SCOPE_KEY] = Token(self._key, scope)
        if scope["method"] not in SAFE_METHODS and not EXEMPT.fullmatch(scope["path"]) and _declared(scope):
            chunks: list[bytes] = []

            async def recorded() -> Message:
                message = await receive()
                chunks.append(message.get("body", b""))
                return message

            try:  # parsed as it comes, so that a file part is refused before the rest of the body arrives
                form = await read_form(Request(scope, recorded))
            except ClientDisconnect:
                return  # nobody to answer
            except HTTPException as refused:  # a malformed form, or more fields than ours have
                await PlainTextResponse(refused.detail, status_code=refused.status_code)(scope, receive, send)
                return
            if not token.matches(form.get(FIELD)):
                await HTMLResponse(REFUSED, status_code=403)(scope, receive, send)
                return
            scope[FORM_KEY] = form
            receive = _replay(b"".join(chunks), receive)

        async def with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and token.new:
                secure = "; Secure" if scope.get("scheme") == "https" else ""
                cookie = f"{COOKIE}={token.value}; Path=/; HttpOnly; SameSite=Strict{secure}"
                MutableHeaders(scope=message).append("set-cookie", cookie)
            await send(message)

        await self._app(scope, receive, with_cookie)


def _declared(scope: Scope) -> bool:
    """Whether the route that takes this request declared its method: a POST to a path no route takes that way
    gets the router's own answer (the site's pages, which only read, answer 405 or 404), not a 403."""
    for route in scope["app"].router.routes:
        if route.matches(scope)[0] is Match.FULL:
            return isinstance(route, Route) and route.methods is not None and scope["method"] in route.methods
    return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """RECEIVE, whose body was read already: that body once more, then what the client sends next (its
    disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed
