"""The pair's endpoints (jitaku.ha.peer says who asks and how requests are signed): POST /api/ha/state, how this
box stands, and POST /api/ha/fence, which makes this box stop serving as the primary.

Fencing writes DIR/ha/fenced (jitaku.ha.fence) first, then tells the daemon (ON_FENCE) and waits, up to
STOP_TIMEOUT, for it to stop taking mail and let the floating address go, then answers 202: the file outlives
whatever happens next, so a box told to step down never comes back as a primary by a restart, and the peer that
promotes itself after the 202 finds the address free; the 202 says the box's WAL position then (`lsn`,
pg_current_wal_lsn(): nothing writes any more), which the peer replays before it promotes. It is
for a primary alone: a standby answers 409. A box fenced already answers 202 again when the fence asked for has
the purpose of the one it has (a failover retried after a lost answer must not fail), 409 when it has another.
Without ON_FENCE (a web app not run by the daemon) it answers 503 and writes nothing. A fence whose `by` is this
box's own id (jitaku.ha.box: it came back to the box that sent it) is 409, and a fence whose signature was seen
already within peer.MAX_SKEW (a recorded one replayed) 403: neither fences.

Both answer on a standby's read-only web too (jitaku.web.read_only lets them through): failover asks a standby's
state, and a fenced box serves read-only. Every answer to a request that passed its signature is signed (the
header over the request's signature and the answer's body); a refusal is not, having nobody to prove itself to.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from jitaku import log
from jitaku.config import Config
from jitaku.ha import box, fence, peer, role, standby, sync
from jitaku.ha.fence import Fence

STATE_TIMEOUT = 5.0  # seconds the database may take to say how it stands
STOP_TIMEOUT = 10.0  # seconds the daemon may take, once fenced, to close its mail listeners and release the address
MAX_BY = 200  # characters of who fenced us
MAX_SEEN = 256  # fence signatures remembered (each for peer.MAX_SKEW seconds): a replay of one is refused
_PRINTABLE = re.compile(r"[\x21-\x7e]{1,200}")
_CLUSTER_TIMELINE = "SELECT received_tli FROM pg_stat_wal_receiver"
_REPLICATION = """
SELECT application_name, sync_state, state, coalesce((pg_current_wal_lsn() - flush_lsn)::bigint, -1),
       coalesce((flush_lsn - '0/0'::pg_lsn)::bigint, -1)
FROM pg_stat_replication
"""
PROGRESS_WAIT = 0.5  # seconds a synchronous standby with WAL still to flush has to show that it flushes on


class _Unreadable(Exception):
    """This box's database cannot say how it stands; one line for the peer."""


def routes(
    config: Config, on_fence: Callable[[], Awaitable[None] | None] | None, standby_web: bool, waiting: bool = False
) -> list[Route]:
    """STANDBY_WEB: the daemon serves this box as a standby (what it says when its database cannot be asked).
    WAITING: it serves a primary waiting for its peer after a cold start (jitaku.ha.mode): its state says so."""
    refusals = log.Throttled()
    fencing = asyncio.Lock()  # two fences at once: the second sees the first's file, never both write
    seen = _Seen()

    async def signed(request: Request, once: bool = False) -> tuple[str, str, dict[str, Any]] | Response:
        """(the secret, the request's signature, its fields), or the refusal to answer. ONCE: a signature seen
        already within peer.MAX_SKEW is refused (a replay)."""
        client = request.client.host if request.client else "?"
        try:
            body = await _body(request)
            secret = _secret(config)
            signature = request.headers.get(peer.HEADER)
            fields = peer.verify(secret, body, signature)
            if once:
                seen.check(str(signature))
        except peer.Refused as refused:
            refusals.event(
                str(refused.status), "ha_request_refused", path=request.url.path, client=client, reason=str(refused)
            )
            return JSONResponse({"error": _public(refused)}, status_code=refused.status)
        assert secret is not None and signature is not None
        return secret, signature, fields

    async def state(request: Request) -> Response:
        checked = await signed(request)
        if isinstance(checked, Response):
            return checked
        secret, signature, _fields = checked
        try:
            found = await asyncio.wait_for(asyncio.to_thread(_state, config, waiting), STATE_TIMEOUT)
        except _Unreadable as error:
            return _answer(secret, signature, {"error": str(error)}, 503)
        except TimeoutError:
            message = f"this box's database did not say how it stands within {STATE_TIMEOUT:g} s"
            return _answer(secret, signature, {"error": message}, 503)
        return _answer(secret, signature, found, 200)

    async def fence_us(request: Request) -> Response:
        checked = await signed(request, once=True)
        if isinstance(checked, Response):
            return checked
        secret, signature, fields = checked
        asked = _fence_asked(fields)
        if isinstance(asked, str):
            return _answer(secret, signature, {"error": asked}, 400)
        if asked.by == await asyncio.to_thread(box.box_id, config):
            log.event("ha_request_refused", path=request.url.path, reason="a fence sent by this box itself")
            message = (
                f"this fence was sent by this box itself (or by one with the same {box.NAME}: a box whose data "
                f"directory was copied from this one's shares {config.data_dir}/ha/{box.NAME}; run `jitaku "
                "standby setup` on the standby, which makes it a new one)"
            )
            return _answer(secret, signature, {"error": message}, 409)
        async with fencing:
            existing = await asyncio.to_thread(fence.read, config)
            if existing is not None:
                if existing.purpose == asked.purpose:
                    return _answer(secret, signature, {"fenced": True, "lsn": await _lsn(config)}, 202)
                message = f"this box is fenced already ({existing.purpose}, by {existing.by})"
                return _answer(secret, signature, {"error": message}, 409)
            if await _standby(config, standby_web):
                return _answer(secret, signature, {"error": "this box is a standby, not the primary"}, 409)
            if on_fence is None:
                return _answer(secret, signature, {"error": "fencing not available: this web is not the daemon's"}, 503)
            client = request.client.host if request.client else None
            await asyncio.to_thread(_write, config, asked, client)
            log.event("ha_fenced", purpose=asked.purpose, by=asked.by, client=client, rejoin=asked.rejoin)
            stopping = on_fence()
            if stopping is not None:
                try:
                    await asyncio.wait_for(stopping, STOP_TIMEOUT)
                except TimeoutError:  # fenced all the same (the file): the peer is told, and the log says so
                    log.event("ha_fence_slow", waited=STOP_TIMEOUT)
            return _answer(secret, signature, {"fenced": True, "lsn": await _lsn(config)}, 202)

    async def guarded(request: Request) -> Response:
        """Never a traceback to the peer nor in the log: one line for each."""
        try:
            return await (state if request.url.path == "/api/ha/state" else fence_us)(request)
        except Exception as error:  # noqa: BLE001 - the peer gets one line, the log the reason
            log.event("ha_request_failed", path=request.url.path, error=f"{type(error).__name__}: {error}"[:300])
            return JSONResponse({"error": "this box failed to answer; see its log"}, status_code=500)

    return [Route("/api/ha/state", guarded, methods=["POST"]), Route("/api/ha/fence", guarded, methods=["POST"])]


class _Seen:
    """Signatures of the fences taken within peer.MAX_SKEW: at most MAX_SEEN, the oldest forgotten first."""

    def __init__(self) -> None:
        self._at: dict[str, float] = {}

    def check(self, signature: str) -> None:
        now = time.monotonic()
        for old in [old for old, at in self._at.items() if now - at > 2 * peer.MAX_SKEW]:
            del self._at[old]
        if signature in self._at:
            raise peer.Refused("a fence seen already: replayed")
        while len(self._at) >= MAX_SEEN:
            del self._at[next(iter(self._at))]
        self._at[signature] = now


async def _body(request: Request) -> bytes:
    """The body, read no further than MAX_BODY (BodyLimit bounds it larger, for every route)."""
    length = request.headers.get("content-length", "")
    if length.isdecimal() and int(length) > peer.MAX_BODY:
        raise peer.TooLarge(f"body over {peer.MAX_BODY} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > peer.MAX_BODY:
            raise peer.TooLarge(f"body over {peer.MAX_BODY} bytes")
    return bytes(body)


def _secret(config: Config) -> str | None:
    try:
        return standby.read_secret(standby.secret_path(config))
    except standby.StandbyError:
        return None


def _public(refused: peer.Refused) -> str:
    """What a refused caller is told: enough to fix its side, nothing of ours."""
    if isinstance(refused, peer.TooLarge):
        return str(refused)
    return "refused: not signed with this pair's replication secret, or the clocks of the two boxes differ"


def _answer(secret: str, request_signature: str, fields: dict[str, Any], status: int) -> Response:
    response = JSONResponse(fields, status_code=status)
    response.headers[peer.HEADER] = peer.sign_answer(secret, request_signature, bytes(response.body))
    return response


def _fence_asked(fields: dict[str, Any]) -> Fence | str:
    """The fence the request asks for, or why it is not one."""
    purpose, by, rejoin = fields.get("purpose"), fields.get("by"), fields.get("rejoin")
    if purpose not in peer.PURPOSES:
        return f"purpose: expected one of {', '.join(peer.PURPOSES)}"
    if not isinstance(by, str) or not _PRINTABLE.fullmatch(by):
        return f"by: expected who fences, printable, up to {MAX_BY} characters"
    if rejoin is not None:
        try:
            standby.parse_primary(rejoin if isinstance(rejoin, str) else "")
        except standby.StandbyError:
            return "rejoin: expected the new primary's PostgreSQL as HOST:PORT, or null"
    return Fence(purpose, by, time.time(), rejoin)


def _write(config: Config, asked: Fence, client: str | None) -> None:
    fence.write(config, asked)
    if client is not None and peer.valid_host(client):
        peer.remember_host(config, client)  # where this box finds its peer from now on (peer_url)


async def _lsn(config: Config) -> str | None:
    """The fenced box's WAL position, read once its mail listeners closed (nothing writes any more): the peer
    replays that far before it promotes, without another state request. None when the database cannot say in
    time (the peer asks its state then), or on SQLite."""
    try:
        found = await asyncio.wait_for(asyncio.to_thread(_database, config), STATE_TIMEOUT)
    except (_Unreadable, TimeoutError):
        return None
    lsn = found.get("lsn")
    return lsn if isinstance(lsn, str) and found.get("role") == role.PRIMARY else None


async def _standby(config: Config, standby_web: bool) -> bool:
    """Whether this box's cluster is a standby's; what the daemon serves as when the cluster cannot say in time."""
    if not role.postgresql(config):
        return False
    try:
        return await asyncio.wait_for(asyncio.to_thread(role.current, config), STATE_TIMEOUT) == role.STANDBY
    except Exception as error:  # noqa: BLE001 - a primary whose database is failing is fenced all the more
        log.event("ha_role_unknown", error=f"{type(error).__name__}: {error}"[:300], standby=standby_web)
        return standby_web


def _state(config: Config, waiting: bool = False) -> dict[str, Any]:
    """How this box stands (see jitaku.ha.peer.state), `waiting` while it waits for its peer after a cold start (a
    primary that takes nothing yet), with `error` when a re-join failed (jitaku.ha.rejoin); run
    in a thread: psycopg blocks. A fenced box's cluster is asked whether it runs, never taken from the fence file
    alone (a re-join may have started it, a daemon killed may have left it down)."""
    from jitaku.ha import rejoin

    fenced = fence.read(config)
    try:
        name = standby.slot_name(None)
    except standby.StandbyError:
        name = ""
    found: dict[str, Any] = {
        "box": box.box_id(config),  # a box that asks its own web (a pair on one host) knows it is not its peer
        "fenced": fenced is not None,
        "waiting": waiting,
        "name": name,
        "checkpoint": None,
        "error": None,
        "synchronous": [],
    }
    if fenced is not None:
        found["checkpoint"] = fenced.checkpoint
        found["error"] = rejoin.failure(config)
    if fenced is not None and _stopped(config, fenced):  # nothing to ask: the fence says where it stopped
        return {**found, "role": role.PRIMARY, "timeline": None, "lsn": fenced.checkpoint, "cluster": "stopped"}
    try:
        where = _database(config)
    except _Unreadable:
        if fenced is None:
            raise
        cluster = "running" if fenced.cluster == "stopped" else fenced.cluster
        return {**found, "role": role.PRIMARY, "timeline": None, "lsn": fenced.checkpoint, "cluster": cluster}
    cluster = "standby" if where["role"] == role.STANDBY else "running"
    if fenced is not None:  # it takes no write: no standby of it is synchronous for anything it acknowledges
        where = {**where, "synchronous": []}
    return {**found, **where, "cluster": cluster}


def _stopped(config: Config, fenced: Fence) -> bool:
    """Whether the fence says the cluster stopped (with its final checkpoint) and, a managed one, it is still down:
    its postmaster asked, since a re-join may have started it again."""
    if fenced.cluster != "stopped":
        return False
    if not config.settings.database.managed:
        return True
    from jitaku.ha import cluster

    return cluster.running(config) is None


def _database(config: Config) -> dict[str, Any]:
    """role, timeline, lsn from this box's cluster (none of the two on SQLite), and a primary's synchronous
    standbys that keep up (keeping_up). A standby watching for automatic failover (jitaku.ha.auto) looks for its
    own name there: only a standby named in the last answer before its primary went silent has every write that
    primary acknowledged."""
    from jitaku.ha.status import PRIMARY_TIMELINE, REPLAYED_TIMELINE

    if not role.postgresql(config):
        return {"role": role.PRIMARY, "timeline": None, "lsn": None, "synchronous": []}
    try:
        with role.connect(config) as connection:
            connection.execute(f"SET statement_timeout = {int(STATE_TIMEOUT * 1000)}")
            if role.one(connection, "SELECT pg_is_in_recovery()"):
                timeline = role.one(connection, _CLUSTER_TIMELINE) or role.one(connection, REPLAYED_TIMELINE)
                lsn = role.one(connection, "SELECT pg_last_wal_replay_lsn()::text")
                return {"role": role.STANDBY, "timeline": timeline, "lsn": lsn, "synchronous": []}
            timeline = role.one(connection, PRIMARY_TIMELINE)
            return {
                "role": role.PRIMARY,
                "timeline": timeline,
                "lsn": role.one(connection, "SELECT pg_current_wal_lsn()::text"),
                "synchronous": _keeping_up(connection),
            }
    except Exception as error:  # noqa: BLE001 - psycopg's errors and the OS's: the peer is told in a line
        raise _Unreadable(f"cannot read this box's database: {type(error).__name__}") from None


def _keeping_up(connection: Any) -> list[str]:
    """keeping_up, from a look at pg_stat_replication, and a second one PROGRESS_WAIT later when a synchronous
    standby had WAL still to flush at the first (a write under way: it keeps up if it flushes on)."""
    setting = str(role.one(connection, "SELECT current_setting('synchronous_standby_names')") or "")
    rows = connection.execute(_REPLICATION).fetchall()
    if not any(row[1] == "sync" and row[3] != 0 for row in rows):
        return keeping_up(rows, setting)
    time.sleep(PROGRESS_WAIT)
    return keeping_up(connection.execute(_REPLICATION).fetchall(), setting, {str(row[0]): int(row[4]) for row in rows})


def keeping_up(rows: list[tuple[Any, ...]], setting: str, before: dict[str, int] | None = None) -> list[str]:
    """The synchronous standbys that keep up, of pg_stat_replication's ROWS (application_name, sync_state, state,
    bytes of WAL not yet flushed there, its flush position as a number) and synchronous_standby_names' SETTING: a
    commit waits for each (sync_state 'sync', never 'quorum': under ANY k of n, one standby may lack a write the
    others acknowledged), and the primary's sync task (jitaku.ha.sync) does not count it silent: it streams, and
    has flushed everything, or has flushed further since BEFORE (each one's flush position at an earlier look).
    A walsender still says 'sync' while its flush position stands still, when the primary may be timing it out
    already: a standby named here has every write the primary acknowledged, and the primary's timer for it
    started no earlier than about sync.POLL before this answer (jitaku.ha.auto leaves a margin for it)."""
    names = sync.standby_names(setting)
    earlier = before or {}
    return sorted(
        {
            str(name)
            for name, sync_state, state, behind, flushed in rows
            if sync_state == "sync"
            and state == "streaming"
            and (name in names or "*" in names)
            and (behind == 0 or (name in earlier and flushed > earlier[name]))
        }
    )
