"""A post's Markdown as HTML: CommonMark with tables and strikethrough, by markdown-it-py.

The posts are the owner's own files, so their raw HTML (an embedded map, a <figure>) is kept; what a reader
writes (comments) goes through its own smaller subset and nh3 instead. Imported only by `jitaku blog import`:
the daemon serves the HTML stored."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

# Where a link or image of the Markdown points on the site, given the reference as written (percent-encoded);
# None: leave it as it is
Resolver = Callable[[str], str | None]
_LINKS = {"image": "src", "link_open": "href"}


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def render(source: str, resolve: Resolver | None = None) -> str:
    """SOURCE as HTML; each image's and link's reference that RESOLVE knows is replaced by what it gives (a
    photo beside the post becomes its URL under /media/). References in raw HTML are left as written."""
    parser = _parser()
    tokens = parser.parse(source)
    if resolve is not None:
        _rewrite(tokens, resolve)
    html: str = parser.renderer.render(tokens, parser.options, {})
    return html


def _rewrite(tokens: list[Token], resolve: Resolver) -> None:
    for token in tokens:
        if token.children:
            _rewrite(token.children, resolve)
        attribute = _LINKS.get(token.type)
        if attribute is None:
            continue
        reference = token.attrGet(attribute)
        if isinstance(reference, str) and (found := resolve(reference)) is not None:
            token.attrSet(attribute, found)
