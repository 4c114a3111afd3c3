"""What the two boxes of a pair say to each other over their web listeners (issue 24): "how do you stand?"
(POST /api/ha/state) and "stop serving as the primary" (POST /api/ha/fence), asked by `jitaku failover`,
`jitaku switchover` and a primary starting up that wonders whether it was failed over meanwhile.

Both boxes hold the replication secret (DIR/ha/replication.secret: `standby allow` made it, `standby setup` copied
it), so it signs the requests: a JSON body with the time it was made (`at`), its HMAC-SHA256 under the secret in
the X-Jitaku-HA header. The server refuses a wrong or missing signature, a body older or newer than MAX_SKEW (a
recorded request replayed later), a body over MAX_BODY, or any request when it has no secret. A request
replayed within MAX_SKEW does no more than the first did: a state is only read, and a fence in place is answered
202 again. The answer is
signed too, over the request's signature and the answer's body: a box on the LAN that is not the peer cannot
make a primary believe the other one is newer (which would fence it), nor replay an answer of another request.
TLS, when the URL is https, is not verified: the boxes reach each other by LAN address, which no certificate
names; the signatures are what the two trust.

The secret is never logged, never in an error, never in a URL.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import time
from pathlib import Path
from typing import Any

from jitaku.config import Config
from jitaku.ports import HTTPS_PORT

HEADER = "X-Jitaku-HA"
MAX_BODY = 4096  # bytes of a request's body
MAX_ANSWER = 65536  # bytes of an answer the client reads
MAX_SKEW = 60.0  # seconds between a request's `at` and the server's clock
PEER_HOST_NAME = "peer_host"
PURPOSES = ("failover", "switchover")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")


class PeerError(Exception):
    """The peer answered, but not as a peer should (refused us, or said something we cannot read); one line for a
    person. STATUS: the HTTP status it answered with, when that was the trouble (a 5xx is a box whose database is
    restarting, not one that refuses us)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Refused(Exception):
    """A request the server does not take; the message says why, for the log, without the secret."""

    status = 403


class TooLarge(Refused):
    status = 413


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def sign_answer(secret: str, request_signature: str, body: bytes) -> str:
    """The answer's signature: over the request's signature too, so that it answers that request alone."""
    return sign(secret, request_signature.encode() + b"\n" + body)


def verify(secret: str | None, body: bytes, signature: str | None, now: float | None = None) -> dict[str, Any]:
    """The request's JSON object, once its size, signature and time pass; else Refused (TooLarge for size)."""
    if len(body) > MAX_BODY:
        raise TooLarge(f"body over {MAX_BODY} bytes")
    if not secret:
        raise Refused("no replication secret on this box")
    if not signature or not _SIGNATURE.fullmatch(signature):
        raise Refused(f"no {HEADER} signature")
    if not hmac.compare_digest(sign(secret, body), signature):
        raise Refused("wrong signature")
    try:
        fields = json.loads(body)
    except ValueError:
        raise Refused("body is not JSON") from None
    if not isinstance(fields, dict):
        raise Refused("body is not a JSON object")
    at = fields.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float):
        raise Refused('body has no "at" time')
    now = time.time() if now is None else now
    if not abs(now - at) <= MAX_SKEW:  # NaN fails too
        raise Refused(f"request made {now - at:.0f} s from now: clocks apart, or replayed")
    return dict(fields)


def peer_host_path(config: Config) -> Path:
    return config.data_dir / "ha" / PEER_HOST_NAME


def remember_host(config: Config, host: str) -> None:
    """HOST (the primary's, or the box that fenced us) in DIR/ha/peer_host, 0600: where peer_url looks when no
    `[ha] peer` is set."""
    from jitaku.ha import cluster

    if not valid_host(host):
        raise ValueError(f"{host!r} is neither an IP address nor a host name")
    path = peer_host_path(config)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    cluster.write_private(path, host + "\n", None)


def valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return len(host) <= 253 and _HOSTNAME.fullmatch(host) is not None
    return True


def peer_url(config: Config) -> str | None:
    """`[ha] peer`; else http://HOST:PORT, HOST remembered in DIR/ha/peer_host and PORT this box's own first plain
    `[web] listen` port (the pair's boxes are configured alike), or https://HOST when it listens on 443 alone (`init
    --public` listens on 443 then 80: plain HTTP to 443 would find no peer); None when neither is known. The
    requests are signed with the replication secret, so a certificate the peer's LAN address is not on does not
    matter."""
    settings = config.settings
    if settings.ha.peer:
        return settings.ha.peer
    try:
        host = peer_host_path(config).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not valid_host(host) or not settings.web.listen:
        return None
    name = f"[{host}]" if ":" in host else host
    plain = [item.port for item in settings.web.listen if item.port != HTTPS_PORT]
    return f"http://{name}:{plain[0]}" if plain else f"https://{name}"


def state(url: str, secret: str, timeout: float) -> dict[str, Any] | None:
    """The peer's state (role, fenced, timeline, lsn, name, cluster, checkpoint, synchronous: the names of a
    primary's synchronous standbys that keep up; box: its jitaku.ha.box id); None when it cannot be reached
    within TIMEOUT seconds. PeerError when it refuses us or answers what we cannot read."""
    answer = _ask(url, "/api/ha/state", secret, {}, timeout)
    if answer is None:
        return None
    status, fields = answer
    if status != 200:
        raise PeerError(f"{url} answered the state request with {status}: {_said(fields)}", status)
    if fields.get("role") not in ("primary", "standby") or not isinstance(fields.get("fenced"), bool):
        raise PeerError(f"{url} answered the state request without a role: is it a jitaku of this version?")
    return fields


def fence(url: str, secret: str, purpose: str, by: str, rejoin: str | None, timeout: float) -> bool:
    """Tell the peer to stop serving as the primary: True once it has (202); False when it cannot be reached
    within TIMEOUT seconds. PeerError when it refuses (403: not our secret, or clocks apart; 409: it is not the
    primary) or answers what we cannot read."""
    return fence_answer(url, secret, purpose, by, rejoin, timeout) is not None


def fence_answer(
    url: str, secret: str, purpose: str, by: str, rejoin: str | None, timeout: float
) -> dict[str, Any] | None:
    """fence(), and the 202's fields ({"fenced": true, "lsn": its WAL position or null}); None when the peer
    cannot be reached within TIMEOUT seconds."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose {purpose!r}: expected one of {', '.join(PURPOSES)}")
    answer = _ask(url, "/api/ha/fence", secret, {"purpose": purpose, "by": by, "rejoin": rejoin}, timeout)
    if answer is None:
        return None
    status, fields = answer
    if status == 202 and fields.get("fenced") is True:
        return fields
    raise PeerError(f"{url} did not fence itself ({status}): {_said(fields)}")


def _said(fields: dict[str, Any]) -> str:
    """What the peer said, made safe to print on one line."""
    error = str(fields.get("error") or "no reason given")
    return re.sub(r"[^\x20-\x7e]", "?", error)[:200]


def _ask(url: str, path: str, secret: str, fields: dict[str, Any], timeout: float) -> tuple[int, dict[str, Any]] | None:
    """POST FIELDS (with `at`), signed, to URL+PATH: (status, the answer's JSON object), the answer's signature
    checked when the status is 2xx; None when unreachable or slower than TIMEOUT in all."""
    import httpx

    body = json.dumps({"at": time.time(), **fields}, separators=(",", ":")).encode()
    signature = sign(secret, body)
    deadline = time.monotonic() + timeout
    # identity: the bound is on the bytes as sent, never on what a small compressed answer would grow to
    headers = {HEADER: signature, "Content-Type": "application/json", "Accept-Encoding": "identity"}
    try:
        with (
            httpx.Client(timeout=timeout, verify=False, trust_env=False, follow_redirects=False) as client,
            client.stream("POST", url.rstrip("/") + path, content=body, headers=headers) as response,
        ):
            received = bytearray()
            for chunk in response.iter_raw():
                received += chunk
                if len(received) > MAX_ANSWER:
                    raise PeerError(f"{url} answered with more than {MAX_ANSWER} bytes: is it a jitaku?")
                if time.monotonic() > deadline:
                    return None
            status, answered = response.status_code, response.headers.get(HEADER, "")
    except (httpx.TransportError, OSError):
        return None
    expected = sign_answer(secret, signature, bytes(received)).encode()
    if 200 <= status < 300 and not hmac.compare_digest(expected, answered.encode(errors="replace")):
        raise PeerError(f"{url} answered without our secret's signature: another box, or another secret")
    try:
        answer = json.loads(received)
    except ValueError:
        answer = None
    if not isinstance(answer, dict):
        raise PeerError(f"{url} answered {status} with no JSON object: is it a jitaku's web?")
    return status, answer
