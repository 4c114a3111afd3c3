"""What a reader writes renders as harmless text (issue 21, "Bad input"): no script, no `javascript:` link, no
event attribute, no SVG or CSS trick comes out as markup; the small Markdown subset does."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from jitaku.blog.comment_text import links, render

HARMLESS = {"p", "br", "em", "strong", "code", "pre", "a", "ul", "ol", "li", "blockquote"}


class Markup(HTMLParser):
    """The elements and attributes HTML has, as a browser would parse them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, attrs))


@pytest.mark.parametrize(
    "body",
    [
        "<script>alert(1)</script>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)><circle r=9/></svg>",
        "<style>body { display: none }</style>",
        '<a href="https://x.example" style="position:fixed;inset:0">covering link</a>',
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click](data:text/html;base64,PHNjcmlwdD4=)",
        '<https://x.example" onmouseover="alert(1)>',
        "![photo](https://x.example/a.png)",
        "<iframe src=https://x.example></iframe>",
        "```\n</code><script>alert(1)</script>\n```",
    ],
)
def test_active_content_comes_out_as_text(body: str) -> None:
    html = render(body)
    for tag, attributes in Markup(html).elements:
        assert tag in HARMLESS, html
        for name, value in attributes:
            assert (tag, name) in (("a", "href"), ("a", "rel")), html
            if name == "href":
                assert str(value).startswith(("https://", "http://", "mailto:")), html


def test_the_markdown_subset_renders_and_links_are_nofollow_ugc() -> None:
    html = render(
        "*em* **strong** `code`\n\n> quoted\n\n- one\n- two\n\n1. first\n\n[site](https://e.example/?a=1&b=2)"
    )
    for tag in ("<em>em</em>", "<strong>strong</strong>", "<code>code</code>", "<blockquote>", "<ul>", "<ol>"):
        assert tag in html
    assert '<a href="https://e.example/?a=1&amp;b=2" rel="nofollow ugc noopener">site</a>' in html


def test_headings_and_images_are_not_in_the_subset() -> None:
    html = render("# Big\n\n![alt](https://x.example/a.png)")
    assert "<h1" not in html and "<img" not in html


def test_links_are_counted_written_out_or_in_markdown() -> None:
    assert links("see https://a.example, www.b.example and [c](http://c.example)") == 3
    assert links("no links") == 0
