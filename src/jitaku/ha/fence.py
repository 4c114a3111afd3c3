"""The fence: DIR/ha/fenced, whose presence says that this box was a primary and must not serve as one again.

It guards against split brain: the other box of the pair was promoted (failover, switchover), or was found to be
the primary on a newer timeline at this box's start. The file survives restarts (the daemon reads it at each one,
jitaku.services), and only a re-join removes it: `jitaku standby setup`, or the switchover's own re-join once this
box's cluster replays the new primary's WAL.

Fail safe: a file that cannot be read or parsed still fences. read() answers it as a Fence of purpose "unknown",
by "unknown", at the file's modification time (or 0): a half-written or hand-edited fence must never let two
primaries take mail. Only its absence unfences.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from jitaku import files, log
from jitaku.config import Config
from jitaku.ha.cluster import fsync_directory

NAME = "fenced"
PURPOSES = ("failover", "switchover", "split-brain")
UNKNOWN = "unknown"  # a fence file that cannot be read: still a fence
CLUSTER_STATES = ("running", "stopped", "standby")
MAX_BYTES = 4096  # ours are ~200; anything bigger is not ours


@dataclass(frozen=True)
class Fence:
    purpose: str  # "failover" | "switchover" | "split-brain" (| "unknown": a file that cannot be read)
    by: str  # who fenced us: the peer's name/URL, or "self"
    at: float  # unix time
    rejoin: str | None = None  # "HOST:PORT" of the new primary's PostgreSQL (switchover): re-join it as a standby
    checkpoint: str | None = None  # our cluster's final checkpoint LSN ("0/3000028"), once stopped (switchover)
    cluster: str = "running"  # "running" | "stopped" | "standby"


def path(config: Config) -> Path:
    return config.data_dir / "ha" / NAME


def read(config: Config) -> Fence | None:
    """The fence, or None when there is none. A file that is there but unreadable is a fence (see the module)."""
    where = path(config)
    try:
        with where.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
            mtime = os.fstat(file.fileno()).st_mtime
    except FileNotFoundError:
        return None
    except OSError as error:
        log.event("fence_unreadable", path=str(where), error=error.strerror or str(error))
        return Fence(UNKNOWN, UNKNOWN, 0.0)
    fence = _parsed(data)
    if fence is None:
        log.event("fence_unreadable", path=str(where), error="not a fence file jitaku wrote")
        return Fence(UNKNOWN, UNKNOWN, mtime)
    return fence


def _parsed(data: bytes) -> Fence | None:
    if len(data) > MAX_BYTES:
        return None
    try:
        fields = json.loads(data)
    except ValueError:
        return None
    if not isinstance(fields, dict):
        return None
    purpose, by, at = fields.get("purpose"), fields.get("by"), fields.get("at")
    rejoin, checkpoint = fields.get("rejoin"), fields.get("checkpoint")
    cluster = fields.get("cluster", "running")
    if (
        purpose not in PURPOSES
        or not isinstance(by, str)
        or isinstance(at, bool)
        or not isinstance(at, int | float)
        or not isinstance(rejoin, str | None)
        or not isinstance(checkpoint, str | None)
        or cluster not in CLUSTER_STATES
    ):
        return None
    return Fence(purpose, by, float(at), rejoin, checkpoint, cluster)


def write(config: Config, fence: Fence) -> None:
    """FENCE as DIR/ha/fenced: 0600, this process's, written beside it, fsynced and renamed over it (a power cut
    leaves the old fence or the new, never half of one), the directory fsynced so the name itself survives."""
    where = path(config)
    where.parent.mkdir(mode=0o700, exist_ok=True)
    files.replace(where, json.dumps(asdict(fence), sort_keys=True).encode() + b"\n", 0o600)
    fsync_directory(where.parent)
    log.event("fence_written", purpose=fence.purpose, by=fence.by, cluster=fence.cluster)


def clear(config: Config) -> None:
    """No fence any more (this box re-joined as a standby); nothing to do when there is none."""
    where = path(config)
    try:
        where.unlink()
    except FileNotFoundError:
        return
    fsync_directory(where.parent)
    log.event("fence_cleared")
