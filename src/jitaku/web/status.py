"""The web app at `[web] listen`: the status page (what this server is, who has mail, what waits in the
queue), the health dashboard, /metrics for Prometheus, and the public list pages; every request's body
bounded, every response with the security headers."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from jitaku import dns_records, store
from jitaku.config import Config
from jitaku.lists.requests import Requests
from jitaku.mail.login import Authenticator
from jitaku.store import Database
from jitaku.web import auth, buddy, lists
from jitaku.web.bodies import BodyLimit
from jitaku.web.comment_mail import CommentMail, LocalMail
from jitaku.web.comment_tokens import CommentTokens
from jitaku.web.comments import Comments
from jitaku.web.dashboard import Dashboard
from jitaku.web.headers import SecurityHeaders
from jitaku.web.templates import templates


def build(
    config: Config, database: Database, authenticator: Authenticator, requests: Requests, mail: LocalMail | None
) -> ASGIApp:
    """REQUESTS answers subscriptions asked on the list pages; MAIL carries word of new comments to the owner."""
    settings = config.settings
    gate = auth.Gate(database, settings.web.trust_loopback, authenticator)
    tokens = CommentTokens(auth.session_secret(config.data_dir))
    notices = CommentMail(settings, database, mail, tokens) if mail is not None else None
    comments = Comments(settings, database, tokens, notices)

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
        return templates().TemplateResponse(request, "status.html", await snapshot())

    async def as_json(request: Request) -> Response:
        return JSONResponse(await snapshot())

    app = Starlette(
        routes=[
            Route("/", gate.protect(page)),
            Route("/status.json", gate.protect(as_json, api=True)),
            *gate.routes(),
            *Dashboard(settings, database, gate, dns_records.dkim(config)).routes(),
            *buddy.routes(settings, database),
            *lists.routes(database, requests),
            *comments.routes(),
            *_metrics(config, database),
        ],
        # BodyLimit inside Starlette's error handling (whose 500 would answer first) and outside the rest
        middleware=[
            Middleware(BodyLimit, max_bytes=settings.web.max_body_size, own=("/comments/",)),
            Middleware(auth.CookieSessions, data_dir=config.data_dir),
        ],
    )
    return SecurityHeaders(app)  # outside Starlette's error handling, so that its 500 carries them too


def _metrics(config: Config, database: Database) -> list[Route]:
    """/metrics, in a daemon whose `[web] metrics_token` lets Prometheus read it: only that one loads
    prometheus_client (and the http.server and wsgiref it imports), ~1 MB the idle daemon goes without."""
    if not config.settings.web.metrics_token:
        return []
    from jitaku.web import metrics

    return metrics.routes(config.settings, database)
