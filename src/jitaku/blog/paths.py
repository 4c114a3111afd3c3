"""The site's paths as they go into links: one way of quoting them for the pages, the feeds, the sitemap and
the import's links to media, so that a link and the page it names always agree. In blog/, beside permalink.py
which makes a post's URL, as the import uses it too and the web package reads the blog's, not the other way.

Paths are kept as Unicode text (posts.url, media.path, tags, all NFC), as uvicorn hands them to the site
decoded; they are percent-encoded only here, once, when they become an href, a Location or an absolute URL.
"""

from __future__ import annotations

import re
from urllib.parse import quote

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
