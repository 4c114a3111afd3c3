"""A post's Markdown as HTML: CommonMark with tables and strikethrough, by markdown-it-py.

The posts are the owner's own files, so their raw HTML (an embedded map, a <figure>) is kept; what a reader
writes (comments) goes through its own smaller subset and nh3 instead. Imported only by `jitaku blog import`:
the daemon serves the HTML stored."""

from __future__ import annotations

from functools import cache

from markdown_it import MarkdownIt


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable(["table", "strikethrough"])


def render(source: str) -> str:
    html: str = _parser().render(source)
    return html
