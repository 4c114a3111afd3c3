"""Asking a buddy (another jitaku, at a friend's place) over its `/api/buddy/...` endpoints (jitaku.web.buddy),
with the token both sides share: the health checks (jitaku.health.buddy) and the pair's witness
(jitaku.ha.witness) both do."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlparse

from jitaku.config import BuddySettings

TIMEOUT = 15.0
MAX_BODY = 1_048_576  # bytes of an answer read: a probe's results for a few targets are a few hundred


def name(settings: BuddySettings) -> str:
    return settings.name or urlparse(settings.url).hostname or settings.url


async def call(settings: BuddySettings, method: str, path: str, **kwargs: Any) -> Any:
    """The friend's endpoint; raises Unreachable with a few words on any failure."""
    import httpx  # httpx (~16 MB with the CLI it loads) only in a daemon that uses it

    headers = {"Authorization": f"Bearer {settings.token}"}
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT, verify=settings.verify_tls) as client:
            url = settings.url.rstrip("/") + path
            async with client.stream(method, url, headers=headers, **kwargs) as response:
                status, body = response.status_code, await _bounded(response)
    except httpx.HTTPError as error:
        raise Unreachable(error.__class__.__name__, error.__class__.__name__) from None
    if status in (401, 403):
        raise _refusal(status, _said(body))
    if status != 200:
        raise Unreachable(f"HTTP {status}", f"HTTP {status}")
    try:
        return json.loads(body)
    except ValueError:
        raise Unreachable("it answered something other than JSON", "JSON 以外の応答が返りました") from None


async def _bounded(response: Any) -> bytes:
    """The answer's body, up to MAX_BODY bytes: a buddy or witness that sends without end is not read without end
    (what is past the bound makes the JSON fail, and the answer count as not understood)."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk[: MAX_BODY + 1 - len(body)]
        if len(body) > MAX_BODY:
            break
    return bytes(body)


async def ask_probe(settings: BuddySettings) -> list[dict[str, Any]]:
    """The friend's probe of our `ours` targets: one {"target", "ok", "error"} per target; Unreachable when it
    cannot be asked or answers something else."""
    found = await call(settings, "POST", "/api/buddy/probe", json={"targets": list(settings.ours)})
    try:
        results = [dict(result) for result in found["results"]]
    except (KeyError, TypeError, ValueError) as error:
        raise Unreachable(f"it answered without results ({error})", f"結果のない応答が返りました（{error}）") from None
    if any("target" not in result for result in results):
        raise Unreachable("it answered results without targets", "対象のない結果が返りました")
    return results


def _said(body: bytes) -> str:
    """The refusal's `error` text (web.buddy says why in it), made safe to print on one line; "" without one."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return ""
    return re.sub(r"[^\x20-\x7e]", "?", str(error or ""))[:200]


def _refusal(code: int, said: str) -> Unreachable:
    """What the friend refused, told apart by what it said: a probe of targets that are not at our address as it
    sees us (`ours` names another address, or we reach it through another one), or our token."""
    if "not at your address" in said:
        return Unreachable(
            f"it refused to probe a target that is not at our address as it sees us ({said}; HTTP {code})",
            f"こちらのアドレスではない対象の確認を拒否されました（{said}、HTTP {code}）",
        )
    return Unreachable(f"it refused our token (HTTP {code})", f"トークンが拒否されました（HTTP {code}）")


class Unreachable(Exception):
    def __init__(self, why: str, ja: str) -> None:
        super().__init__(why)
        self.ja = ja
