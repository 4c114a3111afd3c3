"""Readers' comments: the form's POST at /comments/{post_id}, its own page at the same URL (a reply's form, and
the form again with what was wrong), and the owner's signed approve and spam links.

A comment is checked in the order that costs least (size, encoding, honeypot, token, fields, then a read of
the replayed nonce and the address's rate), so that a resent token or a busy address is refused before its
Markdown is rendered (in a thread: a hostile body takes a quarter of a second) and judged by the content
filter. It is written in one transaction that checks again what the table says (nonce, rate, the reply's
parent, whether the author was approved before). "Saved" is said only after that commits; the owner's mail goes
once the reader has the answer. Every refusal is a readable page that stores nothing."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route
from starlette.types import Scope

from jitaku import addresses, log
from jitaku.blog.paths import path_url
from jitaku.config import Settings
from jitaku.store import Database, Tx, comments
from jitaku.store.comments import PENDING, PUBLISHED, SPAM, Comment, NewComment
from jitaku.store.errors import StoreError
from jitaku.store.statements import Statements
from jitaku.web.bodies import DROP_AT_MOST
from jitaku.web.comment_filter import CommentFilter, NoFilter, Verdict
from jitaku.web.comment_mail import CommentMail
from jitaku.web.comment_tokens import COOKIE, CommentTokens, TokenRefused
from jitaku.web.comment_words import ENGLISH, words
from jitaku.web.site_info import SiteInfo
from jitaku.web.templates import templates

RATE_LIMIT = 5  # comments from one client address ...
RATE_WINDOW = 600.0  # ... in this many seconds
FORM_FIELDS = 16
# A form's body is the comment percent-encoded (up to 3 bytes each, as Japanese text is) and the short fields
OTHER_FIELDS_BYTES = 8192
MAX_NAME = 200
MAX_URL = 2048
FIELDS = ("name", "email", "url", "body", "parent")
ACTIONS = {"approve": PUBLISHED, "spam": SPAM}
# ASCII digits, few enough for SQLite's integer: str.isdigit() takes "²", which int() refuses
_NUMBER = re.compile(r"[0-9]{1,18}")


class Refused(Exception):
    """A comment not stored: STATUS, and KEY in web/comment_words.py (filled in with VALUES) for the sentence
    the reader sees above the form in the blog's language; the log gets it in English."""

    def __init__(self, status: int, key: str, **values: Any) -> None:
        self.status = status
        self.key = key
        self.values = values
        self.message = self.said(ENGLISH)
        super().__init__(self.message)

    def said(self, words: dict[str, str]) -> str:
        return words[self.key].format(**self.values)


@dataclass(frozen=True)
class Saved:
    id: int
    status: str


def status_for(moderation: str, verdict: Verdict, links: int, approved_before: bool, why: str = "") -> tuple[str, str]:
    """What a new comment becomes, and why in a sentence the owner reads in the moderation queue (none when it
    is published, unless the filter said something, such as that it could not check it): the filter's spam is
    spam; held by the filter, or with more than MAX_LINKS links, it waits whatever the moderation; else
    `[blog] moderation` decides. WHY is the filter's own reason."""
    from jitaku.blog.comment_text import MAX_LINKS

    said = f" ({why})" if why else ""
    if verdict == "spam":
        return SPAM, f"The spam filter judged it spam{said}."
    if verdict == "hold":
        return PENDING, f"The spam filter asked for it to be held{said}."
    filtered = f"Spam filter: {why}." if why else ""
    if links > MAX_LINKS:
        status, reason = PENDING, f"It has {links} links (more than {MAX_LINKS} are always held)."
    elif moderation == "none" or (moderation == "first" and approved_before):
        status, reason = PUBLISHED, ""
    elif moderation == "first":
        status, reason = PENDING, 'First comment from this author (moderation "first").'
    else:
        status, reason = PENDING, 'Every comment waits for approval (moderation "all").'
    return status, " ".join(part for part in (reason, filtered) if part)


def _has_control(text: str, allowed: str = "") -> bool:
    return any((ord(c) < 32 or ord(c) == 127) and c not in allowed for c in text)


def checked_fields(fields: dict[str, str], max_bytes: int) -> dict[str, str]:
    """The form's fields, trimmed, or Refused naming the first one that will not do."""
    name = fields.get("name", "").strip()
    email = fields.get("email", "").strip()
    url = fields.get("url", "").strip()
    body = fields.get("body", "").replace("\r\n", "\n").strip()
    parent = fields.get("parent", "").strip()
    if not name:
        raise Refused(400, "no_name")
    if len(name) > MAX_NAME or _has_control(name):
        raise Refused(400, "long_name", limit=MAX_NAME)
    if addresses.parse(email) is None:
        raise Refused(400, "bad_email")
    if url:
        try:
            parts = urlsplit(url)
            host = parts.hostname
        except ValueError:  # "http://[", or a host that NFKC makes hold "/" or "@"
            raise Refused(400, "bad_url") from None
        if parts.scheme.lower() not in ("http", "https") or not host or len(url) > MAX_URL:
            raise Refused(400, "bad_url")
        if _has_control(url) or " " in url:
            raise Refused(400, "url_spaces")
    if not body:
        raise Refused(400, "empty")
    if len(body.encode()) > max_bytes:
        raise Refused(413, "too_large", limit=max_bytes)
    if _has_control(body, "\n\t"):
        raise Refused(400, "control")
    if parent and not _NUMBER.fullmatch(parent):
        raise Refused(400, "no_parent")
    return {"name": name, "email": addresses.normalize(email), "url": url, "body": body, "parent": parent}


class Comments:
    """The comment routes, and the cookie that each post page's response sets (form_cookie)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        tokens: CommentTokens,
        mail: CommentMail | None,
        content_filter: CommentFilter | None = None,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        """CHANGED is called once a write that changes what the pages show is committed: the site drops its
        kept pages at once rather than at its next look at the blog's version."""
        self._settings = settings
        self._changed = changed
        self._database = database
        self._tokens = tokens
        self._mail = mail
        self._filter = content_filter or NoFilter()
        self._max_bytes = settings.blog.max_comment_bytes
        self._words = words(settings.blog.language)
        self._site = SiteInfo.of(settings)
        self.max_request = 3 * self._max_bytes + OTHER_FIELDS_BYTES

    def form_cookie(self, now: float, secure: bool = False) -> str:
        """The Set-Cookie value each post page's response carries: a new form token for this reader."""
        return self._tokens.cookie(now, secure)

    def cookie_headers(self, scope: Scope) -> list[tuple[bytes, bytes]]:
        """The Set-Cookie header of one response of a post's page (kept, and shared by every reader)."""
        return [(b"set-cookie", self.form_cookie(time.time(), scope.get("scheme") == "https").encode())]

    def routes(self) -> list[Route]:
        """The form (GET: a reply's form, or for a reader whose page was kept), its POST at the same URL so that
        a refusal can show the form again where it was sent, and the owner's links. They must come before the
        site's catch-all route, and /comments/ stays out of the global body cap and CSRF guard: the form reads
        its own body (a Japanese comment percent-encoded is larger) and its cookie token is its CSRF guard."""
        return [
            Route("/comments/{post_id:int}", self._form, methods=["GET"]),
            Route("/comments/{post_id:int}", self._post, methods=["POST"]),
            Route("/comments/{comment_id:int}/{action}", self._moderate, methods=["GET", "POST"]),
        ]

    def context(self, found: list[Comment], post_id: int, form: dict[str, str] | None = None) -> dict[str, Any]:
        """What templates/site/comments.html needs: a post page includes it with this context."""

        def shown(comment: Comment) -> dict[str, Any]:
            return {
                "id": comment.id,
                "author": comment.author,
                "url": comment.url,
                "html": comment.html,
                "iso": self._site.iso(comment.created_at),
                "date": self._site.day(comment.created_at, minutes=True),
                "replies": [shown(reply) for reply in comment.replies],
            }

        values = {name: "" for name in FIELDS} | (form or {})
        return {
            "comment_list": [shown(c) for c in found],
            "comment_post": post_id,
            "comment_form": values,
            "comment_words": self._words,
        }

    def _page(self, request: Request, title: str, status: int = 200, **context: Any) -> Response:
        context = {"title": title, "site": self._site.context(), "comment_words": self._words, **context}
        response = templates().TemplateResponse(request, "comment_page.html", context, status_code=status)
        if "comment_form" in context:  # a form shown again needs a token of its own
            response.headers.append("set-cookie", self.form_cookie(time.time(), request.url.scheme == "https"))
        return response

    async def _form_page(
        self, request: Request, post_id: int, post_url: str, form: dict[str, str], error: str = "", status: int = 200
    ) -> Response:
        found = await self._database.query(lambda s: comments.published(s, post_id))
        title = self._words["write_reply" if form.get("parent") else "write"]
        return self._page(
            request,
            title,
            status,
            back=path_url(post_url),
            comment_error=error,
            **self.context(found, post_id, form),
        )

    async def _form(self, request: Request) -> Response:
        post_id = request.path_params["post_id"]
        post_url = await self._database.query(lambda s: comments.open_post(s, post_id, time.time()))
        if post_url is None:
            return self._page(request, self._words["no_post"], 404, message=self._words["no_post_here"])
        reply = request.query_params.get("reply", "")
        return await self._form_page(request, post_id, post_url, {"parent": reply if _NUMBER.fullmatch(reply) else ""})

    async def _read_body(self, request: Request) -> bytes:
        """The request's body, read no further than max_request bytes; Refused (413) past that."""
        announced = request.headers.get("content-length")
        if announced is not None and not _NUMBER.fullmatch(announced):
            raise Refused(400, "bad_length")
        too_large = Refused(413, "too_large", limit=self._max_bytes)
        if announced is not None and int(announced) > self.max_request:
            await self._drop(request, int(announced))
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > self.max_request:
                await self._drop(request, DROP_AT_MOST)
                raise too_large
        return bytes(body)

    @staticmethod
    async def _drop(request: Request, announced: int) -> None:
        """Read and drop what is left of a body refused, up to DROP_AT_MOST bytes, so that the client hears
        the answer rather than a reset (web/bodies.py); a larger one is never read."""
        if announced > DROP_AT_MOST:
            return
        dropped = 0
        try:
            async for chunk in request.stream():
                dropped += len(chunk)
                if dropped > DROP_AT_MOST:
                    return
        except RuntimeError:  # the stream was consumed already
            return

    async def _post(self, request: Request) -> Response:
        post_id: int = request.path_params["post_id"]
        form: dict[str, str] = {}
        post_url = await self._database.query(lambda s: comments.open_post(s, post_id, time.time()))
        try:
            raw = await self._read_body(request)
            if post_url is None:
                raise Refused(404, "no_post_here")
            form = self._parse(request, raw)
            if form.get("website"):  # the honeypot: a person never sees it
                raise Refused(400, "automated")
            checked = checked_fields(form, self._max_bytes)
            try:
                nonce = self._tokens.nonce(request.cookies.get(COOKIE), time.time())
            except TokenRefused as refused:
                raise Refused(403, refused.key) from None
            saved, notify = await self._store(request, post_id, post_url, checked, nonce)
            if notify is not None:
                # the owner's mail is committed before the reader's answer (a local delivery: milliseconds), so
                # that a crash after "saved" loses neither the comment nor the owner's word of it
                await notify()
        except Refused as refused:
            log.event("comment_refused", post=post_id, client=_client(request), reason=refused.message)
            not_saved, why = self._words["not_saved"], refused.said(self._words)
            if post_url is None or refused.status == 413 and not form:
                headers = {"connection": "close"} if refused.status == 413 else {}
                response = self._page(request, not_saved, refused.status, message=why)
                response.headers.update(headers)
                return response
            shown = {name: form.get(name, "") for name in FIELDS}
            return await self._form_page(request, post_id, post_url, shown, f"{not_saved}: {why}", refused.status)
        if saved.status == PUBLISHED:
            answer: Response = RedirectResponse(f"{path_url(post_url)}#comment-{saved.id}", status_code=303)
        else:
            answer = self._page(
                request,
                self._words["saved"],
                message=self._words["held"],
                back=path_url(post_url),
            )
        return answer

    @staticmethod
    def _parse(request: Request, raw: bytes) -> dict[str, str]:
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            raise Refused(415, "bad_kind")
        try:
            pairs = parse_qsl(
                raw.decode(), keep_blank_values=True, encoding="utf-8", errors="strict", max_num_fields=FORM_FIELDS
            )
        except (UnicodeDecodeError, ValueError):
            raise Refused(400, "bad_utf8") from None
        fields: dict[str, str] = {}
        for name, value in pairs:
            fields.setdefault(name, value)
        return fields

    async def _store(
        self, request: Request, post_id: int, post_url: str, fields: dict[str, str], nonce: str
    ) -> tuple[Saved, Callable[[], Awaitable[None]] | None]:
        """Save the comment; with it, the owner's notification to send before the reader has the answer."""
        from jitaku.blog.comment_text import links, render

        now = time.time()
        address = _client(request)
        # Cheap reads first: a replayed token or a busy address is refused before the costly render (tens to
        # hundreds of milliseconds for a hostile body); the transaction checks both again, for a race.
        early = await self._database.query(lambda s: _replayed_or_busy(s, nonce, address, now), snapshot=False)
        if early is not None:
            raise early
        html = await asyncio.to_thread(render, fields["body"])  # off the event loop, which serves mail too
        new = NewComment(
            post_id=post_id,
            parent_id=int(fields["parent"]) if fields["parent"] else None,
            author=fields["name"],
            email=fields["email"],
            url=fields["url"],
            body=fields["body"],
            html=html,
            address=address,
            nonce=nonce,
            created_at=now,
        )
        judged = await self._filter.verdict(new)
        moderation = self._settings.blog.moderation
        count = links(new.body)

        def write(tx: Tx) -> Saved | Refused:
            refused = _replayed_or_busy(tx, nonce, new.address, now)
            if refused is not None:
                return refused
            if new.parent_id is not None and not comments.can_reply_to(tx, new.parent_id, post_id):
                return Refused(400, "no_parent")
            before = moderation == "first" and comments.approved_before(tx, new.author, new.email)
            status, reason = status_for(moderation, judged.verdict, count, before, judged.why)
            return Saved(comments.add(tx, new, status, reason), status)

        try:
            outcome = await self._database.transact(write)
        except StoreError:  # the same nonce committed meanwhile by another request (comments.nonce is unique)
            if await self._database.query(lambda s: comments.nonce_used(s, nonce), snapshot=False):
                raise Refused(403, "sent_already") from None
            raise
        if isinstance(outcome, Refused):
            raise outcome
        log.event("comment_saved", comment=outcome.id, post=post_id, status=outcome.status, client=new.address)
        if outcome.status == PUBLISHED:
            self._changed()
        notify = None
        if outcome.status != SPAM and self._mail is not None:
            notify = functools.partial(self._mail.send, new, outcome.id, outcome.status, post_url, now)
        return outcome, notify

    async def _moderate(self, request: Request) -> Response:
        """The owner's link from the notification: a GET shows a button (mail scanners follow links), its
        POST does it. The signature in the query is the proof, as the one-click unsubscribe's token is."""
        comment_id: int = request.path_params["comment_id"]
        action: str = request.path_params["action"]
        until, signature = request.query_params.get("until", ""), request.query_params.get("sig", "")
        said = self._words
        if action not in ACTIONS:
            return self._page(request, said["not_found"], 404, message=said["nothing_here"])
        if not self._tokens.link_valid(comment_id, action, until, signature, time.time()):
            return self._page(request, said["link_invalid"], 403, message=said["link_invalid_why"])
        found = await self._database.query(lambda s: comments.find(s, comment_id), snapshot=False)
        if found is None:
            return self._page(request, said["no_comment"], 404, message=said["deleted"])
        if found.status != PENDING:
            return self._decided(request, found)
        verb = said[action]
        if request.method == "GET":
            wrote = said["wrote"].format(author=found.author, url=found.post_url, body=found.body[:500])
            return self._page(
                request,
                f"{verb}: {said['confirm'].format(id=comment_id)}",
                message=wrote,
                confirm={"action": f"{request.url.path}?{request.url.query}", "button": verb},
            )
        status = ACTIONS[action]
        if not await self._database.transact(lambda tx: comments.decide(tx, comment_id, status)):
            now = await self._database.query(lambda s: comments.find(s, comment_id), snapshot=False)
            if now is None:
                return self._page(request, said["no_comment"], 404, message=said["deleted"])
            return self._decided(request, now)
        self._changed()
        log.event("comment_moderated", comment=comment_id, status=status, via="web")
        done = said["now_published" if status == PUBLISHED else "now_spam"].format(id=comment_id)
        return self._page(request, said["done"], message=done, back=path_url(found.post_url))

    def _decided(self, request: Request, found: Comment) -> Response:
        """A link followed after the comment was decided (by another link, or the CLI): it changes nothing,
        so that an old approve link cannot publish what the owner has since marked as spam."""
        state = self._words["was_published" if found.status == PUBLISHED else "was_spam"].format(id=found.id)
        return self._page(request, self._words["decided"], 409, message=state, back=path_url(found.post_url))


def _replayed_or_busy(source: Statements, nonce: str, address: str, now: float) -> Refused | None:
    """Why a comment with NONCE from ADDRESS is not to be stored whatever it says, or None."""
    if comments.nonce_used(source, nonce):
        return Refused(403, "sent_already")
    if comments.count_from(source, address, now - RATE_WINDOW) >= RATE_LIMIT:
        minutes = int(RATE_WINDOW // 60)
        return Refused(429, "too_many", limit=RATE_LIMIT, minutes=minutes)
    return None


def _client(request: Request) -> str:
    """Whom the rate limit counts: the client's IPv4 address, or its IPv6 /64 (one household's, or one
    server's, whose every address is a spammer's for the taking)."""
    host = request.client.host if request.client else "?"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
