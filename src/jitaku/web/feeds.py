"""The blog's feeds (Atom 1.0 and RSS 2.0, site-wide and per tag, and an Atom feed of new comments), its
sitemap.xml and robots.txt: what feed readers and search engines fetch, with absolute links from `[web] url`.

Each is built once and kept with the site's pages (web/page_cache.py) until the blog changes, gzipped and with an
ETag, so that a feed reader polling every few minutes costs a comparison.
The XML is made with ElementTree, which escapes every text and attribute; it is imported at the first feed, not
by the idle daemon.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import TYPE_CHECKING, Literal

from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from jitaku.blog.paths import tag_path
from jitaku.config import Settings
from jitaku.store import Database
from jitaku.store import feeds as feed_store
from jitaku.store import site as site_store
from jitaku.web import comment_words
from jitaku.web.page_cache import TEXT, Page, PageCache
from jitaku.web.site_info import SiteInfo

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

FEED_SIZE = 20  # entries in each feed: the newest

ATOM = "application/atom+xml; charset=utf-8"
RSS = "application/rss+xml; charset=utf-8"
XML = "application/xml; charset=utf-8"

_ATOM_NS = "http://www.w3.org/2005/Atom"
_SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"
# XML 1.0 §2.2 allows no other control characters, nor these: a post's text with one would break the whole feed
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


@dataclass(frozen=True)
class Entry:
    """One item of a feed, a post or a comment alike."""

    link: str  # absolute; also the entry's id, which never changes while its URL stays
    title: str
    html: str
    published: float
    updated: float
    categories: tuple[str, ...] = ()
    author: str = ""  # "" for the site's own name
    author_uri: str = ""


def post_entries(site: SiteInfo, posts: Sequence[site_store.Shown]) -> list[Entry]:
    """Each post at its absolute URL, its tags as categories; updated never before published."""
    return [
        Entry(
            site.url(post.url),
            post.title,
            post.html,
            post.published_at,
            max(post.updated_at, post.published_at),
            post.tags,
        )
        for post in posts
    ]


def comment_entries(site: SiteInfo, comments: Sequence[feed_store.FeedComment]) -> list[Entry]:
    """Each comment at its anchor on its post's page, titled with its writer and the post."""
    return [
        Entry(
            f"{site.url(comment.post_url)}#comment-{comment.id}",
            f"{comment.author}: {comment.post_title}",
            comment.html,
            comment.created_at,
            comment.created_at,
            author=comment.author,
            # A reader's own link, only as a web address: a javascript: one would be followed by some readers
            author_uri=comment.url if comment.url.startswith(("https://", "http://")) else "",
        )
        for comment in comments
    ]


def atom(site: SiteInfo, title: str, self_url: str, alternate: str, entries: Sequence[Entry]) -> bytes:
    """An Atom 1.0 feed (RFC 4287) of ENTRIES, the whole post in each as HTML."""
    from xml.etree.ElementTree import Element, SubElement

    feed = Element("feed", {"xmlns": _ATOM_NS, f"{_XML_NS}lang": site.language, f"{_XML_NS}base": site.base + "/"})
    _text(feed, "title", title)
    if site.description:
        _text(feed, "subtitle", site.description)
    SubElement(feed, "link", rel="self", type=ATOM.partition(";")[0], href=self_url)
    SubElement(feed, "link", rel="alternate", type="text/html", href=alternate)
    _text(feed, "id", self_url)
    _text(feed, "updated", _rfc3339(_newest(entries)))
    _text(SubElement(feed, "author"), "name", site.title)
    for item in entries:
        # Relative links in a post's HTML (its photos) are resolved against the post's own URL
        entry = SubElement(feed, "entry", {f"{_XML_NS}base": item.link})
        _text(entry, "title", item.title)
        SubElement(entry, "link", rel="alternate", type="text/html", href=item.link)
        _text(entry, "id", item.link)
        _text(entry, "published", _rfc3339(item.published))
        _text(entry, "updated", _rfc3339(item.updated))
        if item.author:
            author = SubElement(entry, "author")
            _text(author, "name", item.author)
            if item.author_uri:
                _text(author, "uri", item.author_uri)
        for tag in item.categories:
            SubElement(entry, "category", term=_clean(tag))
        _text(entry, "content", item.html, type="html")
    return _document(feed)


def rss(site: SiteInfo, title: str, self_url: str, alternate: str, entries: Sequence[Entry]) -> bytes:
    """An RSS 2.0 feed of ENTRIES, with Atom's rel="self" link as the RSS Advisory Board recommends."""
    from xml.etree.ElementTree import Element, SubElement

    document = Element("rss", {"version": "2.0", "xmlns:atom": _ATOM_NS})
    channel = SubElement(document, "channel")
    _text(channel, "title", title)
    _text(channel, "link", alternate)
    _text(channel, "description", site.description or site.title)
    _text(channel, "language", site.language)
    _text(channel, "lastBuildDate", formatdate(_newest(entries), usegmt=True))
    SubElement(channel, "atom:link", rel="self", type=RSS.partition(";")[0], href=self_url)
    for entry in entries:
        item = SubElement(channel, "item")
        _text(item, "title", entry.title)
        _text(item, "link", entry.link)
        _text(item, "guid", entry.link, isPermaLink="true")
        _text(item, "pubDate", formatdate(entry.published, usegmt=True))
        for tag in entry.categories:
            _text(item, "category", tag)
        _text(item, "description", entry.html)
    return _document(document)


def sitemap(site: SiteInfo, published: feed_store.Published) -> bytes:
    """sitemaps.org's urlset: the home page, every published post and page, every tag's and month's archive."""
    from xml.etree.ElementTree import Element, SubElement

    urlset = Element("urlset", xmlns=_SITEMAP_NS)
    newest = max((at for _, at in published.posts), default=None)
    months: dict[str, float] = {}
    for published_at, updated_at in published.dated:
        month = site.month_path(published_at)
        months[month] = max(months.get(month, updated_at), updated_at)
    tags = ((tag_path(tag), at) for tag, at in published.tags)
    paths = [("/", newest), *published.posts, *tags, *months.items()]
    for path, at in paths:
        url = SubElement(urlset, "url")
        _text(url, "loc", site.url(path))
        if at is not None:
            _text(url, "lastmod", _rfc3339(at))
    return _document(urlset)


def robots(site: SiteInfo) -> bytes:
    """Everything may be read but the owner's pages and the API; where the sitemap is."""
    lines = ["User-agent: *", "Allow: /", "Disallow: /admin/", "Disallow: /api/"]
    return "\n".join([*lines, f"Sitemap: {site.url('/sitemap.xml')}", ""]).encode()


def _text(parent: Element, tag: str, text: str, **attributes: str) -> Element:
    from xml.etree.ElementTree import SubElement

    element = SubElement(parent, tag, attributes)
    element.text = _clean(text)
    return element


def _clean(text: str) -> str:
    """TEXT without the characters XML 1.0 forbids: one in a post would make the whole feed unreadable."""
    return _NOT_XML.sub("", text)


def _document(root: Element) -> bytes:
    from xml.etree.ElementTree import tostring

    # encoding="utf-8": Japanese stays as UTF-8 text, not character references
    document: bytes = tostring(root, encoding="utf-8", xml_declaration=True)
    return document


def _newest(entries: Sequence[Entry]) -> float:
    """The feed's own updated time: its newest entry's, or the epoch for an empty feed (still a valid date)."""
    return max((entry.updated for entry in entries), default=0.0)


def _rfc3339(timestamp: float) -> str:
    """Atom's and the sitemap's date, in UTC."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Served:
    """ASGI, for a Route: the answer RENDER makes of a request, kept in the site's PageCache (whose FastPages then
    answers the next GET before Starlette) unless it is None, a tag no post has, which gets a 404."""

    def __init__(self, cache: PageCache, render: Callable[[Scope], Awaitable[Page | None]]) -> None:
        self._cache = cache
        self._render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Feed readers that miss one feed together wait for one build of it (PageCache.drawn)."""

        async def draw() -> tuple[Page, bool]:
            page = await self._render(scope)
            return (Page.of(404, TEXT, b"No such tag.\n"), False) if page is None else (page, True)

        page = await self._cache.drawn(scope["path"], draw)
        await page.send(scope, send)


def routes(settings: Settings, database: Database, cache: PageCache) -> list[Route]:
    """The feeds, sitemap.xml and robots.txt, for web/status.py's app; each answer kept in CACHE with the site's
    pages, and dropped with them when the blog changes."""
    site = SiteInfo.of(settings)

    # Each feed and the sitemap is read and built (XML, gzip) in a thread, as the site's media are: the sitemap
    # reads every post, and after each comment every feed reader's poll builds its feed again.
    def posts_feed(tag: str | None, kind: Literal["atom", "rss"]) -> Page | None:
        if tag is None:
            found = database.query_now(lambda s: site_store.newest(s, time.time(), 0, FEED_SIZE))
            title, alternate, base = site.title, site.url("/"), "/feed"
        else:
            found = database.query_now(lambda s: site_store.tagged(s, time.time(), tag, 0, FEED_SIZE))
            if not found:
                return None  # a tag no published post has
            title, alternate, base = f"{tag} | {site.title}", site.url(tag_path(tag)), f"{tag_path(tag)}feed"
        entries = post_entries(site, found)
        if kind == "atom":
            return Page.of(200, ATOM, atom(site, title, site.url(f"{base}.atom"), alternate, entries))
        return Page.of(200, RSS, rss(site, title, site.url(f"{base}.rss"), alternate, entries))

    def comments_feed() -> Page:
        found = database.query_now(lambda s: feed_store.newest_comments(s, time.time(), FEED_SIZE))
        name = comment_words.alone("heading", site.language)
        entries = comment_entries(site, found)
        feed = atom(site, f"{name} | {site.title}", site.url("/comments/feed.atom"), site.url("/"), entries)
        return Page.of(200, ATOM, feed)

    def sitemap_xml() -> Page:
        return Page.of(200, XML, sitemap(site, database.query_now(lambda s: feed_store.published(s, time.time()))))

    async def robots_txt(_: Scope) -> Page:
        return Page.of(200, TEXT, robots(site))

    def tag_of(scope: Scope) -> str:
        tag: str = scope["path_params"]["tag"]  # NFC: FastPages answers any other spelling 301 to it
        return tag

    def route(path: str, render: Callable[[Scope], Awaitable[Page | None]]) -> Route:
        return Route(path, _Served(cache, render), methods=["GET"])

    def built(build: Callable[[], Page | None]) -> Awaitable[Page | None]:
        return asyncio.to_thread(build)

    return [
        route("/feed.atom", lambda _: built(lambda: posts_feed(None, "atom"))),
        route("/feed.rss", lambda _: built(lambda: posts_feed(None, "rss"))),
        route("/tags/{tag}/feed.atom", lambda scope: built(lambda: posts_feed(tag_of(scope), "atom"))),
        route("/tags/{tag}/feed.rss", lambda scope: built(lambda: posts_feed(tag_of(scope), "rss"))),
        route("/comments/feed.atom", lambda _: built(comments_feed)),
        route("/sitemap.xml", lambda _: built(sitemap_xml)),
        route("/robots.txt", robots_txt),
    ]
