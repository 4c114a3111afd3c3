"""The owner's posts and pages at /admin/posts: the list (drafts and scheduled posts too) and the editor: Markdown
previewed by the blog's own renderer (blog/markdown.py), tags, a date in `[blog] timezone`, draft or published
(published with a date ahead is scheduled: the site shows it from then on, store/site.py), post or page, and
images uploaded into the database's media.

A post is saved as `jitaku blog import` saves one (store/blog.py import_posts), so that a changed slug or date
leaves a 301 from the old URL, tags keep their order, and the site drops its kept pages. A post written here is
keyed by `admin/RANDOM.md` (posts.path), which no change of its slug, date or kind moves; an imported one keeps
its file's path, and its photos beside that file stay linked when it is rendered again here.

The editor is one multipart form (Preview, Save and Upload image are its buttons, so that nothing typed is lost
to an upload) which may carry megabytes: its route lets the admin in before reading a byte of it, reads it with
bounds of its own, and then checks the CSRF field itself (web/csrf.py exempts it from the generic check). No
script, as on every admin page.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from jitaku import log
from jitaku.blog.paths import path_url
from jitaku.config import Settings
from jitaku.store import Database, blog, comments, site
from jitaku.web import csrf
from jitaku.web.admin.page import AdminPages
from jitaku.web.bodies import FORM_FIELDS
from jitaku.web.page_cache import PageCache
from jitaku.web.site_info import SiteInfo

if TYPE_CHECKING:
    from jitaku.store.transaction import Tx

CURRENT = "/admin/posts"
UPLOAD_MAX = 10 * 1024 * 1024  # bytes of one image: a phone's photo is 3 to 6 MB; a larger one is refused, 400
MARKDOWN_MAX = 1024 * 1024  # bytes of a post's Markdown as UTF-8: some 340,000 Japanese characters
# The editor's body bound, for BodyLimit in web/status.py: an image, the post's text, and the short fields
LARGER = {"/admin/posts/": UPLOAD_MAX + MARKDOWN_MAX + 64 * 1024}
KEY_PREFIX = "admin/"  # posts.path of a post written here: admin/ and 16 random hex digits, .md
NEW_KEY = f"{KEY_PREFIX}new.md"  # what a post not saved yet is rendered as (its relative links resolve nowhere)
DATE_FORMAT = "%Y-%m-%dT%H:%M"  # an <input type="datetime-local">'s value, to the minute
# The images an upload may be, told by their first bytes (what the file is, not what its name or the browser
# says), each with the suffix its name gets. Never SVG: an SVG is a document of the site's own origin that may run
# script, which a browser opening /media/... would run as this site
IMAGE_SUFFIXES = {
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/gif": ".gif",
    "image/webp": ".webp",
    "image/avif": ".avif",
}
NAME_LENGTH = 60  # characters of an uploaded file's name kept in its media path
_NOT_IN_NAME = re.compile(r"[^\w.-]+")  # \w is Unicode's: a Japanese name stays Japanese
_TAG_SEPARATORS = re.compile("[,、，]")
STATES = ("draft", "published")
KINDS = (site.POST, site.PAGE)


class Refused(Exception):
    """What is wrong with the editor's form, said to the owner on the form kept as sent (400, nothing changed)."""


@dataclass
class Draft:
    """The editor's fields as text, as the form sent them or as they show the post stored."""

    title: str = ""
    slug: str = ""
    tags: str = ""
    date: str = ""
    state: str = "draft"
    kind: str = site.POST
    body: str = ""

    @classmethod
    def of(cls, form: FormData) -> Draft:
        def text(name: str) -> str:
            value = form.get(name, "")
            return unicodedata.normalize("NFC", value) if isinstance(value, str) else ""

        # A browser sends a textarea's lines ended by CRLF (HTML's form submission); the files imported have LF
        return cls(
            text("title").strip(),
            text("slug").strip(),
            text("tags").strip(),
            text("date").strip(),
            text("state"),
            text("kind"),
            text("body").replace("\r\n", "\n"),
        )


@dataclass(frozen=True)
class Uploaded:
    """An image kept under /media/: its URL, and the Markdown that shows it."""

    url: str

    @property
    def markdown(self) -> str:
        return f"![]({self.url})"


@dataclass
class Shown:
    """What the editor's page says besides the form."""

    errors: list[str] = field(default_factory=list)
    preview: str | None = None
    uploaded: Uploaded | None = None
    saved: bool = False


def state_of(draft: bool, published_at: float, now: float) -> str:
    """draft, scheduled (published, dated after NOW: not on the site yet) or published."""
    return "draft" if draft else "scheduled" if published_at > now else "published"


def image_type(data: bytes) -> str | None:
    """The type of image DATA is, by its signature; None: none of IMAGE_SUFFIXES."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "image/avif"
    return None


def media_name(filename: str) -> str:
    """The uploaded file's own name, as a media path's last segment keeps it (without its suffix): no directory,
    no character a path or URL would trip on."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base else base
    return _NOT_IN_NAME.sub("-", unicodedata.normalize("NFC", stem)).strip("-.")[:NAME_LENGTH].strip("-.") or "image"


def _size(count: int) -> str:
    """COUNT bytes as the owner reads a file's size."""
    return f"{count / (1024 * 1024):g} MB" if count >= 1024 * 1024 else f"{count / 1024:g} KB"


class Posts:
    """The routes of /admin/posts, each behind the admin's gate."""

    def __init__(self, settings: Settings, database: Database, admin: AdminPages, pages: PageCache) -> None:
        """PAGES: the site's kept pages, dropped after each change so that it shows at once."""
        self._settings = settings
        self._database = database
        self._admin = admin
        self._pages = pages
        self._site = SiteInfo.of(settings)

    def routes(self) -> list[Route]:
        protect = self._admin.gate.protect
        return [
            Route("/admin/posts", protect(self._list), methods=["GET"]),
            Route("/admin/posts/new", protect(self._new), methods=["GET"]),
            Route("/admin/posts/new", protect(self._submit), methods=["POST"]),
            Route("/admin/posts/{post_id:int}", protect(self._edit), methods=["GET"]),
            Route("/admin/posts/{post_id:int}", protect(self._submit), methods=["POST"]),
            Route("/admin/posts/{post_id:int}/delete", protect(self._confirm), methods=["GET"]),
        ]

    # The list

    async def _list(self, request: Request) -> Response:
        found, counts = await self._database.query(lambda s: (blog.posts(s), comments.counts_by_post(s)))
        now = time.time()
        rows = [
            {
                "id": post.id,
                "title": post.title,
                "kind": post.kind,
                "state": state_of(post.draft, post.published_at, now),
                "date": self._shown_date(post.published_at).replace("T", " "),
                "comments": counts.get(post.id, 0),
            }
            for post in found
        ]
        context = {"posts": rows, "timezone": self._zone_name, "deleted": request.query_params.get("deleted") == "1"}
        return await self._admin.render(request, "posts.html", CURRENT, context)

    # The editor

    async def _new(self, request: Request) -> Response:
        kind = site.PAGE if request.query_params.get("kind") == site.PAGE else site.POST
        return await self._editor(request, Draft(kind=kind), None, Shown())

    async def _edit(self, request: Request) -> Response:
        post_id: int = request.path_params["post_id"]
        stored = await self._database.query(lambda s: blog.post_with_source(s, post_id))
        if stored is None:
            return await self._missing(request, post_id)
        post, source = stored
        draft = Draft(
            post.title,
            post.slug,
            ", ".join(post.tags),
            self._shown_date(post.published_at),
            "draft" if post.draft else "published",
            post.kind,
            source,
        )
        return await self._editor(request, draft, post, Shown(saved=request.query_params.get("saved") == "1"))

    async def _submit(self, request: Request) -> Response:
        """Preview, Save, Upload image or Delete: the form is read only now, the admin let in already."""
        post_id: int | None = request.path_params.get("post_id")
        try:
            async with request.form(max_files=1, max_fields=FORM_FIELDS, max_part_size=MARKDOWN_MAX) as form:
                refusal = csrf.refusal(request, form.get(csrf.FIELD))
                if refusal is not None:
                    return refusal
                stored = None
                if post_id is not None:
                    stored = await self._database.query(lambda s: blog.post_with_source(s, post_id))
                    if stored is None:
                        return await self._missing(request, post_id)
                post = stored[0] if stored else None
                action = form.get("action")
                if action == "delete" and post is not None:
                    return await self._delete(post)
                draft = Draft.of(form)
                image = form.get("image")
                chosen = image if isinstance(image, UploadFile) and (image.filename or image.size) else None
                if action == "upload":
                    return await self._upload(request, draft, post, chosen)
                shown = Shown()
                if chosen is not None:
                    shown.errors.append("The image chosen was not uploaded: choose it again and press Upload image.")
                if action == "preview":
                    shown.preview = await self._render(draft.body, post.path if post else NEW_KEY)
                    return await self._editor(request, draft, post, shown)
                if action == "save":
                    return await self._save(request, draft, post, shown)
                shown.errors.insert(0, "Press Preview, Save or Upload image.")
                return await self._editor(request, draft, post, shown, status_code=400)
        except HTTPException as refused:  # not a form, a second file, a field past its bound
            return PlainTextResponse(f"{refused.detail}\n", status_code=refused.status_code)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody is there to read an answer

    async def _save(self, request: Request, draft: Draft, post: blog.Post | None, shown: Shown) -> Response:
        """Stored in one transaction of import_posts, or refused with the form as sent (400) and nothing changed;
        the editor's page after a save says so only once it is committed."""
        now = time.time()
        try:
            new = await self._checked(draft, post, now)
        except Refused as refused:
            shown.errors.insert(0, str(refused))
            return await self._editor(request, draft, post, shown, status_code=400)

        def store(tx: Tx) -> int | None:
            blog.import_posts(tx, [new], now)
            return blog.id_at(tx, new.path)

        try:
            saved = await self._database.transact(store)
        except blog.BlogError as error:  # another post took the URL meanwhile
            shown.errors.insert(0, f"Nothing was saved: {error}")
            return await self._editor(request, draft, post, shown, status_code=400)
        self._pages.invalidate()
        state = state_of(new.draft, new.published_at, now)
        log.event("post_saved", post=saved, url=new.url, state=state, kind=new.kind)
        return RedirectResponse(f"/admin/posts/{saved}?saved=1", status_code=303)

    async def _checked(self, draft: Draft, post: blog.Post | None, now: float) -> blog.NewPost:
        """The post the form describes, checked as a file's front matter is (blog/source.py), its URL made as the
        import makes it, free for it, and its Markdown rendered; Refused naming the first problem."""
        from jitaku.blog import permalink
        from jitaku.blog.importer import RESERVED
        from jitaku.blog.source import slug_from, slug_problem, tag_problem

        if not draft.title:
            raise Refused("Give it a title.")
        if draft.state not in STATES:
            raise Refused("Choose draft or published.")
        if draft.kind not in KINDS:
            raise Refused("Choose post or page.")
        slug = draft.slug or slug_from(draft.title)
        if problem := slug_problem(slug):
            raise Refused(f"Slug {problem}.")
        if draft.kind == site.PAGE and slug in RESERVED:
            raise Refused(f"Slug {slug!r} is a path of the site itself: give the page another.")
        tags: list[str] = []
        for tag in (part.strip() for part in _TAG_SEPARATORS.split(draft.tags)):
            if not tag:
                continue
            if problem := tag_problem(tag):
                raise Refused(f"Tag {problem}.")
            if tag not in tags:
                tags.append(tag)
        published_at = self._date(draft.date, post, now)
        if len(draft.body.encode()) > MARKDOWN_MAX:
            raise Refused(f"The text is over {MARKDOWN_MAX // 1024} KiB: split it into two posts.")
        url = (
            f"/{slug}/"
            if draft.kind == site.PAGE
            else permalink.url_of(self._settings.blog.permalink, slug, published_at, self._site.zone)
        )
        path = post.path if post is not None else f"{KEY_PREFIX}{secrets.token_hex(8)}.md"
        taken = await self._database.query(
            lambda s: next(((p.title, p.path) for p in blog.posts(s) if p.url == url), None)
        )
        if taken is not None and taken[1] != path:
            raise Refused(f"“{taken[0]}” is at {url} already: give this one another slug or date.")
        return blog.NewPost(
            path=path,
            url=url,
            title=draft.title,
            slug=slug,
            published_at=published_at,
            draft=draft.state == "draft",
            source=draft.body,
            html=await self._render(draft.body, path),
            tags=tuple(tags),
            kind=draft.kind,
        )

    def _date(self, value: str, post: blog.Post | None, now: float) -> float:
        """The date the field says, in the blog's time zone; empty: now, to the second, as a file's front matter
        can say it (an export and an import again give the same date); an undated page stays undated. The field
        shows the minute: sent back unchanged, it keeps the stored date to the second."""
        if not value:
            return 0.0 if post is not None and post.published_at == 0 else float(int(now))
        if post is not None and value == self._shown_date(post.published_at):
            return post.published_at
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise Refused(f"Date {value!r} is not a date and time like 2026-12-07T09:30.") from None
        if not 1900 <= when.year <= 9998:  # a URL's year; the next month's archive must be a date too
            raise Refused(f"Date {value!r}: the year must be from 1900 to 9998.")
        if when.tzinfo is None:
            zone = self._site.zone
            when = when.replace(tzinfo=zone) if zone is not None else when.astimezone()
        return when.timestamp()

    async def _render(self, body: str, path: str) -> str:
        """BODY as the site will show it, by the blog's own renderer in a thread (a long post takes a while); a
        photo an imported post names beside its file becomes its URL under /media/, as the import made it."""
        from jitaku.blog.importer import rendered

        media = set(await self._database.query(blog.media_paths))
        return await asyncio.to_thread(rendered, path, body, media)

    # Images

    async def _upload(
        self, request: Request, draft: Draft, post: blog.Post | None, image: UploadFile | None
    ) -> Response:
        """The image kept under /media/uploads/YYYY/MM/ and the editor shown again as sent, with the Markdown to
        paste; 400 with the reason for anything else, nothing stored."""
        shown = Shown()
        try:
            if image is None:
                raise Refused("Choose an image file first, then press Upload image.")
            shown.uploaded = await self._keep(image)
        except Refused as refused:
            shown.errors.append(str(refused))
            return await self._editor(request, draft, post, shown, status_code=400)
        return await self._editor(request, draft, post, shown)

    async def _keep(self, image: UploadFile) -> Uploaded:
        name = image.filename or "image"
        data = await image.read(UPLOAD_MAX + 1)
        if len(data) > UPLOAD_MAX:
            raise Refused(f"{name}: over {_size(UPLOAD_MAX)}; make the image smaller first.")
        kind = image_type(data)
        if kind is None:
            svg = name.lower().endswith(".svg") or image.content_type == "image/svg+xml" or b"<svg" in data[:1024]
            if svg:
                raise Refused(
                    f"{name}: SVG images are refused: one may carry a script, which would run as this site."
                    " Save it as PNG first."
                )
            raise Refused(f"{name} is not an image this site keeps: PNG, JPEG, GIF, WebP or AVIF.")
        now = time.time()
        when = self._site.when(now)
        folder = f"uploads/{when.year:04d}/{when.month:02d}/"
        stem, suffix = media_name(name), IMAGE_SUFFIXES[kind]
        digest = hashlib.sha256(data).hexdigest()

        def store(tx: Tx) -> str:
            """The first free name (photo.jpg, photo-2.jpg, ...), or the one that holds these very bytes."""
            number = 1
            while True:
                path = f"{folder}{stem}{suffix}" if number == 1 else f"{folder}{stem}-{number}{suffix}"
                found = site.media(tx, path)
                if found is None or found.digest == digest:
                    blog.put_media(tx, path, kind, data, now)
                    return path
                number += 1

        path = await self._database.transact(store)
        self._pages.invalidate()
        log.event("media_uploaded", path=path, type=kind, size=len(data))
        return Uploaded(path_url(f"/media/{path}"))

    # Deleting

    async def _confirm(self, request: Request) -> Response:
        """A page that asks before anything is deleted: without a script there is no confirm() dialog."""
        post_id: int = request.path_params["post_id"]
        found = await self._database.query(
            lambda s: (blog.post_with_source(s, post_id), comments.counts_by_post(s).get(post_id, 0))
        )
        stored, count = found
        if stored is None:
            return await self._missing(request, post_id)
        post = stored[0]
        context = {"title": f"delete {post.title}", "post": post, "comments": count}
        return await self._admin.render(request, "posts_delete.html", CURRENT, context)

    async def _delete(self, post: blog.Post) -> Response:
        deleted = await self._database.transact(lambda tx: blog.delete_post(tx, post.id))
        if deleted is not None:
            self._pages.invalidate()
            log.event("post_deleted", post=post.id, url=deleted)
        return RedirectResponse("/admin/posts?deleted=1", status_code=303)

    # Pages

    async def _editor(
        self, request: Request, draft: Draft, post: blog.Post | None, shown: Shown, status_code: int = 200
    ) -> Response:
        from markupsafe import Markup

        noun = "page" if draft.kind == site.PAGE else "post"
        context: dict[str, Any] = {
            "title": post.title if post is not None else f"new {noun}",
            "heading": f"Edit {noun}" if post is not None else f"New {noun}",
            "action": f"/admin/posts/{post.id}" if post is not None else "/admin/posts/new",
            "draft": draft,
            "post": post,
            "state": state_of(post.draft, post.published_at, time.time()) if post is not None else None,
            "link": path_url(post.url) if post is not None else None,
            "timezone": self._zone_name,
            "upload_max": _size(UPLOAD_MAX),
            "errors": shown.errors,
            "preview": Markup(shown.preview) if shown.preview is not None else None,  # the owner's own HTML, as posted
            "uploaded": shown.uploaded,
            "saved": shown.saved,
        }
        return await self._admin.render(request, "posts_edit.html", CURRENT, context, status_code=status_code)

    async def _missing(self, request: Request, post_id: int) -> Response:
        context = {"title": "no such post", "post_id": post_id}
        return await self._admin.render(request, "posts_missing.html", CURRENT, context, status_code=404)

    def _shown_date(self, published_at: float) -> str:
        """PUBLISHED_AT in the blog's time zone as the date field shows it; "" for an undated page."""
        return "" if published_at == 0 else self._site.when(published_at).strftime(DATE_FORMAT)

    @property
    def _zone_name(self) -> str:
        return self._settings.blog.timezone or "the server's time zone"
