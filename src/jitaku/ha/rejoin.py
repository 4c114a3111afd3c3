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
   box's replication secret in a password file, application_name and slot named slot_name(None)) and start it.
4. Once pg_is_in_recovery(), fence file cluster "standby", then the fence is cleared: the daemon serves as a
   standby (its services start again, jitaku.ha.mode).

Each step looks at where the last one left off (standby.signal there: 1-3 were done), so a daemon killed midway
does the rest at its next start. Starts and stops are under the cluster's control lock (cluster.control): no other
jitaku process starts or stops it meanwhile; one that uses it (a CLI command) loses its connection, as at any
restart of PostgreSQL.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

from jitaku import log
from jitaku.config import Config
from jitaku.errors import ClusterError
from jitaku.ha import cluster, fence, role, standby

RECOVERY_TIMEOUT = 60.0  # seconds the restarted cluster may take to say it is in recovery
CLEAN = "shut down"  # pg_controldata's "Database cluster state" after a clean shutdown (a standby's: "...in recovery")


class RejoinError(Exception):
    """The re-join cannot be done here; one line for a person, who then runs `jitaku standby setup`."""


def wanted(found: fence.Fence | None) -> bool:
    """Whether FOUND asks this box to re-join the new primary by itself."""
    return found is not None and found.purpose == "switchover" and found.rejoin is not None


def rejoin(config: Config) -> None:
    """Do the re-join the fence file asks for (see the module); RejoinError (or ClusterError) when it cannot, the
    fence kept, the cluster running again if it can be started."""
    found = fence.read(config)
    if found is None or not wanted(found):
        return
    assert found.rejoin is not None
    host, port = standby.parse_primary(found.rejoin)
    secret = standby.read_secret(standby.secret_path(config))
    data = config.postgres_dir
    try:
        with cluster.control(config):
            if not (data / "standby.signal").exists():
                cluster.stop(config)
                checkpoint = _clean_checkpoint(config)
                found = dataclasses.replace(found, checkpoint=checkpoint, cluster="stopped")
                fence.write(config, found)
                standby.follow(config, data, host, port, standby.slot_name(None), secret, cluster.account(config))
                log.event("ha_rejoin_stopped", checkpoint=checkpoint, primary=found.rejoin)
            if cluster.running(config) is None:
                cluster.start(config)
    except BaseException:
        with contextlib.suppress(ClusterError), cluster.control(config):
            if cluster.running(config) is None:
                cluster.start(config)  # fenced still, but its web can read the database again
        raise
    _wait_in_recovery(config)
    fence.write(config, dataclasses.replace(found, cluster="standby"))
    fence.clear(config)
    log.event("ha_rejoined", primary=found.rejoin, checkpoint=found.checkpoint)


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


def _wait_in_recovery(config: Config) -> None:
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while True:
        with contextlib.suppress(Exception):
            if role.current(config) == role.STANDBY:
                return
        if time.monotonic() > deadline:
            raise RejoinError(f"the cluster did not come back in recovery within {RECOVERY_TIMEOUT:.0f} s")
        time.sleep(0.5)
