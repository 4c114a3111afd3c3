"""The site's pages kept in memory as the bytes sent, with a gzip copy and an ETag, so that a reader's GET costs
a dictionary look-up, not a query and a template (issue 21's benchmark: a post page at 0.3x nginx).

The pages are dropped together when the blog changes: `blog_version` (store/blog.py changed) is read at most
once a second, on the next request, so that a `jitaku blog import` reaches the running site within 2 s; a
write the daemon makes itself (a comment) calls invalidate() and is seen at once. They are dropped too when the
next scheduled post comes due (a post dated ahead, which the pages leave out until then: store/site.py), so that
it appears on time without any write to announce it. FastPages answers a cached
GET or HEAD in front of Starlette, its routing and its middlewares, with the security headers of web/headers.py.
A page missed by many readers at once is drawn once (PageCache.drawn), the others waiting for it.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

from jitaku.blog.paths import path_url
from jitaku.store import Database, blog, site
from jitaku.web.headers import SECURITY_HEADERS
from jitaku.web.ranges import UNSATISFIABLE, byte_range

CHECK_EVERY = 1.0  # seconds between two reads of blog_version
MAX_BYTES = 32 * 1024 * 1024  # what the kept pages may hold, gzip copies included; the least recently used go
_SECURITY = [(name.encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]
_VARY = (b"vary", b"Accept-Encoding")
_GZIP = (b"content-encoding", b"gzip")
_ASKED = (b"accept-encoding", b"if-none-match", b"range", b"if-range")
PerResponse = Callable[[Scope], list[tuple[bytes, bytes]]]
Reader = Callable[[int, int], Awaitable[bytes]]  # (offset, length): a part of a body too large to keep
CHUNK = blog.MEDIA_PART  # what a Reader is asked for at once, from a multiple of it on: one stored part
TEXT = "text/plain; charset=utf-8"


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
    ranges: bool = False  # a media file: one Range request gets its part (206), so that a <video> plays and seeks
    reader: Reader | None = None  # reads the body, of `length` bytes, part by part: a file too large to keep
    length: int = 0

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
        ranges: bool = False,
        reader: tuple[Reader, int] | None = None,
    ) -> Page:
        """A page of BODY, or of what READER (a Reader and the body's length) reads as it is sent; its ETag the
        body's digest, or ETAG (a media file's stored digest). Browsers revalidate a page (no-cache) and get 304
        while it is unchanged. A page sent by RANGES is never gzipped: a range counts the bytes of the file."""
        tag = etag or hashlib.sha256(body).hexdigest()[:32]
        compress = compress and not ranges and reader is None
        gzipped = gzip.compress(body, 6, mtime=0) if compress and len(body) > 256 else None
        if gzipped is not None and len(gzipped) >= len(body):
            gzipped = None
        if per_response is not None:  # a cookie of one reader's own: no shared cache may keep it for another
            cache_control = "private, no-cache"
        head = (
            (b"content-type", content_type.encode()),
            (b"cache-control", cache_control.encode()),
            *((name.encode(), value.encode("latin-1")) for name, value in headers),
            *(((b"accept-ranges", b"bytes"),) if ranges else ()),
        )
        read, length = reader if reader is not None else (None, len(body))
        return cls(status, head, body, gzipped, f'"{tag}"'.encode(), per_response, ranges, read, length)

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
        status, start, end = self.status, 0, self.length - 1
        part = self._range(asked)
        if part == UNSATISFIABLE:
            status, end = 416, -1
            headers.append((b"content-range", f"bytes */{self.length}".encode()))
        elif part is not None:
            status, (start, end) = 206, part
            headers.append((b"content-range", f"bytes {start}-{end}/{self.length}".encode()))
        if zipped and self.gzipped is not None:
            body, start, end = self.gzipped, 0, len(self.gzipped) - 1
            headers.append(_GZIP)
        else:
            body = self.body
        headers.append((b"content-length", str(end + 1 - start).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        if scope["method"] == "HEAD" or self.reader is None or status == 416:
            whole = b"" if scope["method"] == "HEAD" or status == 416 else body[start : end + 1]
            await send({"type": "http.response.body", "body": whole})
            return
        offset = start
        while offset <= end:  # a Range from the middle of a part reads to its end first, then part by part
            stop = min((offset // CHUNK + 1) * CHUNK, end + 1)
            data = await self.reader(offset, stop - offset)
            await send({"type": "http.response.body", "body": data, "more_body": stop <= end})
            offset = stop
        if start > end:
            await send({"type": "http.response.body", "body": b""})

    def _range(self, asked: dict[bytes, bytes]) -> tuple[int, int] | Literal["unsatisfiable"] | None:
        """The part of the body a Range header asks for, if the page is sent by ranges and, with an If-Range,
        is still the one the client holds a part of."""
        header = asked.get(b"range")
        if not self.ranges or self.status != 200 or header is None:
            return None
        if_range = asked.get(b"if-range")
        if if_range is not None and if_range.strip() != self.etag:
            return None  # the file changed since (or a date, which a strong ETag's page does not go by): all of it
        return byte_range(header, self.length)

    def _matches(self, if_none_match: bytes | None) -> bool:
        """Whether the client holds this page already: either copy's ETag, weak or strong, or *."""
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
    """The few request headers a kept page's answer depends on."""
    return {name: value for name, value in scope["headers"] if name in _ASKED}


def _accepts_gzip(accept_encoding: bytes) -> bool:
    """Whether ACCEPT_ENCODING takes gzip (or *) with a quality above 0."""
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
        self._due: float | None = None  # when the next scheduled post appears (a timestamp); None: none is
        self.generation = 0  # moves each time the pages are dropped: a page drawn before is not kept
        self._flights: dict[str, asyncio.Future[Page]] = {}  # the pages being drawn, by path

    async def check(self) -> None:
        """Drop the pages if the blog changed since the last look, or a scheduled post came due, at most once
        every CHECK_EVERY s. When the next one is due is read again only then: not a query per second."""
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY:
            return
        self._checked = now
        version = await self._database.query(blog.current_version, snapshot=False)
        clock = time.time()
        if version != self._version or (self._due is not None and clock >= self._due):
            self._version = version
            self._drop()
            self._due = await self._database.query(lambda s: site.next_due(s, clock), snapshot=False)

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

    async def drawn(self, path: str, draw: Callable[[], Awaitable[tuple[Page, bool]]]) -> Page:
        """The page at PATH, drawn by DRAW (the page, and whether to keep it) unless it is being drawn already:
        after a comment drops every page, fifty readers of the home page wait for one drawing of it, not fifty on
        the event loop. A DRAW that fails fails for each of them and is not kept; the next miss draws again."""
        while (flight := self._flights.get(path)) is not None:
            await asyncio.wait((flight,))
            if not flight.cancelled():  # the drawer's request was cancelled: this one draws
                return flight.result()
        if (page := self.get(path)) is not None:  # drawn and kept since FastPages missed it
            return page
        generation = self.generation
        flight = asyncio.get_running_loop().create_future()
        self._flights[path] = flight
        try:
            page, keep = await draw()
        except Exception as error:
            flight.set_exception(error)
            flight.exception()  # retrieved: a failure no other reader waited for is not logged twice
            raise
        except BaseException:
            flight.cancel()
            raise
        finally:
            if self._flights.get(path) is flight:
                del self._flights[path]
        if keep:
            self.put(path, page, generation)
        flight.set_result(page)
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
        """Forget every page; the generation moves so that a page drawn before is not kept after."""
        self._pages.clear()
        self._bytes = 0
        self.generation += 1
        self._flights.clear()  # a page being drawn may be from before: the next reader draws it anew


class FastPages:
    """ASGI: a GET or HEAD of a kept page is answered here; everything else goes on to APP.

    A path not in NFC (a Mac's decomposed kana: /tags/サ<U+3099>/) answers 301 to its NFC spelling, as the
    import stores every URL, so that one page has one URL and one place in the cache."""

    def __init__(self, app: ASGIApp, cache: PageCache) -> None:
        self._app = app
        self._cache = cache

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A kept page answered here, before Starlette: what makes a reader's GET a dictionary look-up."""
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
    """301 from PATH to its NFC spelling, the QUERY kept."""
    location = path_url(unicodedata.normalize("NFC", path)) + (f"?{query.decode('latin-1')}" if query else "")
    return Page.of(301, TEXT, b"", compress=False, headers=(("location", location),))
