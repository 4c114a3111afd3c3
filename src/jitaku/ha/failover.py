"""Making the standby the primary: `jitaku failover` (the primary is gone, or must go now) and `jitaku switchover`
(both boxes up: hand the primary's part over, losing nothing, and the old primary becomes the standby).

Both run on the standby, beside its daemon, and do only what the daemon cannot: PostgreSQL is promoted here
(`pg_promote`), and the daemon, which watches its cluster, serves as a primary once it sees it no longer in
recovery (jitaku.app). The command is done when a person's mail would be taken again: when this box's own MX
greets with 220, the moment that counts for "mail is accepted again within 30 s".

Failover fences the old primary first when it answers (jitaku.ha.peer, over its web listener): it stops serving and
releases the floating address, so that no second primary takes mail the new one never sees. One that does not
answer is said to be so and the promotion goes on: it is down, and the split-brain guard keeps it from serving as
a primary when it comes back (it sees our newer timeline). One that answers and refuses stops the failover unless
forced: it is alive and still the primary.

Switchover asks the old primary to stop its cluster cleanly and to come back as our standby (purpose "switchover",
`rejoin` = our PostgreSQL). Its final checkpoint is the last thing it ever wrote as a primary; once our cluster has
replayed past it, every write it acknowledged is here, and only then do we promote. Before that, the old primary
is let in (a pg_hba.conf line for its address, its physical slot made here while the WAL it will ask for is still
in pg_wal), so that it streams from us as soon as it starts as a standby.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from jitaku import log, ports, serve_lock
from jitaku.config import Config, Listen
from jitaku.ha import box, role, standby

PROMOTE_WAIT = 60  # seconds pg_promote waits for the end of recovery
PEER_TIMEOUT = 3.0  # seconds the old primary has to answer a failover's fence
SWITCH_PEER_TIMEOUT = 10.0  # a switchover's: both boxes are up, it may be busy
GREETING_TIMEOUT = 45.0  # seconds the daemon may take to serve as a primary once the cluster is promoted
STOPPED_TIMEOUT = 60.0  # seconds the old primary may take to stop its cluster (a fast shutdown, then immediate)
CATCH_UP_TIMEOUT = 30.0  # seconds to replay the old primary's last WAL, which streamed here as it was written
STREAM_TIMEOUT = 60.0  # seconds the old primary may take to stream from us as a standby
POLL = 0.2

Say = Callable[[str], None]


class FailoverError(Exception):
    """The promotion cannot be done, or did not finish; one line for a person."""


@dataclass(frozen=True)
class Promoted:
    seconds: float  # from the command to this box's first 220
    peer: str  # what became of the old primary, in words


@dataclass(frozen=True)
class Switched:
    seconds: float
    old_primary: str  # its name (its slot here)
    streaming: bool  # it streams from us


def failover(config: Config, started: float, say: Say, force: bool = False) -> Promoted:
    """Promote this standby, fencing the old primary when it answers. STARTED: time.monotonic() at the command."""
    secret = _check(config)
    url = _peer_url(config)
    if url is None:
        peer = "no peer known ([ha] peer unset and no DIR/ha/peer_host): not fenced"
    else:
        peer = _fence_for_failover(url, secret, force, box.box_id(config))
    say(f"old primary: {peer}")
    _promote(config)
    say("promoted this box's PostgreSQL")
    seconds = _wait_greeting(config, started)
    log.event("ha_failover", seconds=round(seconds, 2), peer=url or "none")
    return Promoted(seconds, peer)


def switchover(config: Config, started: float, say: Say) -> Switched:
    """Hand the primary's part over from the peer to this box, losing nothing; the peer re-joins as our standby."""
    from jitaku.ha import peer

    secret = _check(config)
    url = _peer_url(config)
    if url is None:
        raise FailoverError("no peer known: set [ha] peer to the primary's web URL (e.g. http://192.168.1.10:8080)")
    try:
        state = peer.state(url, secret, SWITCH_PEER_TIMEOUT)
    except peer.PeerError as error:
        raise FailoverError(str(error)) from None
    if state is None:
        raise FailoverError(f"the primary at {url} does not answer: if it is down, run `jitaku failover` instead")
    if state.get("role") != role.PRIMARY or state.get("fenced"):
        raise FailoverError(
            f"the peer at {url} is not a primary serving (role {state.get('role')}, fenced "
            f"{bool(state.get('fenced'))}): nothing to switch over from"
        )
    name = str(state.get("name") or "")
    if not name:
        raise FailoverError(f"the peer at {url} did not say its name (its replication slot here)")
    sender = _streaming_from(config)
    rejoin = _our_address(config, sender)
    try:
        fenced = peer.fence(url, secret, "switchover", box.box_id(config), rejoin, SWITCH_PEER_TIMEOUT)
    except peer.PeerError as error:
        raise FailoverError(f"the primary at {url} refused to hand over: {error}") from None
    if not fenced:
        raise FailoverError(f"the primary at {url} stopped answering: nothing was changed here; try again")
    say(f"fenced the primary at {url}; waiting for it to stop its cluster")
    checkpoint, strictly = _wait_stopped(url, secret)
    _wait_replayed(config, checkpoint, strictly)
    say(f"replayed the old primary's WAL past its final checkpoint {checkpoint}")
    standby.allow_replication(config, sender)
    _make_slot(config, name)
    _promote(config)
    say("promoted this box's PostgreSQL")
    seconds = _wait_greeting(config, started)
    streaming = _wait_streaming_to(config, name)
    log.event("ha_switchover", seconds=round(seconds, 2), peer=url, old_primary=name, streaming=streaming)
    return Switched(seconds, name, streaming)


def ready(config: Config) -> None:
    """Refuse, before the cluster is touched, a box that has none to promote or whose daemon does not run (the
    daemon serves as the primary once promoted; and a command that started the cluster of a dead old primary
    would bring it up as a primary)."""
    if not config.settings.database.managed or not role.postgresql(config):
        raise FailoverError(
            f"{config.data_dir}'s store is not a PostgreSQL cluster of jitaku's own: there is no standby to promote"
        )
    if not serve_lock.running(config.data_dir):
        raise FailoverError(f"jitaku serve is not running on {config.data_dir}: start jitaku serve first")


def _check(config: Config) -> str:
    """Refuse what cannot be promoted; the replication secret (the peer's requests are signed with it)."""
    ready(config)
    if role.current(config) == role.PRIMARY:
        raise FailoverError("this box is the primary already")
    path = standby.secret_path(config)
    if not path.exists():
        raise FailoverError(f"no replication secret in {path}: is this box a standby `jitaku standby setup` made?")
    try:
        return standby.read_secret(path)
    except standby.StandbyError as error:
        raise FailoverError(str(error)) from None


def _peer_url(config: Config) -> str | None:
    from jitaku.ha import peer

    return peer.peer_url(config)


def _fence_for_failover(url: str, secret: str, force: bool, by: str) -> str:
    """Fence the old primary if it answers; what became of it, in words. One alive that refuses stops us."""
    from jitaku.ha import peer

    try:
        if peer.fence(url, secret, "failover", by, None, PEER_TIMEOUT):
            return f"fenced at {url}"
        return f"no answer from {url} in {PEER_TIMEOUT:.0f} s: not fenced, going on"
    except peer.PeerError as error:
        try:
            state = peer.state(url, secret, PEER_TIMEOUT)
        except peer.PeerError:
            state = None
        if state is not None and state.get("fenced"):
            return f"fenced already at {url}"
        if state is not None and state.get("role") == role.PRIMARY and not force:
            raise FailoverError(
                f"the old primary at {url} is up and refused to be fenced ({error}): stop jitaku there, or give "
                "--force to promote anyway (two primaries would then take mail)"
            ) from None
        return f"not fenced at {url} ({error}), going on"


def _promote(config: Config) -> None:
    with role.connect(config) as connection:
        if not role.one(connection, "SELECT pg_is_in_recovery()"):
            return  # promoted meanwhile (by the daemon's own watch, a person): what we wanted
        if not role.one(connection, f"SELECT pg_promote(true, {PROMOTE_WAIT})"):
            raise FailoverError(
                f"PostgreSQL did not finish its promotion within {PROMOTE_WAIT} s: see {config.postgres_dir}/log"
            )
    log.event("ha_promote", data_dir=str(config.data_dir))


def mail_address(config: Config) -> tuple[str, int]:
    """Where this box's MX listens now (DIR/ports.json, else the config), as a client here reaches it."""
    listening = ports.read(config.data_dir) or {}
    for name, section in (("mx", "smtp"), ("submission", "submission")):
        addresses = listening.get(name) or getattr(config.settings, section).listen
        if addresses:
            return _reached(addresses[0])
    raise FailoverError("this box has no SMTP listener ([smtp] listen and [submission] listen are empty)")


def _reached(listen: Listen) -> tuple[str, int]:
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "*": "127.0.0.1"}.get(listen.host, listen.host)
    return host, listen.port


def _wait_greeting(config: Config, started: float) -> float:
    """Seconds from STARTED to the first 220 from this box's MX (the daemon serving as a primary)."""
    host, port = mail_address(config)
    deadline = time.monotonic() + GREETING_TIMEOUT
    last = "no answer"
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as connection:
                line = connection.makefile("rb").readline(512)
            if line.startswith(b"220"):
                return time.monotonic() - started
            last = line.decode("ascii", "replace").strip() or "closed at once"
        except OSError as error:
            last = error.strerror or str(error)
        if time.monotonic() > deadline:
            raise FailoverError(
                f"promoted, but this box's MX ({host}:{port}) does not greet with 220 after {GREETING_TIMEOUT:.0f} s"
                f" (last: {last}): see the log of jitaku serve"
            )
        time.sleep(POLL)


def _streaming_from(config: Config) -> str:
    """The host our WAL receiver streams from (the old primary, as our cluster reaches it); refused when it does
    not stream: a switchover would then have to wait for WAL it may never get."""
    with role.connect(config) as connection:
        row = connection.execute("SELECT status, sender_host FROM pg_stat_wal_receiver").fetchone()
    if row is None or row[0] != "streaming" or not row[1]:
        raise FailoverError(
            "this box does not stream from the primary (see `jitaku ha status`): a switchover would lose what it "
            "has not received; fix replication first, or run `jitaku failover` if the primary is gone"
        )
    return str(row[1])


def _our_address(config: Config, primary_host: str) -> str:
    """Our cluster as the old primary reaches it, HOST:PORT: a [database] listen address, or, when it is a
    wildcard (or loopback and the primary on another box), the address this box routes to the primary from."""
    listen = config.settings.database.listen
    wildcard = {"0.0.0.0", "::", "*"}
    remote = not _loopback(primary_host)
    for address in listen:
        if address.host not in wildcard and not (remote and _loopback(address.host)):
            return str(address)
    if remote:
        family = socket.AF_INET6 if ":" in primary_host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((primary_host, 9))  # nothing is sent: the kernel picks the source address
            return str(Listen(probe.getsockname()[0], listen[0].port))
    return str(Listen("127.0.0.1", listen[0].port))


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def _wait_stopped(url: str, secret: str) -> tuple[str, bool]:
    """The old primary's final checkpoint LSN, once its cluster stopped (the fence file says it), and True: we
    must replay past it. When it was quicker than our polls and runs as a standby already (its fence file
    cleared), its replay position, the end of that checkpoint, and False: we must have replayed as far."""
    from jitaku.ha import peer

    deadline = time.monotonic() + STOPPED_TIMEOUT
    state: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        with contextlib.suppress(peer.PeerError):  # a box stopping its cluster may answer 500 for a moment
            state = peer.state(url, secret, SWITCH_PEER_TIMEOUT)
        if state is not None and state.get("checkpoint") and state.get("cluster") in ("stopped", "standby"):
            return str(state["checkpoint"]), True
        if state is not None and state.get("role") == role.STANDBY and not state.get("fenced") and state.get("lsn"):
            return str(state["lsn"]), False
        time.sleep(POLL)
    raise FailoverError(
        f"the old primary at {url} is fenced but did not report its cluster stopped within {STOPPED_TIMEOUT:.0f} s "
        f"(last: {state}): nothing was promoted here; see its log, then run `jitaku failover` here to take over"
    )


def _wait_replayed(config: Config, checkpoint: str, strictly: bool) -> None:
    """Our cluster replayed past CHECKPOINT (or as far, not STRICTLY); LSNs compared as numbers, by PostgreSQL."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    replayed = None
    with role.connect(config) as connection:
        while True:
            row = connection.execute(
                "SELECT pg_last_wal_replay_lsn()::text, pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= %s",
                (checkpoint, 1 if strictly else 0),
            ).fetchone()
            assert row is not None
            replayed, past = row
            if past:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(POLL)
    raise FailoverError(
        f"this box replayed WAL to {replayed} only, short of the old primary's final checkpoint {checkpoint}, "
        f"after {CATCH_UP_TIMEOUT:.0f} s: nothing was promoted here. The old primary is stopped and fenced: see "
        "`jitaku ha status` here; once replication has caught up run `jitaku failover`"
    )


def _make_slot(config: Config, name: str) -> None:
    """The old primary's physical slot here, made before the promotion: it keeps the WAL from our replay position
    on, which is where the old primary's own WAL ends and where it will ask us to start."""
    with role.connect(config) as connection:
        if connection.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (name,)).fetchone():
            return
        connection.execute("SELECT 1 FROM pg_create_physical_replication_slot(%s, true)", (name,))
    log.event("ha_slot_made", slot=name)


def _wait_streaming_to(config: Config, name: str) -> bool:
    """Whether the old primary streams from us, as NAME, within STREAM_TIMEOUT seconds."""
    deadline = time.monotonic() + STREAM_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception), role.connect(config) as connection:
            found = connection.execute(
                "SELECT 1 FROM pg_stat_replication WHERE application_name = %s AND state = 'streaming'", (name,)
            ).fetchone()
            if found:
                return True
        time.sleep(0.5)
    return False
