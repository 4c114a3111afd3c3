"""Which way the daemon serves, decided in one place, by its main process, before each start of its services
(jitaku.app.run forks the workers after it, and gives them the answer):

- "fenced": DIR/ha/fenced is there (jitaku.ha.fence). This box was a primary and the other box is the primary now,
  or may be: it serves as a standby does (read-only, nothing writes, its mail listeners say it is fenced), and never
  holds the floating address, until it re-joins (the switchover's re-join, jitaku.ha.rejoin, or `standby setup`).
- "standby": the cluster is in recovery (jitaku.ha.role).
- "primary": otherwise; but first the peer (jitaku.ha.peer.peer_url) is asked how it stands, and a peer that is a
  primary on a newer timeline than ours was promoted while this box was away: two primaries, split brain. This box
  then writes its own fence (purpose "split-brain", by the peer's URL) and serves fenced. A peer that does not
  answer (within PEER_TIMEOUT), is not a primary, or is fenced itself, leaves this box the primary: a box alone
  must still take mail.
"""

from __future__ import annotations

import time
from typing import Literal

from jitaku import log
from jitaku.config import Config
from jitaku.ha import fence, role

Mode = Literal["primary", "standby", "fenced"]
PRIMARY: Mode = "primary"
STANDBY: Mode = "standby"
FENCED: Mode = "fenced"
PEER_TIMEOUT = 3.0  # seconds the peer has to answer at start: the daemon waits for it before taking mail


def decide(config: Config) -> Mode:
    if fence.read(config) is not None:
        return FENCED
    if role.current(config) == role.STANDBY:
        return STANDBY
    newer = newer_primary(config)
    if newer is not None:
        fence.write(config, fence.Fence("split-brain", newer, time.time()))
        return FENCED
    return PRIMARY


def newer_primary(config: Config) -> str | None:
    """The peer's URL when it is an unfenced primary on a newer timeline than this box's cluster; else None, and
    None too without a peer to ask (no [ha] peer nor peer_host, no replication secret: no pair was set up)."""
    if not role.postgresql(config):
        return None
    from jitaku.ha import peer, standby
    from jitaku.ha.status import PRIMARY_TIMELINE

    url = peer.peer_url(config)
    path = standby.secret_path(config)
    if url is None or not path.exists():
        return None
    try:
        theirs = peer.state(url, standby.read_secret(path), PEER_TIMEOUT)
    except (peer.PeerError, standby.StandbyError) as error:
        log.event("ha_peer_unknown", peer=url, error=str(error))
        return None
    if theirs is None:
        log.event("ha_peer_unreachable", peer=url, timeout=PEER_TIMEOUT)
        return None
    with role.connect(config) as connection:
        ours = role.one(connection, PRIMARY_TIMELINE)
    timeline = theirs.get("timeline")
    log.event("ha_peer_seen", peer=url, role=theirs.get("role"), fenced=theirs.get("fenced"), timeline=timeline)
    if theirs.get("role") != role.PRIMARY or theirs.get("fenced"):
        return None
    if isinstance(timeline, int) and not isinstance(timeline, bool) and timeline > int(ours):
        log.event("ha_split_brain", peer=url, peer_timeline=timeline, timeline=ours)
        return url
    return None
