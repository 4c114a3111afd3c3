"""The site's paths as they go into links: one way of quoting them for the pages, the feeds, the sitemap and
the import's links to media, so that a link and the page it names always agree. In blog/, beside permalink.py
which makes a post's URL, as the import uses it too and the web package reads the blog's, not the other way.

Paths are kept as Unicode text (posts.url, media.path, tags, all NFC), as uvicorn hands them to the site
decoded; they are percent-encoded only here, once, when they become an href, a Location or an absolute URL.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote

# What a path leaves as it is besides letters and digits: RFC 3986's pchar and "/"; anything else (Japanese,
# a space, "%", "?", "#") is sent as UTF-8 %XX
SAFE = "/-._~!$&'()*+,;=:@"
_LEADING_SLASHES = re.compile(r"^/{2,}")


def path_url(path: str) -> str:
    """PATH (Unicode text) as it goes in an href or a Location header. A run of leading slashes is one: a
    browser reads `//evil.example/` as another site, so no link or redirect made here can leave this one."""
    return quote(_LEADING_SLASHES.sub("/", path), safe=SAFE)


def tag_path(tag: str) -> str:
    """A tag's archive, as Unicode text (path_url quotes it). A tag never holds "/" (blog/source.py refuses
    one): uvicorn decodes %2F, so the archive of "TCP/IP" could never be reached."""
    return f"/tags/{tag}/"


def absolute(base: str, path: str) -> str:
    """PATH on the site at BASE (`[web] url`, without its trailing slash), for a canonical link, a feed or the
    sitemap."""
    return base + path_url(path)


class PathRefused(ValueError):
    """Text that is not a path on this site as a redirect names one; the message says what is wrong."""


def site_path(text: str, what: str) -> str:
    """TEXT as the path the site looks up: percent-encoding decoded and NFC, as posts' URLs are kept. PathRefused,
    naming it WHAT, unless it is a path on this site ("/..."), without a ?query or #fragment the lookup never sees.
    `jitaku web redirect` and the admin's redirects page check what they are given here, alike."""
    if not text.startswith("/") or text.startswith("//"):  # "//host/..." is another site's URL
        raise PathRefused(f"{what} must be a path on this site, starting with one /: {text!r}")
    if "?" in text or "#" in text:
        raise PathRefused(f"{what} must be a path alone, without ?query or #fragment: {text!r}")
    try:
        path = unicodedata.normalize("NFC", unquote(text, errors="strict"))
    except UnicodeDecodeError:
        raise PathRefused(f"{what} has a %-escape that is not UTF-8: {text!r}") from None
    if any(character.isspace() or ord(character) < 32 or ord(character) == 127 for character in path):
        raise PathRefused(f"{what} must not hold spaces or control characters: {text!r}")
    return path
