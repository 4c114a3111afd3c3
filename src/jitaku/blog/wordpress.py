"""A post's body as WordPress keeps it, as HTML: what WordPress does when it shows one, so that an imported post
reads as it did there. A classic editor's post is HTML whose paragraphs are blank lines (wpautop makes them
`<p>`, single newlines `<br />`), with `[caption]` shortcodes around its images; a block editor's post is HTML
already, between `<!-- wp:... -->` comments. The HTML itself is the owner's and is kept as written.

Links and images pointing at a file under `wp-content/uploads/` that the import brought along point at its
copy under /media/uploads/ instead, so that the post no longer needs the old site. The rules here are applied
alike by `jitaku blog import --wxr` and to the `.html` posts of a directory (what `jitaku blog export` writes
for them), so that an export imported again renders the same HTML."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from jitaku.blog.paths import path_url

UPLOADS = "uploads/"  # where an upload's copy is kept among the media: uploads/2024/05/photo.jpg
_MARK = "/wp-content/uploads/"
# Block-level elements: wpautop puts no <p> around them
_BLOCKS = (
    "table|thead|tfoot|caption|col|colgroup|tbody|tr|td|th|div|dl|dd|dt|ul|ol|li|pre|form|map|area|blockquote"
    "|address|math|style|p|h[1-6]|hr|fieldset|legend|section|article|aside|hgroup|header|footer|nav|figure"
    "|figcaption|details|menu|summary"
)
_OPENING = re.compile(rf"(<(?:{_BLOCKS})[\s/>])", re.IGNORECASE)
_CLOSING = re.compile(rf"(</(?:{_BLOCKS})>)", re.IGNORECASE)
# A tag runs to its ">" but never past another "<": a "<" without its ">" costs one step, not the rest of the text
_BLOCK_TAG = rf"</?(?:{_BLOCKS})[^<>]*>"
_TAG = re.compile(r"<[^<>]*>")
_PRE = re.compile(r"<pre[\s>]", re.IGNORECASE)
_PRE_END = re.compile(r"</pre>", re.IGNORECASE)
_VERBATIM = re.compile(r"<(script|style|svg|textarea)[\s>]", re.IGNORECASE)  # its newlines are no <br />
_BLOCK_COMMENT = re.compile(r"<!--\s*/?wp:[^<>]*-->\n?")  # its attributes' JSON has < and > as \u003c, \u003e
# Where the home page's excerpt ended and where a long post was cut in pages: marks for WordPress, not readers
_MORE = re.compile(r"<!--(?:more|nextpage)\b[^<>]*-->", re.IGNORECASE)
_CAPTION = re.compile(r"\[caption([^\]]*)\](.*)\[/caption\]", re.DOTALL)
_CAPTION_START = re.compile(r"\[caption[\s\]]")
_CAPTION_END = re.compile(r"\[/caption\]")
_CAPTION_IMAGE = re.compile(r"^\s*((?:<a\s[^<>]*>\s*)?<img\s[^<>]*>(?:\s*</a>)?)(.*)$", re.DOTALL | re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""(\w+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_LINK = re.compile(r"""(\s(?:src|href|srcset)\s*=\s*)("[^"]*"|'[^']*')""", re.IGNORECASE)
_NEWLINE = "\ue000"  # a newline wpautop must leave alone (inside a tag, a script): put back at the end
# Where a link or image points on the site, given its URL as written; None: leave it
Resolver = Callable[[str], str | None]


def is_blocks(content: str) -> bool:
    """Whether CONTENT is the block editor's: already HTML, which WordPress shows without wpautop."""
    return "<!-- wp:" in content


def render(content: str, resolve: Resolver) -> str:
    """CONTENT as WordPress shows it, each link and image that RESOLVE knows pointing where it says."""
    content = _MORE.sub("", content.replace("\r\n", "\n").replace("\r", "\n").replace(_NEWLINE, ""))
    if is_blocks(content):
        shown = _spans(_BLOCK_COMMENT.sub("", content), _CAPTION_START, _CAPTION_END, _figure).strip("\n") + "\n"
    else:
        shown = autop(content)
    return _LINK.sub(lambda found: found.group(1) + _resolved(found.group(2), resolve), shown)


def upload_path(reference: str) -> str | None:
    """The media path (uploads/2024/05/photo.jpg) of REFERENCE, a URL of a file under wp-content/uploads/; None
    for any other URL."""
    path = unquote(urlsplit(reference.strip()).path)
    at = path.rfind(_MARK)
    return None if at < 0 else media_path(path[at + len(_MARK) :])


def media_path(relative: str) -> str | None:
    """The media path of the upload at RELATIVE under wp-content/uploads/ (2024/05/photo.jpg); None for a path
    that would leave it."""
    relative = unicodedata.normalize("NFC", relative)
    if "\\" in relative or any(part in {"", ".", ".."} for part in relative.split("/")):
        return None
    return UPLOADS + relative


def uploads_resolver(media: set[str] | frozenset[str]) -> Resolver:
    """What points a URL of an upload among MEDIA at its copy under /media/."""

    def resolve(reference: str) -> str | None:
        path = upload_path(reference)
        return path_url(f"/media/{path}") if path is not None and path in media else None

    return resolve


def references(content: str) -> list[str]:
    """The URLs CONTENT's links and images point at (srcset's each), as written."""
    found: list[str] = []
    for match in _LINK.finditer(content):
        value = html.unescape(match.group(2)[1:-1])
        if match.group(1).strip().lower().startswith("srcset"):
            found.extend(candidate.split()[0] for candidate in value.split(",") if candidate.split())
        else:
            found.append(value)
    return found


def _resolved(quoted: str, resolve: Resolver) -> str:
    """An attribute's QUOTED value with each URL that RESOLVE knows replaced."""
    value = html.unescape(quoted[1:-1])
    candidates = [candidate.strip() for candidate in value.split(",")] if " " in value.strip() else [value]
    changed = False
    shown: list[str] = []
    for candidate in candidates:
        url, _, descriptor = candidate.partition(" ")
        new = resolve(url) if url else None
        changed = changed or new is not None
        shown.append(f"{new or url} {descriptor}".strip() if descriptor else (new or url))
    if not changed:
        return quoted
    return '"' + html.escape(", ".join(shown), quote=True) + '"'


def _spans(text: str, opening: re.Pattern[str], closing: re.Pattern[str] | None, replace: Callable[[str], str]) -> str:
    """TEXT with each span from OPENING to the next CLOSING (None: the closing tag of OPENING's first group)
    given to REPLACE. Searched forward only, and given up at the first span never closed: a regular expression
    `OPEN.*?CLOSE` looks for the end again from each opening, which on a text of openings alone takes its square."""
    shown: list[str] = []
    at = 0
    while (start := opening.search(text, at)) is not None:
        ending = closing or re.compile(rf"</{re.escape(start.group(1))}>", re.IGNORECASE)
        end = ending.search(text, start.end())
        if end is None:
            break
        shown += [text[at : start.start()], replace(text[start.start() : end.end()])]
        at = end.end()
    shown.append(text[at:])
    return "".join(shown)


def _figure(span: str) -> str:
    """A `[caption id=".." align=".."]<img ...> text[/caption]` as the figure WordPress draws for it."""
    found = _CAPTION.fullmatch(span)
    if found is None:
        return span
    attributes = {name.lower(): html.unescape(a or b) for name, a, b in _ATTRIBUTE.findall(found.group(1))}
    image = _CAPTION_IMAGE.match(found.group(2))
    if image is None:
        return span
    text = attributes.get("caption") or image.group(2).strip()
    opening = "<figure"
    if attributes.get("id"):
        opening += f' id="{html.escape(attributes["id"])}"'
    opening += f' class="{html.escape(" ".join(filter(None, ["wp-caption", attributes.get("align", "")])))}">'
    caption = f'<figcaption class="wp-caption-text">{text}</figcaption>' if text else ""
    return f"{opening}{image.group(1)}{caption}</figure>"


def autop(text: str) -> str:
    """TEXT with its blank-line paragraphs as <p> and its other newlines as <br />, block elements left as
    they are: the rules of WordPress's wpautop. A `[caption]` becomes its figure afterwards, as WordPress runs
    its shortcodes after wpautop."""
    if not text.strip():
        return ""
    kept: list[str] = []

    def keep(block: str) -> str:
        """BLOCK, left out of what follows: a placeholder the rules take for a block element."""
        kept.append(block)
        return f"<pre wp-pre-tag-{len(kept) - 1}></pre>"

    text = _spans(text + "\n", _PRE, _PRE_END, keep)
    text = _spans(text, _CAPTION_START, _CAPTION_END, lambda span: keep(_figure(span)))
    text = re.sub(r"<br\s*/?>\s*<br\s*/?>", "\n\n", text, flags=re.IGNORECASE)
    text = _OPENING.sub(r"\n\n\1", text)
    text = _CLOSING.sub(r"\1\n\n", text)
    text = _spans(text, _VERBATIM, None, lambda span: span.replace("\n", _NEWLINE))
    text = _TAG.sub(lambda found: found.group(0).replace("\n", _NEWLINE), text)
    text = "\n".join(line.rstrip(" \t") for line in text.split("\n"))
    paragraphs = [chunk.strip("\n") for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]
    text = "".join(f"<p>{chunk}</p>\n" for chunk in paragraphs)
    text = re.sub(r"<p>\s*</p>", "", text)
    text = re.sub(r"<p>([^<]+)</(div|address|form)>", r"<p>\1</p></\2>", text, flags=re.IGNORECASE)
    text = re.sub(rf"<p>\s*({_BLOCK_TAG})\s*</p>", r"\1", text, flags=re.IGNORECASE)
    text = re.sub(r"<p>(<li.+?)</p>", r"\1", text, flags=re.IGNORECASE)
    text = re.sub(r"<p><blockquote([^<>]*)>", r"<blockquote\1><p>", text, flags=re.IGNORECASE)
    text = re.sub(r"</blockquote></p>", "</p></blockquote>", text, flags=re.IGNORECASE)
    text = re.sub(rf"<p>\s*({_BLOCK_TAG})", r"\1", text, flags=re.IGNORECASE)
    text = re.sub(rf"({_BLOCK_TAG})\s*</p>", r"\1", text, flags=re.IGNORECASE)
    text = re.sub(r"<br\s*/?>", "<br />", text, flags=re.IGNORECASE)
    text = re.sub(r"(?<!<br />)\n", "<br />\n", text)
    text = re.sub(rf"({_BLOCK_TAG})\s*<br />", r"\1", text, flags=re.IGNORECASE)
    text = re.sub(r"<br />(\s*</?(?:p|li|div|dl|dd|dt|th|pre|td|ul|ol)[^<>]*>)", r"\1", text, flags=re.IGNORECASE)
    text = re.sub(r"\n</p>$", "</p>", text)
    for n, block in enumerate(kept):
        text = text.replace(f"<pre wp-pre-tag-{n}></pre>", block)
    return text.replace(_NEWLINE, "\n")
