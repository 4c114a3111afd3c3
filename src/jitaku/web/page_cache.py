"""The site's pages kept in memory as the bytes sent, with a gzip copy and an ETag, so that a reader's GET costs
a dictionary look-up, not a query and a template (issue 21's benchmark: a post page at 0.3x nginx).

The pages are dropped together when the blog changes: `blog_version` (store/blog.py changed) is read at most
once a second, on the next request, so that a `jitaku blog import` reaches the running site within 2 s; a
write the daemon makes itself (a comment) calls invalidate() and is seen at once. FastPages answers a cached
GET or HEAD in front of Starlette, its routing and its middlewares, with the security headers of web/headers.py.
"""

from __future__ import annotations

import gzip
import hashlib
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Receive, Scope, Send

from jitaku.store import Database, blog
from jitaku.web.headers import SECURITY_HEADERS
from jitaku.web.paths import path_url

CHECK_EVERY = 1.0  # seconds between two reads of blog_version
MAX_BYTES = 32 * 1024 * 1024  # what the kept pages may hold, gzip copies included; the least recently used go
_SECURITY = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
_VARY = (b"vary", b"Accept-Encoding")
_GZIP = (b"content-encoding", b"gzip")
PerResponse = Callable[[Scope], list[tuple[bytes, bytes]]]


@dataclass(frozen=True)
class Page:
    """A response as sent: its status, its headers and body, and the body gzipped (None: not worth it)."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]  # besides the length, the ETag and the encoding
    body: bytes
    gzipped: bytes | None
    etag: bytes  # quoted; the gzip copy's ends in -gz
    size: int = field(init=False)
    # headers of each response apart, for a page shared by every reader: a post's sets each its own form token
    per_response: PerResponse | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "size", len(self.body) + len(self.gzipped or b"") + 200)

    @classmethod
    def of(
        cls,
        status: int,
        content_type: str,
        body: bytes,
        cache_control: str = "no-cache",
        *,
        compress: bool = True,
        etag: str | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        per_response: PerResponse | None = None,
    ) -> Page:
        """A page of BODY; its ETag the body's digest, or ETAG (a media file's stored digest). Browsers
        revalidate a page (no-cache) and get 304 while it is unchanged."""
        tag = etag or hashlib.sha256(body).hexdigest()[:32]
        gzipped = gzip.compress(body, 6, mtime=0) if compress and len(body) > 256 else None
        if gzipped is not None and len(gzipped) >= len(body):
            gzipped = None
        head = (
            (b"content-type", content_type.encode()),
            (b"cache-control", cache_control.encode()),
            *((name.encode(), value.encode("latin-1")) for name, value in headers),
        )
        return cls(status, head, body, gzipped, f'"{tag}"'.encode(), per_response)

    async def send(self, scope: Scope, send: Send) -> None:
        """Send the page as SCOPE's request asks: 304 to an If-None-Match that names it, gzipped to a client
        that accepts it, no body to HEAD."""
        asked = _request_headers(scope)
        zipped = self.gzipped is not None and _accepts_gzip(asked.get(b"accept-encoding", b""))
        etag = self.etag[:-1] + b'-gz"' if zipped else self.etag
        headers = [*self.headers, (b"etag", etag), *_SECURITY]
        if self.per_response is not None:
            headers.extend(self.per_response(scope))
        if self.gzipped is not None:
            headers.append(_VARY)
        if self.status == 200 and self._matches(asked.get(b"if-none-match")):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = self.gzipped if zipped and self.gzipped is not None else self.body
        if zipped:
            headers.append(_GZIP)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})

    def _matches(self, if_none_match: bytes | None) -> bool:
        if not if_none_match:
            return False
        if if_none_match.strip() == b"*":
            return True
        mine = self.etag[1:-1]
        for tag in if_none_match.split(b","):
            tag = tag.strip().removeprefix(b"W/").strip(b'"')
            if tag in (mine, mine + b"-gz"):
                return True
        return False


def _request_headers(scope: Scope) -> dict[bytes, bytes]:
    return {name: value for name, value in scope["headers"] if name in (b"accept-encoding", b"if-none-match")}


def _accepts_gzip(accept_encoding: bytes) -> bool:
    for coding in accept_encoding.lower().split(b","):
        name, _, parameters = coding.partition(b";")
        if name.strip() in (b"gzip", b"*"):
            quality = parameters.strip().removeprefix(b"q=")
            return not (parameters and quality.strip(b"0.") == b"")  # q=0 refuses it
    return False


class PageCache:
    """The kept pages by path (as uvicorn decodes it), least recently used first."""

    def __init__(self, database: Database, max_bytes: int = MAX_BYTES) -> None:
        self._database = database
        self._max_bytes = max_bytes
        self._pages: OrderedDict[str, Page] = OrderedDict()
        self._bytes = 0
        self._version: int | None = None
        self._checked = float("-inf")
        self.generation = 0  # moves each time the pages are dropped: a page drawn before is not kept

    async def check(self) -> None:
        """Drop the pages if the blog changed since the last look, at most once every CHECK_EVERY s."""
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY:
            return
        self._checked = now
        version = await self._database.query(blog.current_version, snapshot=False)
        if version != self._version:
            self._version = version
            self._drop()

    def invalidate(self) -> None:
        """The daemon changed the blog (a comment): drop the pages now, and read the version again next time."""
        self._checked = float("-inf")
        self._drop()

    def get(self, path: str) -> Page | None:
        """The page kept for PATH, now the most recently used; None when it must be drawn. PATH is NFC (FastPages
        sends any other spelling to it), so that each page is kept once."""
        page = self._pages.get(path)
        if page is not None:
            self._pages.move_to_end(path)
        return page

    def put(self, path: str, page: Page, generation: int) -> None:
        """Keep PAGE, drawn when the pages were at GENERATION, unless they were dropped since."""
        if generation != self.generation or page.size > self._max_bytes // 8:
            return
        if (old := self._pages.pop(path, None)) is not None:
            self._bytes -= old.size
        self._pages[path] = page
        self._bytes += page.size
        while self._bytes > self._max_bytes:
            _, dropped = self._pages.popitem(last=False)
            self._bytes -= dropped.size

    def _drop(self) -> None:
        self._pages.clear()
        self._bytes = 0
        self.generation += 1


class FastPages:
    """ASGI: a GET or HEAD of a kept page is answered here; everything else goes on to APP.

    A path not in NFC (a Mac's decomposed kana: /tags/サ<U+3099>/) answers 301 to its NFC spelling, as the
    import stores every URL, so that one page has one URL and one place in the cache."""

    def __init__(self, app: ASGIApp, cache: PageCache) -> None:
        self._app = app
        self._cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            path: str = scope["path"]
            if not unicodedata.is_normalized("NFC", path):
                await _to_nfc(path, scope["query_string"]).send(scope, send)
                return
            await self._cache.check()
            page = self._cache.get(path)
            if page is not None:
                await page.send(scope, send)
                return
        await self._app(scope, receive, send)


def _to_nfc(path: str, query: bytes) -> Page:
    location = path_url(unicodedata.normalize("NFC", path)) + (f"?{query.decode('latin-1')}" if query else "")
    return Page.of(301, "text/plain; charset=utf-8", b"", compress=False, headers=(("location", location),))
