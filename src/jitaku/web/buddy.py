"""The endpoints a buddy calls (see health/buddy.py), with the token both sides share."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jitaku.config import Settings, parse_listen
from jitaku.health import buddy
from jitaku.health.result import worst
from jitaku.store import Database
from jitaku.store import health as rows


def routes(settings: Settings, database: Database) -> list[Route]:
    token = settings.health.buddy.token

    def trusted(request: Request) -> bool:
        offered = request.headers.get("authorization", "")
        return bool(token) and secrets.compare_digest(offered.encode(), f"Bearer {token}".encode())

    async def hello(request: Request) -> Response:
        if not trusted(request):
            return JSONResponse({"error": "unknown buddy"}, status_code=401)
        latest = await database.read(rows.latest)
        state = worst([result for _at, result in latest.values()])
        return JSONResponse({"hostname": settings.mail_hostname, "state": str(state)})

    async def probe(request: Request) -> Response:
        if not trusted(request):
            return JSONResponse({"error": "unknown buddy"}, status_code=401)
        try:
            body: Any = await request.json()
            targets = [str(target) for target in body["targets"]]
            for target in targets:
                parse_listen(target)
        except (ValueError, KeyError, TypeError) as error:
            return JSONResponse({"error": f'expected {{"targets": ["host:port", ...]}}: {error}'}, status_code=400)
        if len(targets) > buddy.MAX_TARGETS:
            return JSONResponse({"error": f"at most {buddy.MAX_TARGETS} targets"}, status_code=400)
        return JSONResponse({"results": await buddy.probe(targets)})

    return [Route("/api/buddy/hello", hello), Route("/api/buddy/probe", probe, methods=["POST"])]
