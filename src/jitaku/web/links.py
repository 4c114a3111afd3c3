"""`jitaku web check-links`: crawl the running site as a reader would, from its home page and the URLs its
sitemap lists, and find every internal link that does not end in a 200: a page, a photo, a stylesheet, a feed.

Links are read from <a href>, <img src> and <link href> with the standard library's HTML parser. A link is
internal when it names the site's own host (the address crawled, or the public one of `[web] url`, checked at the
address crawled); the crawl reads only the pages a reader sees (not /admin/ nor /api/), and stops at a bound.
For the CLI alone: httpx is not the daemon's.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from html.parser import HTMLParser
from urllib.parse import SplitResult, quote, urljoin, urlsplit, urlunsplit

import httpx

from jitaku.config import Listen

MAX_PAGES = 2000
TIMEOUT = 10.0
SITEMAP = "/sitemap.xml"
MAX_REDIRECTS = 10
_NOT_READ = ("/admin/", "/api/")  # the owner's pages and the API: not what a reader follows (robots.txt)
_LINKED = {"a": "href", "img": "src", "link": "href"}
# What a browser sends of a link as it is written: RFC 3986's reserved and unreserved characters and "%"
_AS_SENT = "/%:@!$&'()*+,;=-._~[]"


class CrawlError(Exception):
    """The site does not answer at all: nothing could be checked."""


@dataclass(frozen=True)
class Broken:
    """A link that does not end in a 200, and where it is linked from."""

    link: str  # a path on the site, with its query, as it was linked
    answer: str  # "404", or what went wrong ("timed out")
    linked_from: tuple[str, ...]  # the pages that link to it, the first found first


@dataclass(frozen=True)
class Chain:
    """A link that ends in a 200 only after more than one redirect: it works, but each hop costs a reader."""

    link: str
    hops: int
    linked_from: str


@dataclass
class Report:
    """What a crawl found."""

    checked: int = 0
    broken: list[Broken] = field(default_factory=list)
    chains: list[Chain] = field(default_factory=list)
    stopped: bool = False  # MAX_PAGES or the time limit reached: links were left unchecked


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "base" and values.get("href") and self.base is None:
            self.base = values["href"]
        elif (name := _LINKED.get(tag)) and (value := values.get(name)):
            self.found.append(value.strip())


def links_in(page: str, page_url: str) -> list[str]:
    """The absolute URLs PAGE links to, without their #fragments."""
    parser = _Links()
    parser.feed(page)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    return [urljoin(base, link).partition("#")[0] for link in parser.found if not link.startswith("#")]


def check_links(
    base: str,
    same_site: Collection[str] = (),
    *,
    max_pages: int = MAX_PAGES,
    timeout: float = TIMEOUT,
    verify: bool = True,
    time_limit: float | None = None,
) -> Report:
    """Crawl the site at BASE ("http://host:port") from / and its sitemap's URLs. SAME_SITE: other hosts
    ("host" or "host:port") whose links are the site's own, checked at BASE. TIME_LIMIT (seconds) stops the
    crawl as MAX_PAGES does, for a caller who waits for the report (the admin's button)."""
    deadline = None if time_limit is None else time.monotonic() + time_limit
    origin = urlsplit(base)
    hosts = {origin.netloc.lower(), *(host.lower() for host in same_site)}
    names = {urlsplit(f"//{host}").hostname for host in hosts}
    report = Report()
    referrers: dict[str, list[str]] = {}
    waiting: deque[str] = deque()

    def found(url: str, page: str) -> None:
        """Queue URL, linked from PAGE, when it is the site's own and new."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.netloc.lower() not in hosts:
            return
        path = _key(parts)
        if path not in referrers:
            referrers[path] = []
            waiting.append(path)
        if page not in referrers[path]:
            referrers[path].append(page)

    def get(path: str, first: bool = False) -> Answer | str:
        return _get(client, _at(origin, path), origin, hosts, first)

    with httpx.Client(timeout=timeout, verify=verify) as client:
        home = get("/", first=True)
        found(_at(origin, "/"), "(start)")
        for url in _sitemap_urls(get(SITEMAP)):
            found(url, SITEMAP)
        while waiting:
            if report.checked >= max_pages or (deadline is not None and time.monotonic() > deadline):
                report.stopped = True
                break
            path = waiting.popleft()
            answer = home if path == "/" else get(path)
            report.checked += 1
            if isinstance(answer, str):
                report.broken.append(Broken(path, answer, tuple(referrers[path])))
                continue
            response = answer.response
            if response.status_code != 200:
                report.broken.append(Broken(path, str(response.status_code), tuple(referrers[path])))
                continue
            if answer.hops > 1:
                report.chains.append(Chain(path, answer.hops, referrers[path][0]))
            page = _key(urlsplit(str(response.url)))
            if answer.hops:  # the page is read once, as where it is now
                if page in referrers:
                    continue
                referrers[page] = [path]
            if (
                response.url.host.lower() in names  # a link that redirects to another site: that site is not read
                and not page.startswith(_NOT_READ)
                and response.headers.get("content-type", "").startswith("text/html")
            ):
                for link in links_in(response.text, str(response.url)):
                    found(link, page)
    return report


def reach(listen: Listen) -> tuple[str, bool]:
    """The site at LISTEN (a `[web] listen` address of the running daemon) as a URL, and whether to check its
    certificate; a wildcard is reached on loopback. Port 443 speaks HTTPS with this server's own certificate,
    not checked on a loopback address."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen.host, listen.host)
    shown = f"[{host}]" if ":" in host else host
    if listen.port == 443:
        return f"https://{shown}", False
    return f"http://{shown}:{listen.port}", True


def _key(parts: SplitResult) -> str:
    """The path and query as a browser sends them: what is not ASCII (/tags/日記/) percent-encoded as UTF-8, an
    escape already there left as it is, so that a link quoted twice (/tags/%25E6.../) is asked for as it is and
    shows as broken."""
    path = quote(parts.path or "/", safe=_AS_SENT)
    return path + (f"?{quote(parts.query, safe=_AS_SENT + '?')}" if parts.query else "")


def _at(origin: SplitResult, path: str) -> str:
    """PATH (with its query) at the address crawled."""
    address, _, query = path.partition("?")
    return urlunsplit((origin.scheme, origin.netloc, address, query, ""))


@dataclass(frozen=True)
class Answer:
    """A link's last response after its redirects."""

    response: httpx.Response  # the last, after the redirects
    hops: int  # redirects followed


def _get(client: httpx.Client, url: str, origin: SplitResult, hosts: set[str], first: bool) -> Answer | str:
    """URL's answer after its redirects, or what went wrong. A redirect to one of the site's HOSTS is
    followed at the address crawled, as a link by that name is: the public name may not reach this server from
    here. At the FIRST request, a site that does not answer at all is a CrawlError."""
    hops = 0
    try:
        while True:
            response = client.get(url)
            if not response.is_redirect:
                return Answer(response, hops)
            if hops == MAX_REDIRECTS:
                return f"more than {MAX_REDIRECTS} redirects"
            hops += 1
            target = urlsplit(urljoin(str(response.url), response.headers["location"]))
            url = _at(origin, _key(target)) if target.netloc.lower() in hosts else urlunsplit(target)
    except httpx.TimeoutException:
        if first:
            raise CrawlError(f"{url} did not answer within the timeout") from None
        return "timed out"
    except httpx.HTTPError as error:
        if first:
            raise CrawlError(f"cannot reach {url}: {error}") from None
        return f"failed: {error}"


def _sitemap_urls(answer: Answer | str) -> list[str]:
    """The <loc> URLs of the site's sitemap.xml; none when it has none."""
    from xml.etree import ElementTree

    if isinstance(answer, str) or answer.response.status_code != 200:
        return []
    try:
        root = ElementTree.fromstring(answer.response.content)
    except ElementTree.ParseError:
        return []
    return [(loc.text or "").strip() for loc in root.iter() if loc.tag.rpartition("}")[2] == "loc"]
