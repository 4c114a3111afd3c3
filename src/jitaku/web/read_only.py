"""The web on a standby: its database is the primary's, replayed and read-only, so a page that only reads serves
as on the primary, and a request that would write (a comment, a subscription, anything in the admin pages that
saves) is answered 503 with a sentence saying why, before it reaches a handler that would fail on the write.
The POSTs that write nothing pass, by name: the admin's login (its failures counted in memory on a standby,
jitaku.ratelimit.MemoryLoginLimiter), the buddy's probe, and the pair's own requests (web/ha.py: a state
writes nothing, a fence writes a file of this box's, never its database)."""

from __future__ import annotations

from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

READING = frozenset({"GET", "HEAD", "OPTIONS"})
POSTS_THAT_READ = frozenset({"/login", "/api/buddy/probe", "/api/ha/state", "/api/ha/fence"})
RETRY_AFTER = "300"  # seconds: a failover, if one is coming, takes about that


def read_only(app: ASGIApp) -> ASGIApp:
    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in READING and not _reads(scope):
            response = PlainTextResponse(
                "This server is a standby: its data is the primary's, read-only. Send this to the primary.\n",
                status_code=503,
                headers={"Retry-After": RETRY_AFTER},
            )
            await response(scope, receive, send)
            return
        await app(scope, receive, send)

    return guarded


def _reads(scope: Scope) -> bool:
    return scope["method"] == "POST" and scope["path"] in POSTS_THAT_READ
