"""/admin/redirects: the old URLs that answer 301, added and removed with the checks of `jitaku web redirect`
(blog/paths.py site_path, store/blog.py add_redirect), and the report of `jitaku web check-links` on a button:
the crawl of the running site runs in a thread, bounded in pages and in time, one at a time."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from jitaku import log
from jitaku.blog.paths import PathRefused, path_url, site_path
from jitaku.config import Settings
from jitaku.store import Database, blog
from jitaku.web.admin.page import AdminPages
from jitaku.web.bodies import read_form

if TYPE_CHECKING:
    from collections.abc import Callable

    from jitaku.web.links import Report

PATH = "/admin/redirects"
MAX_PAGES = 500  # URLs the button's crawl checks at most ...
TIME_LIMIT = 60.0  # ... in at most this many seconds (the owner waits for the page)
REQUEST_TIMEOUT = 10.0


class RedirectsAdmin:
    def __init__(self, admin: AdminPages, settings: Settings, database: Database, changed: Callable[[], None]) -> None:
        """CHANGED drops the site's kept pages (PageCache.invalidate), so a redirect answers at once."""
        self._admin = admin
        self._settings = settings
        self._database = database
        self._changed = changed
        self._crawling = asyncio.Lock()
        self._last: dict[str, Any] | None = None  # the last crawl's report, shown until the next

    def routes(self) -> list[Route]:
        protect = self._admin.gate.protect
        return [
            Route(PATH, protect(self._page), methods=["GET"]),
            Route(PATH, protect(self._add), methods=["POST"]),
            Route(f"{PATH}/remove", protect(self._remove), methods=["POST"]),
            Route(f"{PATH}/check", protect(self._check), methods=["POST"]),
        ]

    async def _render(
        self, request: Request, said: str = "", error: str = "", form: dict[str, str] | None = None, status: int = 200
    ) -> Response:
        found = await self._database.query(blog.kept_redirects, snapshot=False)
        shown = [
            {
                "old": r.old,
                "new": r.new,
                "old_href": path_url(r.old),
                "new_href": path_url(r.new),
                "created": self._admin.when(r.created_at)[:10],
            }
            for r in found
        ]
        context = {
            "redirects": shown,
            "said": said,
            "error": error,
            "form": form or {"old": "", "new": ""},
            "report": self._last,
            "crawling": self._crawling.locked(),
        }
        return await self._admin.render(request, "redirects.html", PATH, context, status_code=status)

    async def _page(self, request: Request) -> Response:
        said = {"added": "Redirect saved.", "removed": "Redirect removed."}.get(
            request.query_params.get("done", ""), ""
        )
        return await self._render(request, said=said)

    async def _add(self, request: Request) -> Response:
        form = await read_form(request)
        typed = {"old": str(form.get("old", "")).strip(), "new": str(form.get("new", "")).strip()}
        try:
            old, new = site_path(typed["old"], "The old path"), site_path(typed["new"], "The new path")
            end = await self._database.transact(lambda tx: blog.add_redirect(tx, old, new, time.time()))
        except (PathRefused, blog.BlogError) as refused:
            return await self._render(request, error=f"{refused} (nothing changed)", form=typed, status=400)
        self._changed()
        log.event("redirect_added", old=old, new=end, via="admin")
        return RedirectResponse(f"{PATH}?done=added", status_code=303)

    async def _remove(self, request: Request) -> Response:
        form = await read_form(request)
        try:
            old = site_path(str(form.get("old", "")), "The old path")
        except PathRefused as refused:
            return await self._render(request, error=f"{refused} (nothing changed)", status=400)
        if not await self._database.transact(lambda tx: blog.remove_redirect(tx, old)):
            return await self._render(request, error=f"There is no redirect from {old} (nothing changed).", status=404)
        self._changed()
        log.event("redirect_removed", old=old, via="admin")
        return RedirectResponse(f"{PATH}?done=removed", status_code=303)

    async def _check(self, request: Request) -> Response:
        """Crawl the site now, as `jitaku web check-links` does, and show the report; a second press while a
        crawl runs waits for nothing and says so."""
        if self._crawling.locked():
            return await self._render(
                request, error="A check is running already: reload this page in a minute.", status=409
            )
        async with self._crawling:
            started = time.time()
            self._last = await asyncio.to_thread(self._crawl)
            self._last["at"] = self._admin.when(started)
            self._last["seconds"] = round(time.time() - started, 1)
        log.event("links_checked", checked=self._last["checked"], broken=len(self._last["broken"]), via="admin")
        return RedirectResponse(f"{PATH}#links", status_code=303)

    def _crawl(self) -> dict[str, Any]:
        """The crawl, in a thread (httpx's blocking client): the site at the first `[web] listen` address."""
        from jitaku.web.links import CrawlError, check_links, reach

        base, verify = reach(self._settings.web.listen[0])
        public = urlsplit(self._settings.web_url).netloc
        try:
            report = check_links(
                base,
                [public],
                max_pages=MAX_PAGES,
                timeout=REQUEST_TIMEOUT,
                verify=verify,
                time_limit=TIME_LIMIT,
            )
        except CrawlError as error:
            return {"error": str(error), "checked": 0, "broken": [], "chains": [], "stopped": False, "base": base}
        return _shown(report, base)


def _shown(report: Report, base: str) -> dict[str, Any]:
    return {
        "error": "",
        "base": base,
        "checked": report.checked,
        "stopped": report.stopped,
        "broken": [
            {"link": b.link, "answer": b.answer, "from": b.linked_from}  # a link as a browser sends it (escaped)
            for b in report.broken
        ],
        "chains": [{"link": c.link, "hops": c.hops, "from": c.linked_from} for c in report.chains],
    }
