"""What `jitaku blog import --wxr` writes, made from a WordPress export before the store is touched: its posts
and pages, their comments, the uploads they use, and a redirect from each old URL.

- A post or page is keyed `wordpress/ID.html` (a page `pages/wordpress/ID.html`), its WordPress id: importing
  the same export again updates it in place, and `jitaku blog export` writes it to that very file. Its source
  is the content as WordPress kept it, its HTML what WordPress shows (blog/wordpress.py).
- Published ("publish") is published, and so is a scheduled one ("future"), which the site shows from its date
  on as WordPress would have; a draft, a pending, a private or a password-protected post is a draft: nothing
  WordPress kept from readers is shown.
  Trashed posts, revisions, menu items and other types are left out.
- Categories and tags are both tags (categories first), but for WordPress's default "uncategorized".
- Comments keep their dates, status ("1" published, "0" pending, "spam") and thread; a reply to a reply hangs
  from its top comment, as the site nests one level. Pingbacks and trackbacks are left out: they are no
  reader's words and the site has no place for them; so are trashed comments.
- An attachment's file, and any other upload a post shows (a resized copy), is read from the media directory
  (WordPress's wp-content/uploads, matched by the path under it) into media at uploads/PATH, and its old URL
  redirects there.
"""

from __future__ import annotations

import html
import re
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from urllib.parse import unquote, urlsplit

from jitaku.blog import comment_text, permalink, wordpress
from jitaku.blog.importer import MEDIA_TYPES, RESERVED
from jitaku.blog.source import NOT_IN_SEGMENT, NOT_IN_TAG, SourceError
from jitaku.blog.wxr import Wxr, WxrComment, WxrItem
from jitaku.store import site
from jitaku.store.blog import NewPost
from jitaku.store.comments import PENDING, PUBLISHED, SPAM, KeptComment

KEY = "wordpress/"  # a post's path: wordpress/ID.html; a page's: pages/wordpress/ID.html
NONCE = "wordpress:"  # a comment's nonce: wordpress:ID, so that importing again adds it once
_SHOWN = {"publish", "future"}
_HIDDEN = {"draft", "pending", "private"}
_KINDS = {"post": site.POST, "page": site.PAGE}
_STATUS = {"1": PUBLISHED, "0": PENDING, "spam": SPAM}
_REASON = {PENDING: "held for moderation on WordPress", SPAM: "marked as spam on WordPress", PUBLISHED: ""}
_DEFAULT_CATEGORY = "uncategorized"
_DASHES = re.compile(r"-{2,}")
# The comments table's widths, which PostgreSQL enforces
_AUTHOR, _EMAIL, _URL, _ADDRESS = 200, 320, 2048, 64


@dataclass
class Planned:
    """What an import of one export writes, and what it left out and why."""

    posts: list[NewPost] = field(default_factory=list)
    comments: list[KeptComment] = field(default_factory=list)
    media: list[tuple[Path, str, str]] = field(default_factory=list)  # (file, media path, content type)
    redirects: list[tuple[str, str]] = field(default_factory=list)  # (old path, new path): the uploads'
    left_out: list[str] = field(default_factory=list)  # one line each, for the summary


def plan(export: Wxr, media_dir: Path | None, pattern: str, timezone: tzinfo | None) -> Planned:
    """Everything EXPORT brings, its posts' URLs made with PATTERN in TIMEZONE, the uploads read from MEDIA_DIR
    (None: left at the old site); a SourceError for what cannot be imported (a page at a path of the site)."""
    planned = Planned()
    items = [item for item in export.items if _kept(item, planned)]
    uploads = _uploads(export, items, media_dir, planned)
    resolve = wordpress.uploads_resolver(frozenset(path for _, path, _ in uploads))
    planned.media = uploads
    for item in items:
        post = _post(export.file, item, pattern, timezone, resolve)
        planned.posts.append(post)
        planned.comments.extend(_comments(item, post.path, planned))
    return planned


def _kept(item: WxrItem, planned: Planned) -> bool:
    if item.type == "attachment":
        return False
    if item.type not in _KINDS:
        planned.left_out.append(f"item {item.id}: a {item.type or 'typeless item'}, not a post or page")
        return False
    if item.status not in _SHOWN | _HIDDEN:
        planned.left_out.append(f"{item.type} {item.id} ({item.title.strip()}): {item.status or 'no status'}")
        return False
    return True


def _post(file: Path, item: WxrItem, pattern: str, timezone: tzinfo | None, resolve: wordpress.Resolver) -> NewPost:
    kind = _KINDS[item.type]
    title = unicodedata.normalize("NFC", html.unescape(item.title)).strip()
    slug = _slug(unquote(item.name)) or _slug(title.lower()) or str(item.id)
    if kind == site.PAGE and slug in RESERVED:
        raise SourceError(
            f"{file}: page {item.id}: wp:post_name: {slug!r} is a path of the site itself; give the page another"
        )
    draft = item.status not in _SHOWN or bool(item.password)
    when = item.published_at or time.time()
    return NewPost(
        path=f"pages/{KEY}{item.id}.html" if kind == site.PAGE else f"{KEY}{item.id}.html",
        url=f"/{slug}/" if kind == site.PAGE else permalink.url_of(pattern, slug, when, timezone),
        title=title or slug,
        slug=slug,
        published_at=when,
        draft=draft,
        source=item.content,
        html=wordpress.render(item.content, resolve),
        tags=_tags(item),
        aliases=() if draft else _old_path(item.link),
        kind=kind,
    )


def _slug(name: str) -> str:
    """NAME as a slug, "" for none: a draft has no wp:post_name yet, and WordPress would make it from the title
    (spaces as -)."""
    slug = NOT_IN_SEGMENT.sub("-", unicodedata.normalize("NFC", name.strip())).strip("-")
    return "" if slug in {".", ".."} else _DASHES.sub("-", slug)


def _tags(item: WxrItem) -> tuple[str, ...]:
    tags: list[str] = []
    for domain in ("category", "post_tag"):
        for term_domain, nicename, name in item.terms:
            if term_domain != domain or (domain == "category" and nicename == _DEFAULT_CATEGORY):
                continue
            tag = NOT_IN_TAG.sub("-", unicodedata.normalize("NFC", html.unescape(name)).strip())
            if tag and tag not in tags:
                tags.append(tag)
    return tuple(tags)


def _old_path(link: str) -> tuple[str, ...]:
    """The path of the old permalink LINK, to redirect; none for a link by query (`/?p=12`), which the site
    cannot tell from its home page."""
    parts = urlsplit(link)
    path = unicodedata.normalize("NFC", unquote(parts.path))
    if parts.query or path in {"", "/"}:
        return ()
    return (path,)


def _comments(item: WxrItem, post_path: str, planned: Planned) -> list[KeptComment]:
    kept = {c.id: c for c in item.comments if c.type not in {"pingback", "trackback"} and c.approved in _STATUS}
    by_id = {c.id: c for c in item.comments}
    for comment in item.comments:
        if comment.id not in kept:
            why = comment.type if comment.type in {"pingback", "trackback"} else f"status {comment.approved!r}"
            planned.left_out.append(f"comment {comment.id} on {item.type} {item.id}: {why}")
    return [
        KeptComment(
            nonce=f"{NONCE}{comment.id}",
            post_path=post_path,
            parent=_top(comment, by_id, kept),
            author=html.unescape(comment.author)[:_AUTHOR],  # WordPress keeps "&" as "&amp;"
            email=comment.email[:_EMAIL],
            url=comment_text.web_link(comment.url[:_URL]),
            body=comment.content,
            html=comment_text.clean(wordpress.autop(comment.content)),
            status=_STATUS[comment.approved],
            address=comment.address[:_ADDRESS],
            reason=_REASON[_STATUS[comment.approved]],
            created_at=comment.created_at,
        )
        for comment in kept.values()
    ]


def _top(comment: WxrComment, by_id: dict[int, WxrComment], kept: dict[int, WxrComment]) -> str | None:
    """The nonce of the topmost kept comment COMMENT answers, through the comments it answers; None for none."""
    top: int | None = None
    seen = {comment.id}
    parent = comment.parent
    while parent and parent in by_id and parent not in seen:
        seen.add(parent)
        if parent in kept:
            top = parent
        parent = by_id[parent].parent
    return None if top is None else f"{NONCE}{top}"


def _uploads(
    export: Wxr, items: list[WxrItem], media_dir: Path | None, planned: Planned
) -> list[tuple[Path, str, str]]:
    """The attachments' files and the other uploads the posts show, each with its old URL's path redirected to
    its copy; what cannot come is said in LEFT_OUT."""
    wanted: dict[str, list[str]] = {}  # media path -> its old URLs: the file's, its attachment page's
    attachments = [item for item in export.items if item.type == "attachment"]
    for item in attachments:
        if item.attached_file:
            path = wordpress.media_path(item.attached_file)
        else:
            path = wordpress.upload_path(item.attachment_url)
        if path is None:
            planned.left_out.append(
                f"attachment {item.id}: {item.attachment_url or 'no URL'}: not under wp-content/uploads/"
            )
            continue
        wanted.setdefault(path, []).extend([item.attachment_url, item.link])
    if media_dir is None:
        if wanted:
            planned.left_out.append(
                f"{len(wanted)} attachments: their files stay at the old site's URLs (give --media with the"
                " wp-content/uploads directory to bring them)"
            )
        return []
    attached = set(wanted)
    for item in items:
        for reference in wordpress.references(item.content):
            if (path := wordpress.upload_path(reference)) is not None:
                wanted.setdefault(path, []).append(reference)
    found: list[tuple[Path, str, str]] = []
    for path, urls in wanted.items():
        file = _find(media_dir, path.removeprefix(wordpress.UPLOADS))
        content_type = MEDIA_TYPES.get(Path(path).suffix.lower())
        if file is None or content_type is None:
            if path in attached:  # a resized copy a post names may be missing: WordPress made it on demand
                why = "not in the media directory" if file is None else "not a kind of file the site serves"
                planned.left_out.append(f"{path.removeprefix(wordpress.UPLOADS)}: {why}")
            continue
        found.append((file, path, content_type))
        olds = dict.fromkeys(old for url in urls for old in _old_path(url))
        planned.redirects += [(old, f"/media/{path}") for old in olds]
    return found


def _find(media_dir: Path, relative: str) -> Path | None:
    """RELATIVE (2024/05/photo.jpg) in MEDIA_DIR, given as the uploads directory or one above it."""
    for base in (media_dir, media_dir / "uploads", media_dir / "wp-content" / "uploads"):
        file = base / relative
        if file.is_file():
            return file
    return None
