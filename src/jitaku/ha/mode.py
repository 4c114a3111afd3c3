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
  must still take mail. A peer that answers but refuses us (403: clocks more than a minute apart, another secret)
  is not absent: while the floating address is held by another machine (ARP probe), this box fences itself too;
one that answers 5xx (its database restarting) is not known either way, and logged only.
- "waiting": instead of "primary" at the daemon's first decision after a boot (a cold start, as after a power cut
  of both boxes: jitaku.ha.boot; again after the wait saw the peer), on a managed cluster that had a standby (a
  physical replication slot: a pair was set up against it), none streaming from it now, its peer silent or refusing
  us, `[ha] cold_start_wait` above 0. The other box may have been promoted while this one was off, and this one
  cannot tell yet: it serves as a fenced box does, without the fence, until it sees its peer answer as a peer
  should, or a standby stream from it (jitaku.services ends the wait, and the mode is decided again), or the wait
  is over and the witness sees nobody else serving either (jitaku.ha.witness). A peer that refuses us is there,
  and may be the primary: it keeps this box waiting.

A primary asks its peer again every PEER_EVERY seconds while it serves (jitaku.services), the same way (look()).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from jitaku import log
from jitaku.config import Config
from jitaku.ha import boot, box, fence, role

Mode = Literal["primary", "standby", "fenced", "waiting"]
PRIMARY: Mode = "primary"
STANDBY: Mode = "standby"
FENCED: Mode = "fenced"
WAITING: Mode = "waiting"
# seconds the peer has to answer at start (the daemon waits for it before taking mail), and our own cluster to take
# a look's connection and to answer each of its statements
PEER_TIMEOUT = 3.0
PEER_EVERY = 15.0  # seconds between two looks at the peer while this box serves as the primary
# a primary's physical replication slots, and whether a standby streams through one now
SLOTS = "SELECT count(*), coalesce(bool_or(active), false) FROM pg_replication_slots WHERE slot_type = 'physical'"


@dataclass(frozen=True)
class Seen:
    """What the peer said: NEWER, its URL when it is an unfenced primary on a newer timeline than ours; REFUSED,
    why, when it answered but not to us (403, another secret, garbage); ANSWERED, it said its state as a peer
    should. None of them: absent, or not known (a 5xx)."""

    newer: str | None = None
    refused: str | None = None
    answered: bool = False


_began: list[float] = []  # when this process's cold-start wait began (time.monotonic()), while it waits


def decide(config: Config, starting: bool, alone: bool = False) -> Mode:
    """STARTING: the daemon's first decision since it started, or its next one after its wait saw the peer (the
    only ones that may wait for it). ALONE: the wait is over and this box took the primary's part alone: it serves
    as the primary without another look at its peer (one that could go wrong: a silent peer would leave it the
    primary anyway). A wait that saw its peer, then waits again (the peer silent once more) goes on from where it
    began (wait_began): a peer that answers now and then must not restart `[ha] cold_start_wait` each time."""
    mode = _decide(config, starting, alone)
    if mode != WAITING:
        _began.clear()
    elif not _began:
        _began.append(time.monotonic())
    return mode


def wait_began() -> float:
    """When this process's cold-start wait began (time.monotonic()), the first decision that said "waiting" since
    the box last served otherwise; now when none did."""
    return _began[0] if _began else time.monotonic()


def _decide(config: Config, starting: bool, alone: bool) -> Mode:
    if fence.read(config) is not None:
        return FENCED
    if role.current(config) == role.STANDBY:
        return STANDBY
    if alone:
        return _primary(config)
    seen = look(config)
    if seen.newer is not None:
        fence.write(config, fence.Fence("split-brain", seen.newer, time.time()))
        return FENCED
    if seen.refused is not None and address_elsewhere(config):
        log.event("ha_split_brain", peer=seen.refused, address="held by another machine")
        fence.write(config, fence.Fence("split-brain", "the floating address's holder", time.time()))
        return FENCED
    wait = config.settings.ha.cold_start_wait
    cold = starting and wait > 0 and boot.changed(config)  # a restart alone is no cold start
    if cold and not seen.answered and paired(config) == (True, False):
        from jitaku.ha import peer

        url = peer.peer_url(config)
        if url is None:  # only a streaming standby or the witness can end the wait
            why = "no peer to ask: no [ha] peer, no host remembered by `standby allow`"
            log.event("ha_waiting", logging.WARNING, wait=wait, why=why)
        else:
            log.event("ha_waiting", peer=url, wait=wait)
        return WAITING
    return _primary(config)


def _primary(config: Config) -> Mode:
    """The primary's part, this boot recorded as one it served in (jitaku.ha.boot) on jitaku's own cluster: the only
    one that may wait."""
    if config.settings.database.managed:
        boot.record(config)
    return PRIMARY


def paired(config: Config) -> tuple[bool, bool]:
    """Whether this primary's cluster had a standby set up against it (a physical replication slot, however old),
    and whether one streams from it now (a slot active): a standby of ours is there, and so no other primary.
    (False, False) but on jitaku's own cluster (`[database] managed`): the slots of someone else's server are its
    own replication's, not a pair of ours."""
    if not (config.settings.database.managed and role.postgresql(config)):
        return False, False
    with role.connect(config, PEER_TIMEOUT, statement_timeout=PEER_TIMEOUT) as connection:
        row = connection.execute(SLOTS).fetchone()
    assert row is not None  # an aggregate's one row
    return bool(row[0]), bool(row[1])


def address_elsewhere(config: Config) -> bool:
    """Whether another machine on the link answers for the floating address (`[ha] address`, IPv4's probe);
    False without one, or when this box cannot tell."""
    from jitaku.ha.address import AddressError, FloatingAddress

    address = FloatingAddress.configured(config.settings.ha)
    if address is None:
        return False
    try:
        return address.held_elsewhere()
    except AddressError as error:
        log.event("ha_address_unknown", address=str(address), error=str(error))
        return False


def newer_primary(config: Config) -> str | None:
    """The peer's URL when it is an unfenced primary on a newer timeline than this box's cluster (see look())."""
    return look(config).newer


def look(config: Config) -> Seen:
    """How the peer stands beside this box's cluster; nothing seen without a peer to ask (no [ha] peer nor
    peer_host, no replication secret: no pair was set up), nor when the answer carries this box's own id (the
    peer URL reaches this box's web). Bounded by PEER_TIMEOUT for the peer."""
    if not role.postgresql(config):
        return Seen()
    from jitaku.ha import peer, standby
    from jitaku.ha.status import PRIMARY_TIMELINE

    url = peer.peer_url(config)
    path = standby.secret_path(config)
    if url is None or not path.exists():
        return Seen()
    try:
        theirs = peer.state(url, standby.read_secret(path), PEER_TIMEOUT)
    except (peer.PeerError, standby.StandbyError) as error:
        if isinstance(error, peer.PeerError) and error.status is not None and error.status >= 500:
            _changed("ha_peer_unknown", peer=url, status=error.status)  # its database restarting: not a refusal
            return Seen()
        _changed("ha_peer_unknown", peer=url, error=str(error))
        return Seen(refused=str(error))
    if theirs is None:
        _changed("ha_peer_unreachable", peer=url, timeout=PEER_TIMEOUT)
        return Seen()
    if theirs.get("box") == box.box_id(config):  # its own web (a pair on one host): no peer, and never its answer
        why = "the peer URL points at this box itself: set [ha] peer to the other box's web"
        _changed("ha_peer_is_this_box", logging.WARNING, peer=url, why=why)
        return Seen()
    with role.connect(config, PEER_TIMEOUT, statement_timeout=PEER_TIMEOUT) as connection:
        ours = role.one(connection, PRIMARY_TIMELINE)
    timeline = theirs.get("timeline")
    _changed("ha_peer_seen", peer=url, role=theirs.get("role"), fenced=theirs.get("fenced"), timeline=timeline)
    if theirs.get("role") != role.PRIMARY or theirs.get("fenced"):
        return Seen(answered=True)
    if isinstance(timeline, int) and not isinstance(timeline, bool) and timeline > int(ours):
        log.event("ha_split_brain", peer=url, peer_timeline=timeline, timeline=ours)
        return Seen(newer=url, answered=True)
    return Seen(answered=True)


_last: list[tuple[str, dict[str, Any]]] = []  # what this process logged the peer say last


def _changed(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log what the peer says when it differs from what was logged last: a primary asks every PEER_EVERY
    seconds, and a log line each time would bury the one that matters."""
    said = (name, fields)
    if _last and _last[0] == said:
        return
    _last[:] = [said]
    log.event(name, level=level, **fields)
