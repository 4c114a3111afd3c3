"""The switchover's re-join: the old primary becomes a standby of the new one, without a base backup.

`jitaku switchover` on the standby fences the primary with purpose "switchover" and `rejoin`, the standby's
PostgreSQL address. The fenced primary's daemon ends its primary's services (nothing writes any more, the floating
address released) and serves fenced, its web up: the switchover follows it through /api/ha/state, which reads the
fence file's `cluster` and `checkpoint` while the cluster is down. Meanwhile its main process, in a thread, re-joins:

1. Stop the cluster (a fast shutdown: the walsenders first send the standby every WAL record up to and including
   the shutdown checkpoint). pg_controldata must then say "shut down": after an immediate stop or a crash there may
   be WAL past the checkpoint that the standby never got, and replaying the new primary's on top of it would be a
   different history; such a box stays fenced, for `jitaku standby setup` (a fresh base backup).
2. Record the "Latest checkpoint location" in the fence file, cluster "stopped": the switchover promotes the
   standby only once it has replayed past it.
3. Make the cluster a standby of `rejoin` (jitaku.ha.standby.follow: standby.signal, primary_conninfo with this
   box's replication secret in a password file, application_name and slot named slot_name(None)); done before
   2 is written: a restart between the two starts a standby, never the primary the fence says is stopped.
4. Wait, the cluster stopped (up to PROMOTION_WAIT seconds), until `rejoin` is promoted: its timeline (asked as
   the replicator, IDENTIFY_SYSTEM) is newer than our checkpoint's. The fence keeps saying "stopped" with the
   checkpoint meanwhile, which the switchover waits to read before it promotes; then start the cluster. Never
   promoted (the switchover failed after its fence): standby.signal is removed again and the cluster stays
   stopped, fenced, a primary still, for `jitaku failover --force` here to take its part back
   (jitaku.ha.failover); the next start of the daemon tries the re-join again.
5. Once pg_is_in_recovery() and its WAL receiver streams from the new primary on a timeline newer than ours
   (pg_stat_wal_receiver), fence file cluster "standby", then the fence is cleared: the daemon serves as a standby
   (its services start again, jitaku.ha.mode). Never after a mere timeout: one that does not stream within
   STREAM_WAIT stays fenced, and says why (DIR/ha/rejoin_failed, /api/ha/state's `error`, an alert).

Each step looks at where the last one left off (standby.signal there: 1-3 were done), so a daemon killed midway
does the rest at its next start. Starts and stops are under the cluster's control lock (cluster.control): no other
jitaku process starts or stops it meanwhile; one that uses it (a CLI command) loses its connection, as at any
restart of PostgreSQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from pathlib import Path

from jitaku import files, log
from jitaku.config import Config
from jitaku.errors import ClusterError
from jitaku.ha import cluster, fence, role, standby

RECOVERY_TIMEOUT = 60.0  # seconds the restarted cluster may take to say it is in recovery
STREAM_WAIT = 300.0  # seconds the standby may take to stream from the new primary on its new timeline
FAILURE_NAME = "rejoin_failed"  # DIR/ha/rejoin_failed: why the last re-join failed, for /api/ha/state
_RECEIVER = "SELECT status, received_tli, flushed_lsn > %s::pg_lsn FROM pg_stat_wal_receiver"
PROMOTION_WAIT = 120.0  # seconds the stopped cluster waits for the new primary's promotion before it starts anyway
ASK_EVERY = 0.5  # seconds between two questions to the new primary
CLEAN = "shut down"  # pg_controldata's "Database cluster state" after a clean shutdown (a standby's: "...in recovery")


class RejoinError(Exception):
    """The re-join cannot be done here; one line for a person, who then runs `jitaku standby setup`."""


class Unpromoted(RejoinError):
    """The new primary was never promoted: the switchover failed after its fence. The cluster stays stopped, a
    primary still (no standby.signal), for `jitaku failover --force` here to take the primary's part back."""


def _give_up(config: Config, found: fence.Fence) -> None:
    """The switchover's standby was not promoted within PROMOTION_WAIT: following it would stream nothing (it is
    on our timeline, and behind us) and leave this box fenced for good. The cluster stays stopped, standby.signal
    removed again: `jitaku failover --force` here starts it as the primary it still is (failover.take_back)."""
    with cluster.control(config):
        (config.postgres_dir / "standby.signal").unlink(missing_ok=True)
    log.event("ha_rejoin_unpromoted", primary=found.rejoin, waited=PROMOTION_WAIT)
    raise Unpromoted(
        f"the new primary {found.rejoin} was not promoted within {PROMOTION_WAIT:.0f} s (its switchover failed): "
        "this box keeps its cluster stopped and stays fenced; `jitaku failover --force` here takes the primary's "
        "part back (or, once the other box is promoted, restart jitaku serve here to re-join it)"
    )


def wanted(found: fence.Fence | None) -> bool:
    """Whether FOUND asks this box to re-join the new primary by itself."""
    return found is not None and found.purpose == "switchover" and found.rejoin is not None


def rejoin(config: Config, stopping: threading.Event) -> bool:
    """Do the re-join the fence file asks for (see the module): True once done. False when STOPPING is set while
    it waits (the daemon stops: its next start goes on from there, the fence kept). RejoinError (or ClusterError)
    when it cannot, the fence kept, the cluster running again if it can be started; the reason is kept
    (failure(): /api/ha/state says it) until a re-join is done."""
    found = fence.read(config)
    if found is None or not wanted(found):
        return False
    assert found.rejoin is not None
    data = config.postgres_dir
    try:
        host, port = standby.parse_primary(found.rejoin)
        secret = standby.read_secret(standby.secret_path(config))
        name = standby.slot_name(None)
        with cluster.control(config):
            if not wanted(fence.read(config)):  # `jitaku failover --force` took the primary's part back meanwhile
                return False
            if not (data / "standby.signal").exists():
                cluster.stop(config)
                checkpoint = _clean_checkpoint(config)
                # a standby first, then the fence says "stopped": a restart in between starts a standby, never the
                # primary the fence says is stopped
                standby.follow(config, data, host, port, name, secret, cluster.account(config))
                found = dataclasses.replace(found, checkpoint=checkpoint, cluster="stopped")
                fence.write(config, found)
                log.event("ha_rejoin_stopped", checkpoint=checkpoint, primary=found.rejoin)
            elif found.checkpoint is None and cluster.running(config) is None:  # stopped between the two
                found = dataclasses.replace(found, checkpoint=_clean_checkpoint(config), cluster="stopped")
                fence.write(config, found)
        ours: int | None = None  # the old timeline, known while the cluster is down from the primary it was
        dsn = standby.conninfo(host, port, name, data / standby.REPLICATION_PASSFILE)
        if cluster.running(config) is None:
            ours = int(cluster.control_data(config).get("Latest checkpoint's TimeLineID", "0"))
            promoted = _wait_promoted(dsn, ours, stopping)
            if promoted is None:
                return False
            if not promoted:
                if fence.read(config) is None:  # taken back meanwhile (`jitaku failover --force`)
                    return False
                _give_up(config, found)
        with cluster.control(config):
            if cluster.running(config) is None:
                cluster.start(config)
        _wait_in_recovery(config)
        streaming = _wait_streaming(config, ours, found.checkpoint, stopping)
        if streaming is None:
            return False
    except BaseException as error:
        if not isinstance(error, Unpromoted):
            with contextlib.suppress(ClusterError), cluster.control(config):
                if cluster.running(config) is None:
                    cluster.start(config)  # fenced still, but its web can read the database again
        if isinstance(error, Exception):
            _failed(config, str(error) or repr(error))
        raise
    fence.write(config, dataclasses.replace(found, cluster="standby"))
    fence.clear(config)
    _failed(config, None)
    log.event("ha_rejoined", primary=found.rejoin, checkpoint=found.checkpoint)
    return True


def failure(config: Config) -> str | None:
    """Why the last re-join failed, if it did and none was done since."""
    try:
        return _failure_path(config).read_text(encoding="utf-8").strip()[:300] or None
    except (OSError, UnicodeDecodeError):
        return None


def forget_failure(config: Config) -> None:
    """The last re-join's failure is over (the box took the primary's part back instead)."""
    _failed(config, None)


def _failure_path(config: Config) -> Path:
    return config.data_dir / "ha" / FAILURE_NAME


def _failed(config: Config, why: str | None) -> None:
    path = _failure_path(config)
    if why is None:
        path.unlink(missing_ok=True)
        return
    with contextlib.suppress(OSError):
        files.replace(path, (why.replace("\n", " ") + "\n").encode(), 0o600)


def _wait_streaming(
    config: Config, timeline: int | None, checkpoint: str | None, stopping: threading.Event
) -> bool | None:
    """Wait, up to STREAM_WAIT, until this box's WAL receiver streams (pg_stat_wal_receiver) from the new primary:
    on a timeline newer than TIMELINE, our old one; or, not known (a daemon restarted after the cluster was),
    past our final CHECKPOINT, which only a promoted primary writes. Only then is the re-join done. None once
    STOPPING is set; RejoinError when it does not (the fence kept: never cleared on a mere timeout)."""
    deadline = time.monotonic() + STREAM_WAIT
    while True:
        with contextlib.suppress(Exception), role.connect(config) as connection:
            found = connection.execute(_RECEIVER, (checkpoint or "0/0",)).fetchone()
            if found is not None and found[0] == "streaming":
                if (timeline is None and found[2]) or (timeline is not None and int(str(found[1])) > timeline):
                    return True
        if time.monotonic() > deadline:
            raise RejoinError(
                f"the cluster does not stream from the new primary on a new timeline within {STREAM_WAIT:.0f} s: "
                "this box stays fenced; re-join it with `jitaku standby setup`"
            )
        if stopping.wait(ASK_EVERY):
            return None


def _clean_checkpoint(config: Config) -> str:
    control = cluster.control_data(config)
    state = control.get("Database cluster state", "?")
    if state != CLEAN:
        raise RejoinError(
            f"the cluster was not shut down cleanly (pg_controldata: {state!r}): it may hold WAL the new primary "
            "never got; re-join it with `jitaku standby setup`"
        )
    checkpoint = control.get("Latest checkpoint location")
    if not checkpoint:
        raise RejoinError("pg_controldata names no latest checkpoint location")
    return checkpoint


def _wait_promoted(dsn: str, timeline: int, stopping: threading.Event) -> bool | None:
    """Whether the server DSN names says, within PROMOTION_WAIT, a timeline newer than TIMELINE; None once
    STOPPING is set."""
    deadline = time.monotonic() + PROMOTION_WAIT
    while time.monotonic() < deadline:
        theirs = _timeline(dsn)
        if theirs is not None and theirs > timeline:
            return True
        if stopping.wait(ASK_EVERY):
            return None
    return False


def _timeline(dsn: str) -> int | None:
    """The timeline a server streams on (IDENTIFY_SYSTEM on a replication connection); None when it cannot say."""
    import psycopg
    from psycopg.pq import ExecStatus

    try:
        with psycopg.connect(dsn + " replication=true connect_timeout=3", autocommit=True) as connection:
            result = connection.pgconn.exec_(b"IDENTIFY_SYSTEM")
            if result.status != ExecStatus.TUPLES_OK:
                return None
            value = result.get_value(0, 1)
            return int(value) if value is not None else None
    except (psycopg.Error, OSError, ValueError):
        return None


def _wait_in_recovery(config: Config) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        with contextlib.suppress(Exception):
            if role.current(config) == role.STANDBY:
                return
        if time.monotonic() > deadline:
            raise RejoinError(f"the cluster did not come back in recovery within {RECOVERY_TIMEOUT:.0f} s")
        time.sleep(0.5)
