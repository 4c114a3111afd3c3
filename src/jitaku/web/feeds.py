"""The blog's feeds (Atom 1.0 and RSS 2.0, site-wide and per tag, and an Atom feed of new comments), its
sitemap.xml and robots.txt: what feed readers and search engines fetch, with absolute links from `[web] url`.

Each is built once and kept in memory until the blog changes (the blog_version counter, store/blog.py, asked at
most once a second), and carries an ETag, so that a feed reader polling every few minutes costs a comparison.
The XML is made with ElementTree, which escapes every text and attribute; it is imported at the first feed, not
by the idle daemon.
"""

from __future__ import annotations

import hashlib
import re
import time
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate
from typing import TYPE_CHECKING, Literal

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from jitaku.config import Settings
from jitaku.store import Database
from jitaku.store import blog as blog_store
from jitaku.store import feeds as feed_store
from jitaku.web.paths import absolute, tag_path

if TYPE_CHECKING:
    from xml.etree.ElementTree import Element

FEED_SIZE = 20  # entries in each feed: the newest
CHECK_EVERY = 1.0  # seconds between two looks at blog_version: a change made with the CLI shows within 2 s

ATOM = "application/atom+xml; charset=utf-8"
RSS = "application/rss+xml; charset=utf-8"
XML = "application/xml; charset=utf-8"
TEXT = "text/plain; charset=utf-8"

_ATOM_NS = "http://www.w3.org/2005/Atom"
_SITEMAP_NS = "http://www.sitemaps.org/schemas/sitemap/0.9"
_XML_NS = "{http://www.w3.org/XML/1998/namespace}"
# XML 1.0 §2.2 allows no other control characters, nor these: a post's text with one would break the whole feed
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_COMMENTS_TITLE = {"ja": "コメント", "en": "Comments"}


@dataclass(frozen=True)
class Site:
    """What every feed says of the site: where it is, its name and its language."""

    base: str  # `[web] url`, without a trailing slash
    title: str
    description: str
    language: str

    @classmethod
    def of(cls, settings: Settings) -> Site:
        blog = settings.blog
        return cls(settings.web_url, blog.title or settings.mail_hostname, blog.description, blog.language)

    def url(self, path: str) -> str:
        """PATH (Unicode text, as posts.url keeps it) as an absolute URL, percent-encoded."""
        return absolute(self.base, path)


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


def post_entries(site: Site, posts: Sequence[feed_store.FeedPost]) -> list[Entry]:
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


def comment_entries(site: Site, comments: Sequence[feed_store.FeedComment]) -> list[Entry]:
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


def atom(site: Site, title: str, self_url: str, alternate: str, entries: Sequence[Entry]) -> bytes:
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


def rss(site: Site, title: str, self_url: str, alternate: str, entries: Sequence[Entry]) -> bytes:
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


def sitemap(site: Site, published: feed_store.Published) -> bytes:
    """sitemaps.org's urlset: the home page, every published post and page, every tag's archive."""
    from xml.etree.ElementTree import Element, SubElement

    urlset = Element("urlset", xmlns=_SITEMAP_NS)
    newest = max((at for _, at in published.posts), default=None)
    paths = [("/", newest), *published.posts, *((tag_path(tag), at) for tag, at in published.tags)]
    for path, at in paths:
        url = SubElement(urlset, "url")
        _text(url, "loc", site.url(path))
        if at is not None:
            _text(url, "lastmod", _rfc3339(at))
    return _document(urlset)


def robots(site: Site) -> bytes:
    """Everything may be read but the owner's pages and the API; where the sitemap is."""
    lines = ["User-agent: *", "Allow: /", "Disallow: /admin/", "Disallow: /api/"]
    return "\n".join([*lines, f"Sitemap: {site.url('/sitemap.xml')}", ""]).encode()


def _text(parent: Element, tag: str, text: str, **attributes: str) -> Element:
    from xml.etree.ElementTree import SubElement

    element = SubElement(parent, tag, attributes)
    element.text = _clean(text)
    return element


def _clean(text: str) -> str:
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
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Rendered:
    body: bytes
    media_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> Rendered:
        return cls(body, media_type, f'"{hashlib.sha256(body).hexdigest()[:32]}"')

    def response(self, request: Request) -> Response:
        # no-cache: a client asks again each time, and gets a 304 while the blog has not changed
        headers = {"etag": self.etag, "cache-control": "no-cache"}
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


class Cache:
    """What was rendered, by request path, for as long as blog_version stays where it was."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._kept: dict[str, Rendered] = {}
        self._version: int | None = None
        self._checked = -CHECK_EVERY

    async def get(self, key: str, render: Callable[[], Awaitable[Rendered | None]]) -> Rendered | None:
        """What is kept for KEY, or what RENDER makes of it now (None: not found, which is not kept)."""
        await self._check()
        kept = self._kept.get(key)
        if kept is None:
            # Read after the version: what is kept is never older than the version it is kept under
            kept = await render()
            if kept is not None:
                self._kept[key] = kept
        return kept

    async def _check(self) -> None:
        now = time.monotonic()
        if now - self._checked < CHECK_EVERY:
            return
        self._checked = now
        version = await self._database.query(blog_store.current_version, snapshot=False)
        if version != self._version:
            self._kept.clear()
            self._version = version


def routes(settings: Settings, database: Database) -> list[Route]:
    """The feeds, sitemap.xml and robots.txt, for web/status.py's app; each answer kept in one Cache."""
    site = Site.of(settings)
    cache = Cache(database)

    async def posts_feed(tag: str | None, kind: Literal["atom", "rss"]) -> Rendered | None:
        found = await database.query(lambda s: feed_store.newest_posts(s, FEED_SIZE, tag))
        if tag is None:
            title, alternate, base = site.title, site.url("/"), "/feed"
        elif not found:
            return None  # a tag no published post has
        else:
            title, alternate, base = f"{tag} | {site.title}", site.url(tag_path(tag)), f"{tag_path(tag)}feed"
        entries = post_entries(site, found)
        if kind == "atom":
            return Rendered.of(atom(site, title, site.url(f"{base}.atom"), alternate, entries), ATOM)
        return Rendered.of(rss(site, title, site.url(f"{base}.rss"), alternate, entries), RSS)

    async def comments_feed() -> Rendered:
        found = await database.query(lambda s: feed_store.newest_comments(s, FEED_SIZE))
        name = _COMMENTS_TITLE.get(site.language.split("-")[0].lower(), _COMMENTS_TITLE["en"])
        entries = comment_entries(site, found)
        feed = atom(site, f"{name} | {site.title}", site.url("/comments/feed.atom"), site.url("/"), entries)
        return Rendered.of(feed, ATOM)

    async def sitemap_xml() -> Rendered:
        return Rendered.of(sitemap(site, await database.query(feed_store.published)), XML)

    async def robots_txt() -> Rendered:
        return Rendered.of(robots(site), TEXT)

    def serve(render: Callable[[Request], Awaitable[Rendered | None]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            found = await cache.get(request.url.path, lambda: render(request))
            if found is None:
                return PlainTextResponse("No such tag.\n", status_code=404)
            return found.response(request)

        return endpoint

    def tag_of(request: Request) -> str:
        # Stored NFC (store/schema.py): a Mac may send a tag's kana decomposed
        return unicodedata.normalize("NFC", request.path_params["tag"])

    return [
        Route("/feed.atom", serve(lambda _: posts_feed(None, "atom"))),
        Route("/feed.rss", serve(lambda _: posts_feed(None, "rss"))),
        Route("/tags/{tag:path}/feed.atom", serve(lambda request: posts_feed(tag_of(request), "atom"))),
        Route("/tags/{tag:path}/feed.rss", serve(lambda request: posts_feed(tag_of(request), "rss"))),
        Route("/comments/feed.atom", serve(lambda _: comments_feed())),
        Route("/sitemap.xml", serve(lambda _: sitemap_xml())),
        Route("/robots.txt", serve(lambda _: robots_txt())),
    ]
