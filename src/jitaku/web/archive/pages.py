"""The archive's pages at /lists/ADDRESS/archive/ (the URL List-Archive names): the months with their counts, a
month's posts threaded, a post's own page at the URL its copies' Archived-At names, its attachments as
downloads, a month as mbox, and search.

Who reads depends on the list's `archive` setting: "public", anyone (addresses shown as "kenji at example.jp",
as Mailman's archives show them); "members", a member logged in by a mailed link (logins.py); "none", nobody:
every page answers 404, as for a list that does not exist.

A post's body is read and parsed in a thread, by PARSERS at most at once: a post may be 25 MB, and readers who
come together (or one who reloads) wait their turn rather than each holding one more. The rendered post is kept
(rendered_cache.py), so the readers after the first find it parsed.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from datetime import MAXYEAR, datetime
from email.utils import parseaddr
from functools import partial
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from jitaku import store
from jitaku.addresses import obfuscated
from jitaku.config import Settings
from jitaku.store import Database, search
from jitaku.store import archive as stored
from jitaku.store.lists import MailingList
from jitaku.web.archive import mbox, message
from jitaku.web.archive.logins import ArchiveLogins
from jitaku.web.archive.rendered_cache import Key, RenderedCache
from jitaku.web.archive.threads import threaded
from jitaku.web.bodies import read_form
from jitaku.web.search import Searches
from jitaku.web.site_info import SiteInfo
from jitaku.web.templates import templates

_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")
_HASH = re.compile(r"[A-Z2-7]{32}")  # base32 of a SHA-1
_NAME_ADDRESS = re.compile(r"(.*?)\s*<([^<>]*)>\s*", re.DOTALL)  # "山田, 太郎 <taro@example.jp>"
PER_PAGE = 20  # search results on a page
MAX_PAGE = 50
MAX_ATTACHMENT_INDEX = 1000
PARSERS = 2  # posts read and parsed at once, for pages, downloads and mbox files together


class ArchivePages:
    def __init__(self, settings: Settings, database: Database, logins: ArchiveLogins, searches: Searches) -> None:
        self._database = database
        self._searches = searches
        self._logins = logins
        self._info = SiteInfo.of(settings)
        self._parsing = asyncio.Semaphore(PARSERS)
        self._rendered = RenderedCache()
        self._pending: dict[Key, asyncio.Future[message.Rendered]] = {}

    def routes(self) -> list[Route]:
        base = "/lists/{list}/archive"
        return [
            Route(base, self._moved),
            Route(f"{base}/", self._months),
            Route(f"{base}/search", self._search),
            Route(f"{base}/login", self._login, methods=["GET", "POST"]),
            Route(f"{base}/login/{{token}}", self._link, methods=["GET", "POST"]),
            Route(f"{base}/logout", self._logout, methods=["POST"]),
            Route(f"{base}/msg/{{hash}}/", self._message),
            Route(f"{base}/msg/{{hash}}/attachments/{{index:int}}", self._attachment),
            Route(f"{base}/{{month}}.mbox", self._mbox),
            Route(f"{base}/{{month}}/", self._month),
        ]

    # who may read

    async def _list(self, request: Request) -> MailingList | None:
        """The list of the path, when its archive is on the web at all."""
        address = request.path_params["list"].lower()
        found = await self._database.query(lambda s: store.lists.find_list(s, address), snapshot=False)
        return None if found is None or found.archive == "none" else found

    async def _readable(self, request: Request) -> MailingList | Response:
        """The list, when this request may read its archive; else the page to answer instead."""
        found = await self._list(request)
        if found is None:
            return self._not_found(request)
        if found.archive == "members":
            member = await self._logins.member(request, found)
            if member is None:
                return self._page(request, found, "login.html", status=403, asked=None, next=request.url.path)
            request.state.archive_member = member  # the page says who is logged in, with a button to log out
        return found

    # pages

    async def _moved(self, request: Request) -> Response:
        return RedirectResponse(f"{request.url.path}/", status_code=301)

    async def _months(self, request: Request) -> Response:
        found = await self._readable(request)
        if isinstance(found, Response):
            return found
        times = await self._database.query(lambda s: stored.posted_times(s, found.id), snapshot=False)
        counts = Counter(self._info.when(t).strftime("%Y-%m") for t in times)
        return self._page(request, found, "index.html", months=sorted(counts.items(), reverse=True))

    async def _month(self, request: Request) -> Response:
        found = await self._readable(request)
        if isinstance(found, Response):
            return found
        span = self._span(request.path_params["month"])
        if span is None:
            return self._not_found(request)
        posts = await self._database.query(lambda s: stored.between(s, found.id, *span), snapshot=False)
        if not posts:
            return self._not_found(request)
        return self._page(
            request, found, "month.html", month=request.path_params["month"], threads=threaded(posts), count=len(posts)
        )

    async def _message(self, request: Request) -> Response:
        found = await self._readable(request)
        if isinstance(found, Response):
            return found
        hashed = request.path_params["hash"]
        post = await self._post(found, hashed)
        if post is None:
            return self._not_found(request)
        rendered = await self._render(found, post)
        thread_number = post.thread_number if post.thread_number is not None else post.number
        thread = await self._database.query(lambda s: stored.thread(s, found.id, thread_number), snapshot=False)
        numbers = [p.number for p in thread]
        place = numbers.index(post.number) if post.number in numbers else -1
        by_number = {p.number: p for p in thread}
        return self._page(
            request,
            found,
            "message.html",
            post=post,
            rendered=rendered,
            thread=threaded(thread),
            parent=by_number.get(post.parent_number) if post.parent_number is not None else None,
            previous=thread[place - 1] if place > 0 else None,
            next=thread[place + 1] if 0 <= place < len(thread) - 1 else None,
        )

    async def _attachment(self, request: Request) -> Response:
        """Always a download of opaque bytes: never shown in our origin, whatever type the sender claimed (an HTML
        or SVG file would run its script as this site)."""
        found = await self._readable(request)
        if isinstance(found, Response):
            return found
        index = request.path_params["index"]
        post = await self._post(found, request.path_params["hash"])
        if post is None or not 0 < index <= MAX_ATTACHMENT_INDEX:
            return self._not_found(request)
        async with self._parsing:
            body = await self._body(post.id)
            got = await asyncio.to_thread(message.attachment, body, index)
        if got is None:
            return self._not_found(request)
        part, octets = got
        headers = {
            "content-disposition": content_disposition(part.filename),
            "content-security-policy": "sandbox; default-src 'none'",
            "x-content-type-options": "nosniff",
            # a member's download stays out of caches, as the members' pages do
            "cache-control": "private, no-store" if found.archive == "members" else "public, max-age=86400",
        }
        return Response(octets, media_type="application/octet-stream", headers=headers)

    async def _mbox(self, request: Request) -> Response:
        found = await self._readable(request)
        if isinstance(found, Response):
            return found
        month = request.path_params["month"]
        span = self._span(month)
        if span is None:
            return self._not_found(request)
        posts = await self._database.query(lambda s: stored.between(s, found.id, *span), snapshot=False)
        if not posts:
            return self._not_found(request)

        async def entries() -> AsyncIterator[bytes]:
            """One post at a time: a month of 25 MB posts is never held whole."""
            for post in posts:
                read = partial(stored.sender_and_body, post_id=post.id)
                async with self._parsing:
                    got = await asyncio.to_thread(self._database.query_now, read)
                    entry = await asyncio.to_thread(mbox.entry, got[0], post.posted_at, got[1]) if got else None
                    del got  # not held while the client reads the entry
                if entry is not None:
                    yield entry

        filename = f"{found.local_part}-{month}.mbox"
        headers = {"content-disposition": f'attachment; filename="{filename}"'}
        if found.archive == "members":
            headers["cache-control"] = "private, no-store"
        return StreamingResponse(entries(), media_type=mbox.CONTENT_TYPE, headers=headers)

    async def _search(self, request: Request) -> Response:
        found = await self._readable(request)
        if isinstance(found, Response):
            return found
        query = request.query_params.get("q", "")[: search.MAX_QUERY]
        try:
            number = min(max(int(request.query_params.get("page", "1")), 1), MAX_PAGE)
        except ValueError:
            number = 1
        hits: list[tuple[stored.Archived, search.Found]] = []
        more = False
        if search.words(query):
            offset = (number - 1) * PER_PAGE

            def find(statements: store.statements.Statements) -> list[tuple[stored.Archived, search.Found]]:
                results = search.find_list_posts(statements, [found.id], query, PER_PAGE + 1, offset)
                posts = {p.id: p for p in stored.by_ids(statements, found.id, [r.ref for r in results])}
                return [(posts[r.ref], r) for r in results if r.ref in posts]

            hits = await self._searches.run(find)
            more = len(hits) > PER_PAGE
            hits = hits[:PER_PAGE]
        return self._page(
            request,
            found,
            "search.html",
            query=query,
            hits=hits,
            newer=f"search?{urlencode({'q': query, 'page': number - 1})}" if number > 1 else None,
            older=f"search?{urlencode({'q': query, 'page': number + 1})}" if more and number < MAX_PAGE else None,
        )

    # logging in

    async def _login(self, request: Request) -> Response:
        found = await self._list(request)
        if found is None or found.archive != "members":
            return self._not_found(request)
        if request.method == "GET":
            return self._page(request, found, "login.html", asked=None, next=self._target(found, None))
        target = self._target(found, (await read_form(request)).get("next"))
        asked, status, mailing = await self._logins.ask(request, found, target)
        response = self._page(
            request, found, "login.html", status=status, asked=asked, limited=status == 429, next=target
        )
        response.background = mailing
        return response

    async def _link(self, request: Request) -> Response:
        found = await self._list(request)
        if found is None or found.archive != "members":
            return self._not_found(request)
        token = request.path_params["token"]
        if request.method == "POST":
            target = self._target(found, request.query_params.get("next"))
            response = await self._logins.use(request, found, token, target)
            if response is not None:
                return response
        elif (address := await self._logins.link_address(found, token)) is not None:
            return self._page(request, found, "link.html", address=address)
        return self._page(request, found, "link.html", status=404, address=None)

    async def _logout(self, request: Request) -> Response:
        found = await self._list(request)
        if found is None:
            return self._not_found(request)
        return self._logins.log_out(request, found, f"/lists/{found.address}/archive/")

    # helpers

    @staticmethod
    def _target(found: MailingList, asked: object) -> str:
        """Where a login goes once done: the archive page the member asked for, and never anywhere else."""
        base = f"/lists/{found.address}/archive/"
        if isinstance(asked, str) and asked.startswith(base) and len(asked) <= 300 and "//" not in asked[1:]:
            return asked if "\\" not in asked else base
        return base

    async def _post(self, found: MailingList, hashed: str) -> stored.Archived | None:
        if not _HASH.fullmatch(hashed):
            return None
        return await self._database.query(lambda s: stored.by_hash(s, found.id, hashed), snapshot=False)

    async def _render(self, found: MailingList, post: stored.Archived) -> message.Rendered:
        """The post as its page shows it: kept from an earlier view, or read and parsed in its turn, once for all
        who ask for it meanwhile (a reader who reloads, a thread read by many as the list sent it)."""
        key = (found.id, post.id, found.archive == "public")
        rendered = self._rendered.get(key)
        if rendered is not None:
            return rendered
        parsing = self._pending.get(key)
        if parsing is None:
            parsing = self._pending[key] = asyncio.ensure_future(self._parse(key, post.id))
            parsing.add_done_callback(lambda _: self._pending.pop(key, None))
        return await asyncio.shield(parsing)  # a reader who leaves does not cancel it for the others

    async def _parse(self, key: Key, post_id: int) -> message.Rendered:
        async with self._parsing:
            body = await self._body(post_id)
            rendered = await asyncio.to_thread(message.render, body, key[2])
        self._rendered.put(key, rendered)
        return rendered

    async def _body(self, post_id: int) -> bytes:
        """Read in a thread: a post may be megabytes."""
        body = await asyncio.to_thread(self._database.query_now, lambda s: stored.body(s, post_id))
        return body or b""

    def _span(self, month: str) -> tuple[float, float] | None:
        """[start, end) of MONTH ("2026-12") in the site's time zone."""
        matched = _MONTH.fullmatch(month)
        if matched is None or not 1 <= int(matched[2]) <= 12 or int(matched[1]) < 1970:
            return None
        year, number = int(matched[1]), int(matched[2])
        following = (year + 1, 1) if number == 12 else (year, number + 1)
        if following[0] > MAXYEAR:  # 9999-12 ends in a year no date has
            return None
        return self._timestamp(year, number), self._timestamp(*following)

    def _timestamp(self, year: int, month: int) -> float:
        zone = self._info.zone
        return (datetime(year, month, 1, tzinfo=zone) if zone else datetime(year, month, 1)).timestamp()

    def _page(self, request: Request, found: MailingList, name: str, status: int = 200, **context: Any) -> Response:
        public = found.archive == "public"
        response = templates().TemplateResponse(
            request,
            f"archive/{name}",
            {
                "list": found,
                "base": f"/lists/{found.address}/archive/",
                "css_version": self._info.context()["css_version"],
                "when": lambda t: self._info.when(t).strftime("%Y-%m-%d %H:%M"),
                "month_of": lambda t: self._info.when(t).strftime("%Y-%m"),
                "iso": self._info.iso,
                "member": getattr(request.state, "archive_member", None),
                "author": lambda text: author_name(text, public),
                **context,
            },
            status_code=status,
        )
        if not public:
            response.headers["cache-control"] = "private, no-store"
        return response

    def _not_found(self, request: Request) -> Response:
        return templates().TemplateResponse(
            request,
            "archive/not_found.html",
            {"css_version": self._info.context()["css_version"]},
            status_code=404,
        )


def author_name(author: str, obfuscate: bool) -> str:
    """The name an archived post's From gives, else its address (as "kenji at example.jp" on a public page).
    AUTHOR is already decoded, so a name's comma no longer sits inside quotes or an encoded-word: the address
    is what is in the last angle brackets, and the name all before them."""
    matched = _NAME_ADDRESS.fullmatch(author.strip())
    if matched is not None:
        name, address = _unquoted(matched[1].strip()), matched[2].strip()
    else:
        name, address = parseaddr(author)
    if name:
        return obfuscated(name) if obfuscate else name
    shown = address or author
    return obfuscated(shown) if obfuscate else shown


def _unquoted(name: str) -> str:
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return re.sub(r"\\(.)", r"\1", name[1:-1])
    return name


def content_disposition(filename: str) -> str:
    """RFC 6266: an ASCII stand-in for old clients, and the real name (Japanese, say) in filename* (RFC 8187)."""
    fallback = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"
