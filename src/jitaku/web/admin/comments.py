"""/admin/comments: the moderation queue. Held comments first (a tab each for published and spam), each with its
author, their address, the post, when, why it was held and what it says; the checked ones approved, marked as
spam or deleted in one POST and one transaction, as `jitaku blog comments approve|spam|delete` does one, and the
site's kept pages dropped after, so a reader sees the change at once."""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from jitaku import log
from jitaku.blog.paths import path_url
from jitaku.store import Database, Tx, comments
from jitaku.store.comments import PENDING, PUBLISHED, SPAM
from jitaku.web.admin.page import AdminPages
from jitaku.web.bodies import read_form

PATH = "/admin/comments"
SHOWN = 100  # comments a tab shows, newest first: a bulk action's checkboxes stay within the form's field limit
TABS = {PENDING: "held", PUBLISHED: "published", SPAM: "spam"}
# a button's value: what the checked comments become (None: deleted), and what the page then says they are
ACTIONS: dict[str, tuple[str | None, str]] = {
    "approve": (PUBLISHED, "published"),
    "spam": (SPAM, "marked as spam"),
    "delete": (None, "deleted"),
}
_ID = re.compile(r"[0-9]{1,18}")


class Gone(Exception):
    """A checked comment is no longer there (deleted meanwhile): nothing of the bulk action is done."""


class CommentsAdmin:
    def __init__(self, admin: AdminPages, database: Database, changed: Callable[[], None]) -> None:
        """CHANGED drops the site's kept pages (PageCache.invalidate)."""
        self._admin = admin
        self._database = database
        self._changed = changed

    def routes(self) -> list[Route]:
        protect = self._admin.gate.protect
        return [
            Route(PATH, protect(self._page), methods=["GET"]),
            Route(PATH, protect(self._act), methods=["POST"]),
        ]

    async def _page(self, request: Request) -> Response:
        status = request.query_params.get("status", PENDING)
        if status not in TABS:
            return await self._refused(request, f"There is no tab {status!r}: {', '.join(TABS)}.", 404)
        done = request.query_params.get("done", "")
        count = request.query_params.get("count", "")
        said = ""
        if done in ACTIONS and _ID.fullmatch(count):
            said = f"{count} comment{'' if count == '1' else 's'} {ACTIONS[done][1]}."
        found = await self._database.query(lambda s: comments.by_status(s, status, SHOWN), snapshot=False)
        counts = await self._database.query(comments.counts, snapshot=False)
        shown = [
            {
                "id": c.id,
                "author": c.author,
                "email": c.email,
                "url": c.url,
                "post_title": c.post_title,
                "post_href": path_url(c.post_url),
                "when": self._admin.when(c.created_at),
                "reason": c.reason,
                "body": c.body,
                "reply": c.parent_id is not None,
            }
            for c in found
        ]
        context = {
            "status": status,
            "tabs": [(key, label, counts.get(key, 0)) for key, label in TABS.items()],
            "comments": shown,
            "more": counts.get(status, 0) - len(shown),
            "actions": [action for action, (becomes, _) in ACTIONS.items() if becomes != status],
            "said": said,
        }
        return await self._admin.render(request, "comments.html", PATH, context)

    async def _act(self, request: Request) -> Response:
        form = await read_form(request)
        action = str(form.get("action", ""))
        status = str(form.get("status", PENDING))
        ids = [str(value) for value in form.getlist("id")]
        if action not in ACTIONS or status not in TABS:
            return await self._refused(request, "Unknown action: use the buttons of the comments page.", 400)
        if not ids:
            return await self._refused(request, "No comment was checked: check the comments to act on first.", 400)
        if not all(_ID.fullmatch(value) for value in ids):
            return await self._refused(request, "A checked comment's id is not a number.", 400)
        becomes = ACTIONS[action][0]
        # newest first: a reply (always newer than what it answers) is deleted before its parent, whose deletion
        # would take it along and leave it "gone"
        chosen = sorted({int(value) for value in ids}, reverse=True)

        def apply(tx: Tx) -> None:
            for comment_id in chosen:
                done = (
                    comments.delete(tx, comment_id) if becomes is None else comments.set_status(tx, comment_id, becomes)
                )
                if not done:
                    raise Gone(comment_id)

        try:
            await self._database.transact(apply)
        except Gone as gone:
            return await self._refused(
                request, f"Comment {gone.args[0]} is gone (deleted meanwhile): nothing was changed.", 404
            )
        self._changed()
        log.event("comments_moderated", comments=",".join(map(str, chosen)), action=action, via="admin")
        query = urlencode({"status": status, "done": action, "count": len(chosen)})
        return RedirectResponse(f"{PATH}?{query}", status_code=303)

    async def _refused(self, request: Request, message: str, status_code: int) -> Response:
        context = {"title": "comments: not done", "message": message, "back": PATH}
        return await self._admin.render(request, "refused.html", PATH, context, status_code=status_code)
