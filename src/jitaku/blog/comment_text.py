"""What a reader wrote, as HTML that can do nothing but be read: a small Markdown subset (paragraphs,
emphasis, code, links, lists, quotes) by markdown-it-py with raw HTML off, then nh3 (Ammonia) with an
allow-list, so that a script tag, a `javascript:` link, an event attribute, SVG or a style trick arrives as
text or not at all. Imported where a comment is written, never by the idle daemon (nh3 is a native library)."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from markdown_it import MarkdownIt

TAGS = {"p", "br", "em", "strong", "code", "pre", "a", "ul", "ol", "li", "blockquote"}
SCHEMES = {"http", "https", "mailto"}
# Links a reader's comment may have and still be published at once; more hold it for the owner (issue 21)
MAX_LINKS = 2
_LINK = re.compile(r"(?:https?://|www\.|mailto:)", re.IGNORECASE)


@cache
def _parser() -> MarkdownIt:
    from markdown_it import MarkdownIt

    # no headings, rules, images or tables in a comment: each would let a reader dress up as the page
    parser = MarkdownIt("commonmark", {"html": False}).disable(["heading", "lheading", "hr", "image"])
    return parser


def render(body: str) -> str:
    """BODY's HTML, safe to show to anyone."""
    return clean(_parser().render(body))


def clean(html: str) -> str:
    """HTML with only what a comment may hold: a comment imported from WordPress or from an export brings its
    HTML with it, which passes here as a reader's does."""
    import nh3

    return nh3.clean(
        html,
        tags=TAGS,
        attributes={"a": {"href"}},
        url_schemes=SCHEMES,
        link_rel="nofollow ugc noopener",
        strip_comments=True,
    )


def links(body: str) -> int:
    """How many links BODY has, written out or in Markdown: a spammer's comment is mostly links."""
    return len(_LINK.findall(body))


def web_link(url: str) -> str:
    """URL, a commenter's home page as an import brings it, if it is one a reader may follow (http or https, with a
    host, no spaces or control characters), else "": the comment form refuses any other, and `javascript:` in a
    file someone edited would otherwise become a link under the comment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not host or re.search(r"[\x00-\x20\x7f]", url):
        return ""
    return url
