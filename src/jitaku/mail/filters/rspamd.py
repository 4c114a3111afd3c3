"""rspamd over its HTTP protocol (https://rspamd.com/doc/developers/protocol.html): POST /checkv2 to the normal
worker with the message as the body and the envelope in request headers, a JSON verdict back; POST /learnspam or
/learnham to the controller, which alone learns (the normal worker answers learn commands "invalid command").

A connection for each request (rspamd closes each after its answer), through http1.py, at most CONNECTIONS at
once; every answer is read up to MAX_ANSWER bytes within `[filters] timeout`, and anything else (refused, hung,
HTTP 500, not JSON, JSON without the fields) is an EngineError."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from jitaku.mail.filters.http1 import HttpFailure, Origin, request
from jitaku.mail.filters.verdict import EngineError, Envelope, Verdict

if TYPE_CHECKING:
    from jitaku.config import FiltersSettings

ENGINE = "rspamd"
MAX_ANSWER = 1024 * 1024  # a verdict with every symbol and its options is a few kB; this is far beyond any
CONNECTIONS = 16  # at once; more scans wait their turn within the timeout
ACTIONS = frozenset({"reject", "add header", "rewrite subject", "greylist", "soft reject", "no action"})
# Debian's (and rspamd's) default listeners: the proxy 11332, the normal worker 11333, the controller 11334.
DEFAULT_CONTROLLER_PORT = 11334
SCANNING_PORTS = (11332, 11333)


def controller_url_for(url: str) -> str:
    """The controller beside the worker at URL, as rspamd listens by default: port 11334 in place of 11332 or
    11333; any other URL is taken to be a controller already (it answers /checkv2 as well)."""
    parts = urlsplit(url)
    if parts.port in SCANNING_PORTS and parts.hostname:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        return urlunsplit(parts._replace(netloc=f"{host}:{DEFAULT_CONTROLLER_PORT}"))
    return url


def _header(value: str) -> bytes:
    # An address or a HELO is the client's text: no CR/LF may reach the request (header injection); UTF-8 for
    # SMTPUTF8 addresses, which rspamd reads as such.
    return value.replace("\r", " ").replace("\n", " ").encode("utf-8", "replace")


class Rspamd:
    """A Scanner and a Learner: `scan` asks the normal worker at URL, `learn` the controller (CONTROLLER_URL,
    by default the one rspamd's default ports put beside URL) with PASSWORD when one is set."""

    name = ENGINE

    def __init__(self, url: str, *, timeout: float, password: str = "", controller_url: str | None = None) -> None:
        self.url = url.rstrip("/")
        self.controller_url = (controller_url or controller_url_for(self.url)).rstrip("/")
        self.password = password
        self.timeout = timeout
        self._worker, self._controller = Origin.of(self.url), Origin.of(self.controller_url)
        self._slots = asyncio.Semaphore(CONNECTIONS)

    @classmethod
    def from_settings(cls, filters: FiltersSettings) -> Rspamd:
        if filters.rspamd is None:
            raise ValueError("[filters.rspamd] is not set")
        rspamd = filters.rspamd
        return cls(
            rspamd.url,
            timeout=filters.timeout,
            password=rspamd.password,
            controller_url=rspamd.controller_url or None,
        )

    async def scan(self, message: bytes, envelope: Envelope) -> Verdict:
        headers: list[tuple[bytes, bytes]] = [
            (b"IP", _header(envelope.client)),
            (b"Helo", _header(envelope.helo)),
            (b"From", _header(envelope.sender)),
            (b"Queue-Id", _header(envelope.queue_id)),
        ]
        headers += [(b"Rcpt", _header(recipient)) for recipient in envelope.recipients]
        if envelope.user:
            headers.append((b"User", _header(envelope.user)))
        if envelope.hostname:
            headers.append((b"Hostname", _header(envelope.hostname)))
        status, body = await self._post(self._worker, "/checkv2", message, headers)
        if status != 200:
            raise EngineError(ENGINE, f"HTTP {status} from /checkv2{_error_text(body)}")
        return _verdict(_json(body))

    async def learn(self, message: bytes, spam: bool) -> bool:
        path = "/learnspam" if spam else "/learnham"
        headers = [(b"Password", _header(self.password))] if self.password else []
        status, body = await self._post(self._controller, path, message, headers)
        error = _error_text(body)
        # rspamd answers 208 (Already Reported) with "... has been already learned as spam, ignore it"; older ones
        # answered 4xx with the same words.
        if status == 208 or "already learned" in error:
            return False
        if status != 200:
            if status == 404 or "invalid command" in error:
                error += " (is the controller's URL that of the normal worker?)"
            raise EngineError(ENGINE, f"HTTP {status} from {path}{error}")
        answer = _json(body)
        if answer.get("success") is not True:
            raise EngineError(ENGINE, f"{path} did not succeed{error}")
        return True

    async def ping(self) -> None:
        """rspamd's workers answer GET /ping with "pong" (for the health check); EngineError otherwise."""
        status, body = await self._ask(self._worker, "GET", "/ping", [], b"", limit=1024)
        if status != 200 or body.strip().lower() != b"pong":
            raise EngineError(ENGINE, f"HTTP {status} from /ping{_error_text(body)}")

    async def close(self) -> None:
        """Nothing stays open between requests; for the Scanner protocol."""

    async def _post(
        self, origin: Origin, path: str, body: bytes, headers: list[tuple[bytes, bytes]]
    ) -> tuple[int, bytes]:
        return await self._ask(origin, "POST", path, headers, body, limit=MAX_ANSWER)

    async def _ask(
        self, origin: Origin, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes, limit: int
    ) -> tuple[int, bytes]:
        try:
            async with asyncio.timeout(self.timeout), self._slots:
                return await request(origin, method, path, headers, body, limit)
        except TimeoutError:
            raise EngineError(ENGINE, f"no answer within {self.timeout:g} s") from None
        except HttpFailure as failure:
            raise EngineError(ENGINE, str(failure)) from None


def _json(body: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise EngineError(ENGINE, f"answer is not JSON: {body[:60]!r}") from None
    if not isinstance(answer, dict):
        raise EngineError(ENGINE, "answer is not a JSON object")
    return answer


def _error_text(body: bytes) -> str:
    try:
        answer = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    error = answer.get("error") if isinstance(answer, dict) else None
    return f": {str(error)[:200]}" if error else ""


def _verdict(answer: dict[str, Any]) -> Verdict:
    score, action, symbols = answer.get("score"), answer.get("action"), answer.get("symbols", {})
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise EngineError(ENGINE, "answer has no score")
    if action not in ACTIONS:
        raise EngineError(ENGINE, f"answer has no known action: {str(action)[:40]!r}")
    if not isinstance(symbols, dict):
        raise EngineError(ENGINE, "answer's symbols are not an object")
    weights: dict[str, float] = {}
    for name, detail in symbols.items():
        weight = detail.get("score", 0.0) if isinstance(detail, dict) else 0.0
        weights[str(name)] = float(weight) if isinstance(weight, int | float) else 0.0
    ranked = sorted(weights, key=lambda name: (-weights[name], name))
    return Verdict(
        engine=ENGINE, score=float(score), action=action, symbols=tuple(ranked), reason=_reason(answer, ranked, weights)
    )


def _reason(answer: dict[str, Any], ranked: list[str], weights: dict[str, float]) -> str:
    messages = answer.get("messages")
    if isinstance(messages, dict):
        said = messages.get("smtp_message") or next((text for text in messages.values() if isinstance(text, str)), "")
        if isinstance(said, str) and said.strip():
            return " ".join(said.split())[:200]
    top = [f"{name}({weights[name]:g})" for name in ranked[:4] if weights[name] > 0]
    return ", ".join(top)
