"""The blog as its readers see it: the home page (newest posts), each post's and static page's own page at its
URL, tag and month archives (the posts whole, each listing paged at /page/N/ below it as the home page is), the
media files, and the stylesheet.

Every page is drawn once into bytes and kept (web/page_cache.py) until the blog changes. A path no page answers
is looked up among the old URLs (`redirects`) and answered 301 to where its page is now, else with a readable
404 page. Paths as uvicorn gives them are Unicode text (/tags/自宅サーバー/), compared in NFC as the import
stores them.
"""

from __future__ import annotations

import asyncio
import html
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from jitaku.blog.paths import path_url, tag_path
from jitaku.config import Settings
from jitaku.store import Database, blog, site
from jitaku.store import comments as stored_comments
from jitaku.web import stylesheet
from jitaku.web.page_cache import TEXT, Page, PageCache, PerResponse
from jitaku.web.site_info import SiteInfo
from jitaku.web.templates import templates

if TYPE_CHECKING:
    from jinja2 import Environment

    from jitaku.web.comments import Comments

HTML = "text/html; charset=utf-8"
MEDIA_CACHE = "public, max-age=86400"  # a day; a changed file is then seen by its ETag
LARGE_MEDIA = 4 * 1024 * 1024  # a larger file is not kept: it is read part by part for each request
DESCRIPTION_LENGTH = 120
# What a POST (or any method but GET and HEAD) gets: the site's pages are only read
NOT_ALLOWED = Page.of(405, TEXT, b"Method not allowed\n", headers=(("allow", "GET, HEAD"),))
NOT_FOUND = Page.of(404, TEXT, b"Not found\n")
Draw = Callable[[], Awaitable[Page]]
_MONTH = re.compile(r"/([0-9]{4})/([0-9]{2})/")  # [0-9], not \d: /٢٠٢٤/٠٥/ is no second URL of a month
# The later pages of a listing: the home page's, a tag's, a month's
_OLDER = re.compile(r"(/|/tags/[^/]+/|/[0-9]{4}/[0-9]{2}/)page/([0-9]{1,6})/")
_TAG = re.compile(r"/tags/([^/]+)/")
_TAGS = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")
WORDS = {
    "ja": {
        "newer": "新しい記事",
        "older": "古い記事",
        "no_posts": "まだ記事がありません。",
        "not_found": "ページが見つかりません",
        "no_page": "このアドレスのページはありません:",
        "home": "トップページへ",
        "tag": "タグ「{}」の記事",
        "month": "{year}年{month}月の記事",
        "results": "「{}」の検索結果",
        "nothing_found": "見つかりませんでした。",
        "in_archives": "メーリングリストの過去ログ",
    },
    "en": {
        "newer": "newer",
        "older": "older",
        "no_posts": "No posts yet.",
        "not_found": "Not found",
        "no_page": "There is no page at",
        "home": "Back to the home page",
        "tag": "Posts tagged “{}”",
        "month": "Posts of {year}-{month:02d}",
        "results": "Search results for “{}”",
        "nothing_found": "Nothing found.",
        "in_archives": "In the list archives",
    },
}


def summary(markup: str) -> str:
    """The start of a post's text, for og:description."""
    text = _SPACE.sub(" ", html.unescape(_TAGS.sub(" ", markup))).strip()
    return text if len(text) <= DESCRIPTION_LENGTH else text[: DESCRIPTION_LENGTH - 1].rstrip() + "…"


def _safe_media_path(path: str) -> bool:
    """A media path as stored: relative, with / between names, none of them empty, `.` or `..`."""
    return bool(path) and "\\" not in path and all(part not in {"", ".", ".."} for part in path.split("/"))


class Site:
    """The pages of the blog, drawn into CACHE as they are asked for."""

    def __init__(
        self, settings: Settings, database: Database, cache: PageCache, comments: Comments | None = None
    ) -> None:
        """COMMENTS, when given, puts each post's published comments and the form to write one on its page."""
        self._comments = comments
        self._blog = settings.blog
        self._database = database
        self._cache = cache
        self._info = SiteInfo.of(settings)
        self._words = WORDS.get(self._info.words, WORDS["en"])

    def routes(self) -> list[Route]:
        """The one route that takes every path no other route has: it must come last."""
        return [Route("/{path:path}", self)]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI, so that Starlette's Route hands over the request as it came (and Page.send answers it). Readers
        who miss one page together wait for one drawing of it (PageCache.drawn)."""
        path = unicodedata.normalize("NFC", scope["path"])
        if scope["method"] in ("GET", "HEAD"):
            page = await self._cache.drawn(path, lambda: self._answer(path, read=True))
        else:
            page, _ = await self._answer(path, read=False)
        await page.send(scope, send)

    async def _answer(self, path: str, read: bool) -> tuple[Page, bool]:
        """The page at PATH, or what a request that does not READ gets (405, or 404), and whether to keep it."""
        if path.startswith("/media/"):
            name = path.removeprefix("/media/")
            found = (
                await self._database.query(lambda s: site.media(s, name), snapshot=False)
                if _safe_media_path(name)
                else None
            )
            if not read:
                return (NOT_FOUND if found is None else NOT_ALLOWED), False
            if found is None:
                return self._not_found(path), False
            return await self._media(name, found), found.size <= LARGE_MEDIA
        draw = await self._find(path)
        if not read:
            return (NOT_FOUND if draw is None else NOT_ALLOWED), False
        if draw is None:
            return self._not_found(path), False  # not kept: any path may be asked for
        return await draw(), True

    async def _find(self, path: str) -> Draw | None:
        """What draws the page at PATH, found with the queries that say whether there is one; None: there is
        none. A POST learns its 405 or 404 from this alone: it never draws a page."""
        if path == "/site.css":
            return self._ready(lambda: self._stylesheet)
        if found := _OLDER.fullmatch(path):
            base, number = found.group(1), int(found.group(2))
            if number == 1:
                return self._moved(base) if await self._listing(base, 1) else None
            return await self._listing(base, number) if number > 1 else None
        if listing := await self._listing(path, 1):
            return listing
        post = await self._database.query(lambda s: site.at_url(s, time.time(), path), snapshot=True)
        if post is not None:
            return lambda: self._post(post)
        moved = await self._database.query(lambda s: blog.redirect_for(s, path), snapshot=False)
        if moved is None and not path.endswith("/"):  # a post's URL typed without its last slash
            if (
                await self._database.query(lambda s: site.at_url(s, time.time(), path + "/"), snapshot=False)
                is not None
            ):
                moved = path + "/"
        return self._moved(moved) if moved is not None else None

    async def _listing(self, base: str, number: int) -> Draw | None:
        """Page NUMBER of the posts listed at BASE (the home page, a tag's or a month's archive), posts_per_page
        of them, with links to the newer and older pages; None when BASE lists nothing or has no such page."""
        size = self._blog.posts_per_page
        offset, limit = (number - 1) * size, size + 1
        heading: str | None = None
        context: dict[str, Any] = {}
        if base == "/":
            posts = await self._database.query(lambda s: site.newest(s, time.time(), offset, limit))
            if number > 1 and not posts:
                return None
        elif found := _TAG.fullmatch(base):
            tag = found.group(1)
            posts = await self._database.query(lambda s: site.tagged(s, time.time(), tag, offset, limit))
            heading = self._words["tag"].format(tag)
            context["feed"] = path_url(tag_path(tag)) + "feed"  # its own Atom and RSS, in <head>
        elif found := _MONTH.fullmatch(base):
            year, month = int(found.group(1)), int(found.group(2))
            if not 1 <= month <= 12 or not 1 < year < 9999:  # the month after must be a date too
                return None
            start = self._timestamp(year, month)
            end = self._timestamp(year + month // 12, month % 12 + 1)
            posts = await self._database.query(lambda s: site.between(s, time.time(), start, end, offset, limit))
            heading = self._words["month"].format(year=year, month=month)
        else:
            return None
        if heading is not None and not posts:
            return None
        older = f"{base}page/{number + 1}/" if len(posts) > size else None
        newer = None if number == 1 else base if number == 2 else f"{base}page/{number - 1}/"
        context.update(posts=posts[:size], number=number, older=older, newer=newer)
        own = base if number == 1 else f"{base}page/{number}/"
        if heading is None:
            return self._ready(lambda: self._draw("home.html", own, description=self._blog.description, **context))
        return self._ready(lambda: self._draw("archive.html", own, heading=heading, og_title=heading, **context))

    def _timestamp(self, year: int, month: int) -> float:
        """The first instant of MONTH of YEAR in the blog's time zone."""
        zone = self._info.zone
        start = datetime(year, month, 1, tzinfo=zone) if zone else datetime(year, month, 1)
        return start.timestamp()

    async def _post(self, post: site.Shown) -> Page:
        """A post's page carries its comments and the form (COMMENTS given); a static page neither."""
        written: dict[str, Any] = {}
        comments = self._comments
        if comments is not None and post.kind == site.POST:
            found = await self._database.query(lambda s: stored_comments.published(s, post.id))
            written = comments.context(found, post.id)
        return self._draw(
            "post.html" if post.kind == site.POST else "page.html",
            post.url,
            post=post,
            og_title=post.title,
            og_type="article" if post.kind == site.POST else "website",
            description=summary(post.html),
            per_response=comments.cookie_headers if written and comments is not None else None,
            **written,
        )

    async def _media(self, path: str, found: site.Media) -> Page:
        """The file at PATH, read in a thread: a photo's megabytes would hold up every other reader. A small one
        is read whole and kept; a larger one is read part by part as it is sent, never whole."""

        async def read(offset: int, length: int) -> bytes:
            return await asyncio.to_thread(self._database.query_now, lambda s: site.media_part(s, path, offset, length))

        etag = found.digest[:32]
        if found.size > LARGE_MEDIA:
            return Page.of(200, found.content_type, b"", MEDIA_CACHE, etag=etag, ranges=True, reader=(read, found.size))
        data = await read(0, found.size)
        return Page.of(200, found.content_type, data, MEDIA_CACHE, etag=etag, ranges=True)

    def _moved(self, path: str) -> Draw:
        """301 to PATH: an old URL kept working after a slug or date changed."""
        return self._ready(lambda: Page.of(301, HTML, b"", headers=(("location", path_url(path)),), compress=False))

    @staticmethod
    def _ready(make: Callable[[], Page]) -> Draw:
        """A Draw of a page made without a query."""

        async def draw() -> Page:
            return make()

        return draw

    def _not_found(self, path: str) -> Page:
        """A readable 404 that names the path asked for and leads home: a broken link's reader is not stranded."""
        return self._draw("not_found.html", None, status=404, path=path)

    @cached_property
    def _stylesheet(self) -> Page:
        """Read from the package once, with the first page that asks for it."""
        return Page.of(200, "text/css; charset=utf-8", stylesheet.PATH.read_bytes(), MEDIA_CACHE)

    @cached_property
    def _site(self) -> dict[str, Any]:
        """The templates' `site`, made at the first page drawn (stylesheet.version() reads the file)."""
        return self._info.context()

    @cached_property
    def _environment(self) -> Environment:
        """The pages' templates, with the filters they use; loaded with the first page drawn."""
        environment = templates().env.overlay()
        environment.filters.update(
            link=path_url, tag_path=tag_path, month_path=self._info.month_path, day=self._info.day, iso=self._info.iso
        )
        return environment

    def _draw(
        self, name: str, own: str | None, status: int = 200, per_response: PerResponse | None = None, **context: Any
    ) -> Page:
        """The template NAME filled in; OWN, the page's path, makes its canonical URL."""
        return Page.of(status, HTML, self.html(name, own, **context), per_response=per_response)

    def html(self, name: str, own: str | None, **context: Any) -> bytes:
        """The template NAME (under templates/site/) filled in, on the site's layout: also for a page that is
        never kept (web/search.py)."""
        canonical = self._info.url(own) if own is not None else None
        template = self._environment.get_template(f"site/{name}")
        return template.render(site=self._site, words=self._words, canonical=canonical, **context).encode()
