"""The endpoints a buddy calls (see health/buddy.py), with the token both sides share: wrong tokens are
rate-limited like logins, and a probe reaches only the caller's own address."""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import socket
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jitaku.config import Settings, parse_listen
from jitaku.health import buddy, history
from jitaku.health.result import worst
from jitaku.ratelimit import FailureLimiter
from jitaku.store import Database

MIN_TOKEN = 16


async def _addresses(host: str) -> set[str]:
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return set()
    return {str(ipaddress.ip_address(item[4][0])) for item in found}


def routes(settings: Settings, database: Database, kept: Path | None = None) -> list[Route]:
    """KEPT: a standby's own health file, whose results its hello tells (its database holds the primary's)."""
    token = settings.health.buddy.token
    limiter = FailureLimiter()

    def trusted(request: Request) -> bool:
        client = request.client.host if request.client else "?"
        if limiter.blocked(client):
            return False
        offered = request.headers.get("authorization", "")
        good = len(token) >= MIN_TOKEN and secrets.compare_digest(offered.encode(), f"Bearer {token}".encode())
        if not good:
            limiter.failed(client)
        return good

    async def hello(request: Request) -> Response:
        if not trusted(request):
            return JSONResponse({"error": "unknown buddy"}, status_code=401)
        if kept is not None:
            from jitaku.health import standby_file

            latest, _alerts = standby_file.read(kept)
        else:
            latest = await database.query(history.latest, snapshot=False)
        state = worst([result for _at, result in latest.values()])
        return JSONResponse({"hostname": settings.mail_hostname, "state": str(state)})

    async def probe(request: Request) -> Response:
        """Connect to the caller's own services only: a buddy may ask how it looks, not have us scan others."""
        if not trusted(request):
            return JSONResponse({"error": "unknown buddy"}, status_code=401)
        try:
            body: Any = await request.json()
            targets = [str(target) for target in body["targets"]]
            hosts = [parse_listen(target).host for target in targets]
        except (ValueError, KeyError, TypeError) as error:
            return JSONResponse({"error": f'expected {{"targets": ["host:port", ...]}}: {error}'}, status_code=400)
        if len(targets) > buddy.MAX_TARGETS:
            return JSONResponse({"error": f"at most {buddy.MAX_TARGETS} targets"}, status_code=400)
        caller = str(ipaddress.ip_address(request.client.host)) if request.client else ""
        for target, host in zip(targets, hosts, strict=True):
            if caller not in await _addresses(host):
                return JSONResponse({"error": f"{target} is not at your address {caller}"}, status_code=403)
        return JSONResponse({"results": await buddy.probe(targets)})

    return [Route("/api/buddy/hello", hello), Route("/api/buddy/probe", probe, methods=["POST"])]
