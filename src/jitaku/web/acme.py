"""GET /.well-known/acme-challenge/TOKEN: the key authorization of an HTTP-01 challenge in flight, which the CA
fetches over plain HTTP on port 80 (and follows to 443 if redirected). Read from the file whoever ordered wrote
(jitaku.acme.http01): the daemon's renewal or `jitaku cert renew` in a process of its own. No login, never kept
(a token lives for one order), and served on a standby too: it only reads."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from jitaku.acme import http01

PATH = "/.well-known/acme-challenge/{token}"


def routes(data_dir: Path) -> list[Route]:
    async def challenge(request: Request) -> Response:
        found = http01.read(data_dir, request.path_params["token"])
        if found is None:
            return PlainTextResponse("no such ACME challenge\n", status_code=404, headers={"Cache-Control": "no-store"})
        return PlainTextResponse(found, headers={"Cache-Control": "no-store"})

    return [Route(PATH, challenge, methods=["GET", "HEAD"])]
