"""The web app at `[web] listen`: the blog (web/site.py) at /, the owner's status page (what this server is, who
has mail, what waits in the queue) at /admin/ and the health dashboard at /admin/health, /metrics for
Prometheus, the public list pages and the lists' archives (web/archive/); every request's body bounded, every
response with the security headers.
The old places of the status page's JSON and of the dashboard answer 301 to the new ones, so that bookmarks
and scripts keep working."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from jitaku import dns_records, store
from jitaku.config import Config
from jitaku.lists.requests import Requests
from jitaku.mail.login import Authenticator
from jitaku.store import Database
from jitaku.web import acme, archive, auth, buddy, comment_filter, csrf, feeds, ha, lists
from jitaku.web.admin import posts
from jitaku.web.admin.comments import CommentsAdmin
from jitaku.web.admin.filters import FiltersAdmin
from jitaku.web.admin.lists import ListsAdmin
from jitaku.web.admin.page import AdminPages
from jitaku.web.admin.queue import QueueAdmin
from jitaku.web.admin.redirects import RedirectsAdmin
from jitaku.web.bodies import BodyLimit
from jitaku.web.comment_mail import CommentMail, LocalMail
from jitaku.web.comment_tokens import CommentTokens
from jitaku.web.comments import Comments
from jitaku.web.dashboard import Dashboard
from jitaku.web.headers import SecurityHeaders
from jitaku.web.page_cache import FastPages, PageCache
from jitaku.web.search import Searches, SearchPage
from jitaku.web.secret import session_secret
from jitaku.web.site import Site


def build(
    config: Config,
    database: Database,
    authenticator: Authenticator,
    requests: Requests,
    mail: LocalMail | None,
    standby: bool = False,
    on_fence: Callable[[], Awaitable[None] | None] | None = None,
    waiting: bool = False,
) -> ASGIApp:
    """REQUESTS answers subscriptions asked on the list pages; MAIL carries word of new comments to the owner.
    ON_FENCE: called once the pair's other box has fenced this one (POST /api/ha/fence, web/ha.py): the daemon
    stops serving as the primary; None (a web not run by the daemon) answers such a request 503. WAITING: the daemon
    serves a primary waiting for its peer after a cold start (jitaku.ha.mode), which its state says."""
    settings = config.settings
    kept = None
    if standby:  # its health results are in its own file: its database holds the primary's
        from jitaku.health.standby_file import health_file

        kept = health_file(config)
    gate = auth.Gate(database, settings.web.trust_loopback, authenticator)
    admin = AdminPages(settings, gate)
    secret = session_secret(config.data_dir)  # one key signs every cookie: the session's, csrf's, the comments'
    tokens = CommentTokens(secret)
    notices = CommentMail(settings, database, mail, tokens) if mail is not None else None

    async def snapshot() -> dict[str, Any]:
        mailboxes = await database.query(store.mailstore.message_counts, snapshot=False)
        queued = await database.query(store.queue.list_queue)
        mailing_lists = await database.query(store.lists.summaries, snapshot=False)
        return {
            "hostname": settings.mail_hostname,
            "domains": list(settings.domains),
            "delivery": f"relayhost {settings.relay.host}:{settings.relay.port}" if settings.relay else "direct to MX",
            "listeners": {
                "smtp": [str(a) for a in settings.smtp.listen],
                "submission": [str(a) for a in settings.submission.listen + settings.submissions.listen],
            },
            "mailboxes": [{"address": address, "messages": count} for address, count in mailboxes],
            "queue": [m.as_json() for m in queued],
            "lists": mailing_lists,
        }

    async def page(request: Request) -> Response:
        return await admin.render(request, "status.html", "/admin/", await snapshot())

    async def as_json(request: Request) -> Response:
        return JSONResponse(await snapshot())

    pages = PageCache(database)
    spam_filter = comment_filter.from_settings(settings.filters, database, settings.mail_hostname)
    comments = Comments(settings, database, tokens, notices, spam_filter, changed=pages.invalidate)
    site = Site(settings, database, pages, comments)
    searches = Searches(database)  # the site's and the list archives'
    app = Starlette(
        routes=[
            *acme.routes(config.data_dir),
            Route("/admin/", gate.protect(page)),
            Route("/admin/status.json", gate.protect(as_json, api=True)),
            *_moved({"/admin": "/admin/", "/status.json": "/admin/status.json", "/health": "/admin/health"}),
            *gate.routes(),
            *Dashboard(settings, database, admin, dns_records.dkim(config), kept).routes(),
            *CommentsAdmin(admin, database, pages.invalidate).routes(),
            *RedirectsAdmin(admin, settings, database, pages.invalidate).routes(),
            *ListsAdmin(admin, database).routes(),
            *QueueAdmin(admin, database).routes(),
            *FiltersAdmin(admin, settings, database).routes(),
            *buddy.routes(settings, database, kept),
            *ha.routes(config, on_fence, standby, waiting),
            *lists.routes(database, requests),
            *archive.routes(settings, database, mail, secret, searches),
            *comments.routes(),
            *posts.Posts(settings, database, admin, pages).routes(),
            *feeds.routes(settings, database, pages),
            *_metrics(config, database),
            *SearchPage(searches, site).routes(),
            *site.routes(),  # last: it answers every path the others do not
        ],
        # BodyLimit inside Starlette's error handling (whose 500 would answer first) and outside the rest, so
        # that csrf.Protect reads only a bounded body
        middleware=[
            Middleware(BodyLimit, max_bytes=settings.web.max_body_size, own=("/comments/",), larger=posts.LARGER),
            Middleware(csrf.Protect, secret=secret),
            Middleware(auth.CookieSessions, secret=secret),
        ],
    )
    # SecurityHeaders outside Starlette's error handling, so that its 500 carries them too; a kept page of the
    # blog is answered before both (with the same headers), skipping the routing and middlewares of the rest
    return FastPages(SecurityHeaders(app), pages)


def _moved(places: dict[str, str]) -> list[Route]:
    """301 from each old path of PLACES to its new one, with the query (/health?range=7d)."""

    def to(new: str) -> Callable[[Request], Awaitable[Response]]:
        async def moved(request: Request) -> Response:
            query = request.url.query
            return RedirectResponse(f"{new}?{query}" if query else new, status_code=301)

        return moved

    return [Route(old, to(new)) for old, new in places.items()]


def _metrics(config: Config, database: Database) -> list[Route]:
    """/metrics, in a daemon whose `[web] metrics_token` lets Prometheus read it: only that one loads
    prometheus_client (and the http.server and wsgiref it imports), ~1 MB the idle daemon goes without."""
    if not config.settings.web.metrics_token:
        return []
    from jitaku.web import metrics

    return metrics.routes(config.settings, database)
