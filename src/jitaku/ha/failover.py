"""Making the standby the primary: `jitaku failover` (the primary is gone, or must go now) and `jitaku switchover`
(both boxes up: hand the primary's part over, losing nothing, and the old primary becomes the standby).

Both run on the standby, beside its daemon, and do only what the daemon cannot: PostgreSQL is promoted here
(`pg_promote`), and the daemon, which watches its cluster, serves as a primary once it sees it no longer in
recovery (jitaku.app). The command is done when a person's mail would be taken again: when this box's own MX
greets with 220, the moment that counts for "mail is accepted again within 30 s".

Failover fences the old primary first when it answers (jitaku.ha.peer, over its web listener): it stops serving and
releases the floating address, so that no second primary takes mail the new one never sees. Any answer over HTTP
is a box alive: one that is not fenced after it (it refused, or its fence's answer came late and its state says
it is not fenced) stops the failover unless forced. A silent web is no proof of a dead box: its SMTP and its
PostgreSQL are knocked at (jitaku.ha.alive), and one that takes a connection stops the failover too. Only a box
silent at every door is taken for down; the split-brain guard keeps it from serving as a primary when it comes
back (it sees our newer timeline). A fenced old primary says its WAL position, which we replay first; of a dead
one, what this standby knows of whether it was synchronous is printed as a warning.

Switchover asks the old primary to stop its cluster cleanly and to come back as our standby (purpose "switchover",
`rejoin` = our PostgreSQL). Its final checkpoint is the last thing it ever wrote as a primary; once our cluster has
replayed past it, every write it acknowledged is here, and only then do we promote. Everything that can fail is
done before the fence, when a refusal still changes nothing: the old primary is let in (pg_hba.conf lines for its
addresses, its physical slot made here while the WAL it will ask for is still in pg_wal), so that it streams from
us as soon as it starts as a standby, and our replay is seen to keep up with it. After the fence the old primary
no longer takes mail and we do not yet: any failure then ends in one message saying how both boxes stand and what
to run on which (_stranded). The old primary of one that never promoted us keeps its cluster stopped, fenced
(jitaku.ha.rejoin): `jitaku failover --force` there takes the primary's part back (_take_back).

The daemon itself promotes its box when automatic failover says so (jitaku.ha.auto): promote_automatically, the
old primary's state asked once more (any answer stops it), then the same fence and promotion, never forced, without
the wait for a greeting that only the daemon can give.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from jitaku import log, ports, serve_lock
from jitaku.config import Config, Listen
from jitaku.ha import alive, box, fence, role, standby

if TYPE_CHECKING:
    from jitaku.ha.peer import PeerError

PROMOTE_WAIT = 60  # seconds pg_promote waits for the end of recovery
PEER_TIMEOUT = 3.0  # seconds the old primary has to answer a failover's fence
SWITCH_PEER_TIMEOUT = 10.0  # a switchover's: both boxes are up, it may be busy
GREETING_TIMEOUT = 45.0  # seconds the daemon may take to serve as a primary once the cluster is promoted
STOPPED_TIMEOUT = 60.0  # seconds the old primary may take to stop its cluster (a fast shutdown, then immediate)
CATCH_UP_TIMEOUT = 60.0  # seconds to replay the old primary's last WAL, which streamed here as it was written
LAG_TIMEOUT = 15.0  # seconds a switchover's standby has, before the fence, to replay what the primary had written
LIVE_CATCH_UP_TIMEOUT = 30.0  # seconds a failover waits to replay what a fenced old primary had written
LATE_FENCE_WAIT = 15.0  # seconds a failover asks again the state of an old primary whose web is silent, doors open
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
    """Promote this standby, fencing the old primary when it answers. STARTED: time.monotonic() at the command.
    FORCE on an old primary a failed switchover left fenced, its cluster stopped: take the primary's part back."""
    if force and _take_back(config):
        say("this box took the primary's part back: the switchover that fenced it never promoted the other box")
        seconds = _wait_greeting(config, started)
        log.event("ha_failover", seconds=round(seconds, 2), peer="taken back")
        return Promoted(seconds, "this box, which the failed switchover had fenced, is the primary again")
    secret = _check(config)
    url = _peer_url(config)
    if url is None:
        old = OldPrimary("no peer known ([ha] peer unset and no DIR/ha/peer_host): not fenced", down=True)
    else:
        old = _fence_for_failover(config, url, secret, force)
    say(f"old primary: {old.words}")
    warning = _missing_writes(config, old)
    if warning:
        say(f"warning: {warning}")
        log.event("ha_failover_warning", warning=warning)
    _promote(config)
    say("promoted this box's PostgreSQL")
    seconds = _wait_greeting(config, started)
    log.event("ha_failover", seconds=round(seconds, 2), peer=url or "none")
    return Promoted(seconds, old.words)


def promote_automatically(
    config: Config, why: str, stopping: Callable[[], bool], promoting: Callable[[], None]
) -> bool:
    """The daemon's own promotion (jitaku.ha.auto: the primary silent, the witness too, replication synchronous
    when contact was lost): what failover() does, without its wait for this box's 220. The daemon that would greet
    is the one asking, in a thread: it serves as the primary only once its services end with "promoted" (its watch
    of the cluster), and they cannot end while it waits here. Never forced: the old primary is asked its state
    once more first, and any answer raises Answered (a primary whose web came back between the watch's decision
    and now, a box that restarted: `[ha] auto_after` must outlast a reboot); one that answers the fence and is not
    fenced after it (its web, or only its SMTP or PostgreSQL) raises FailoverError, and a person decides; one that
    fenced itself said its WAL position, replayed here first, and one that could not say it is refused too (writes
    may be missing). STOPPING (the daemon ends its services: SIGTERM) is asked before the fence and before the
    promotion, which it stops; PROMOTING is called just before pg_promote, only when this call runs it. Whether
    this call promoted the cluster: False when it was promoted meanwhile (a person's `jitaku failover`). WHY goes
    to the log."""
    if role.current(config) == role.PRIMARY:
        return False
    secret = _check(config)
    url = _peer_url(config)
    if url is None:
        raise FailoverError("no peer known ([ha] peer unset and no DIR/ha/peer_host): nothing to fence")
    _silent_still(url, secret)
    if stopping():
        raise FailoverError("the daemon is stopping: not promoted")
    old = _fence_for_failover(config, url, secret, False)
    if not old.down:  # a dead one's writes: the caller knew this box was synchronous when contact was lost
        warning = _missing_writes(config, old)
        if warning is not None:
            raise FailoverError(f"old primary: {old.words}; {warning}")
    if stopping():
        raise FailoverError(f"the daemon is stopping: not promoted (old primary: {old.words})")
    if not _promote(config, promoting):
        return False
    log.event("ha_failover", automatic=True, peer=url, old_primary=old.words, why=why)
    return True


class Answered(FailoverError):
    """The old primary answered just before an automatic failover's fence (ANSWER: its state, or its PeerError):
    a box alive, so nothing was done."""

    def __init__(self, message: str, answer: dict[str, Any] | PeerError) -> None:
        super().__init__(message)
        self.answer = answer


def _silent_still(url: str, secret: str) -> None:
    """Raise Answered when the old primary answers its state request now, whatever it says."""
    from jitaku.ha import peer

    try:
        state = peer.state(url, secret, PEER_TIMEOUT)
    except peer.PeerError as error:
        raise Answered(f"the old primary at {url} answered again ({error}): not promoted", error) from None
    if state is not None:
        said = f"role {state.get('role')}, fenced {bool(state.get('fenced'))}"
        raise Answered(f"the old primary at {url} answered again ({said}): not promoted", state)


def switchover(config: Config, started: float, say: Say) -> Switched:
    """Hand the primary's part over from the peer to this box, losing nothing; the peer re-joins as our standby.
    What can fail is done before the fence (nothing changed then); a failure after it, when the pair may have
    no primary, says how both boxes stand and what to run (_stranded)."""
    from jitaku.ha import peer

    secret = _check(config)
    url = _peer_url(config)
    if url is None:
        raise FailoverError("no peer known: set [ha] peer to the primary's web URL (e.g. http://192.168.1.10:8080)")
    state = _primary_state(url, secret)
    name = str(state.get("name") or "")
    if not name:
        raise FailoverError(f"the peer at {url} did not say its name (its replication slot here)")
    sender = _streaming_from(config)
    rejoin = _our_address(config, sender[0])
    _allow_old_primary(config, sender[0], url)
    made = _make_slot(config, name)
    _keeping_up(config, url, state, name, made)
    try:
        fenced = peer.fence(url, secret, "switchover", box.box_id(config), rejoin, SWITCH_PEER_TIMEOUT)
    except peer.PeerError as error:
        _forget_slot(config, name, made)
        raise FailoverError(f"the primary at {url} refused to hand over: {error}; nothing was changed") from None
    progress = _Progress(url, sender)
    try:
        if not fenced:
            _fenced_late(config, url, secret, name, made)
        say(f"fenced the primary at {url}; waiting for it to stop its cluster")
        return _hand_over(config, started, say, secret, name, progress)
    except (Exception, KeyboardInterrupt) as error:
        raise _stranded(config, secret, progress, error) from None


@dataclass(frozen=True)
class OldPrimary:
    """What a failover made of the old primary."""

    words: str  # what became of it, for a person
    lsn: str | None = None  # its WAL position, when it said it: this box replays that far before it promotes
    strictly: bool = False  # LSN is its final checkpoint (its cluster stopped): replay past it
    standby: bool = False  # it is a standby: its LSN is compared, never waited for
    down: bool = False  # nothing of it answered: whether replication was synchronous cannot be asked of it
    caveat: str | None = None  # a warning to print when it cannot be told whether writes are missing


@dataclass
class _Progress:
    """How far a switchover got after its fence: what the message of a failure says."""

    url: str
    sender: tuple[str, int]  # the old primary's PostgreSQL, as this box reached it
    checkpoint: str | None = None  # the old primary's final checkpoint, once it said it
    caught_up: bool = False  # this box replayed past it: it has every write the old primary acknowledged


def _primary_state(url: str, secret: str) -> dict[str, Any]:
    """The peer's state, when it is the primary serving; else why there is nothing to switch over from."""
    from jitaku.ha import peer

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
    return state


def _keeping_up(config: Config, url: str, state: dict[str, Any], name: str, made: bool) -> None:
    """Refuse, before the fence, a standby that cannot replay within LAG_TIMEOUT what the primary had written
    when it was asked: after the fence it would have to catch up with the primary stopped."""
    lsn = state.get("lsn")
    if not isinstance(lsn, str):
        _forget_slot(config, name, made)
        raise FailoverError(f"the primary at {url} did not say its WAL position: nothing was changed")
    reached, replayed = _replayed(config, lsn, False, LAG_TIMEOUT)
    if not reached:
        _forget_slot(config, name, made)
        raise FailoverError(
            f"this box replayed WAL to {replayed} only in {LAG_TIMEOUT:.0f} s, short of the primary's {lsn}: it is "
            "too far behind to switch over; nothing was changed (see `jitaku ha status` here, then try again)"
        )


def _fenced_late(config: Config, url: str, secret: str, name: str, made: bool) -> None:
    """After a fence with no answer in time: go on once the primary's state says it is fenced (it was, and its
    answer was late); refuse when it says it is not (nothing was changed); raise when it does not say (it may
    be fenced: the caller says how both boxes stand)."""
    said, why = _fenced_after_timeout(url, secret, SWITCH_PEER_TIMEOUT)
    if said == "not fenced":
        _forget_slot(config, name, made)
        raise _NotFenced(
            f"the primary at {url} did not answer the fence within {SWITCH_PEER_TIMEOUT:.0f} s and says it is "
            "not fenced: nothing was changed here; try again"
        )
    if said != "fenced":
        raise FailoverError(
            f"the primary at {url} did not answer the fence within {SWITCH_PEER_TIMEOUT:.0f} s, nor say since "
            f"whether it is fenced{f' ({why})' if why else ''}"
        )


class _NotFenced(FailoverError):
    """The fence did not take: nothing was changed, and the switchover says so as it is."""


def _hand_over(config: Config, started: float, say: Say, secret: str, name: str, progress: _Progress) -> Switched:
    """A switchover's part after the fence: the old primary's final checkpoint replayed here, the promotion, mail
    taken here, the old primary streaming from us."""
    checkpoint, strictly = _wait_stopped(progress.url, secret)
    progress.checkpoint = checkpoint
    _wait_replayed(config, checkpoint, strictly)
    progress.caught_up = True
    say(f"replayed the old primary's WAL past its final checkpoint {checkpoint}")
    _promote(config)
    say("promoted this box's PostgreSQL")
    seconds = _wait_greeting(config, started)
    streaming = _wait_streaming_to(config, name)
    log.event("ha_switchover", seconds=round(seconds, 2), peer=progress.url, old_primary=name, streaming=streaming)
    return Switched(seconds, name, streaming)


def _stranded(config: Config, secret: str, progress: _Progress, error: BaseException) -> FailoverError:
    """The one message of a switchover that failed after its fence: the old primary may no longer serve and this
    box may not yet, so it says how both stand and what to run on which."""
    from jitaku.ha import peer

    if isinstance(error, _NotFenced):
        return error
    reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    url = progress.url
    try:
        state = peer.state(url, secret, PEER_TIMEOUT)
    except peer.PeerError as refused:
        there = f"answers but says nothing of its state ({refused})"
    else:
        if state is None:
            there = "does not answer (it may be fenced, and then it takes no mail)"
        elif state.get("fenced"):
            there = f"is fenced and takes no mail (its cluster {state.get('cluster')})"
        else:
            there = f"is a {state.get('role')}, not fenced"
    here, replayed = _here(config)
    host, port = progress.sender
    primary = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if here == role.PRIMARY:
        state_here = "promoted"
        advice = (
            "Restart jitaku serve here if it does not take mail within a minute (`jitaku check` says), then run "
            "`jitaku ha status` on the old primary to see whether it re-joined as this box's standby."
        )
    elif here == role.STANDBY and progress.caught_up:
        state_here = f"a standby, not promoted (replayed to {replayed})"
        advice = "This box has every write the old primary acknowledged: run `jitaku failover --force` here."
    else:
        state_here = (
            f"a standby, not promoted (replayed to {replayed})"
            if here == role.STANDBY
            else "of unknown state (its PostgreSQL does not answer)"
        )
        advice = (
            f"This box may lack the old primary's last writes (its final checkpoint: "
            f"{progress.checkpoint or 'unknown'}). To lose nothing: the old primary waits about 2 minutes for this "
            "box's promotion, then keeps its cluster stopped, fenced (`jitaku ha status` there says its re-join "
            "failed); run `jitaku failover --force` there: it takes the primary's part back, and this box streams "
            f"from it again (if it does not, `jitaku standby setup --primary {primary} --secret-file FILE "
            "--replace` here). To take mail here at once instead: `jitaku failover --force` here."
        )
    log.event("ha_switchover_failed", peer=url, error=reason, here=here, caught_up=progress.caught_up)
    return FailoverError(
        f"switchover failed after the primary at {url} was fenced: {reason}. The pair may have no primary now: the "
        f"old primary {there}; this box is {state_here}. {advice}"
    )


def _here(config: Config) -> tuple[str, str]:
    """This box's role and replay position as it says them now, "?" for what it cannot say."""
    try:
        with role.connect(config) as connection:
            standby_now = role.one(connection, "SELECT pg_is_in_recovery()")
            replayed = role.one(connection, "SELECT pg_last_wal_replay_lsn()::text")
    except Exception:  # noqa: BLE001 - the message is about the failure before this one
        return "?", "?"
    return (role.STANDBY if standby_now else role.PRIMARY), str(replayed or "?")


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


def _take_back(config: Config) -> bool:
    """On the old primary of a switchover that failed after its fence (the other box never promoted: the re-join
    gave up, jitaku.ha.rejoin.Unpromoted), make it the primary again: standby.signal removed, the cluster started
    (or, started meanwhile as the primary it still is by a restart of the daemon, kept), the fence cleared; the
    daemon, which watches a fenced box's fence file, then serves as the primary. Whether it was such a box;
    FailoverError when it is fenced by a switchover but its cluster is a standby already."""
    from jitaku.ha import cluster, rejoin

    found = fence.read(config)
    if found is None or found.purpose != "switchover":
        return False
    ready(config)
    with cluster.control(config):
        if cluster.running(config) is None:
            (config.postgres_dir / "standby.signal").unlink(missing_ok=True)
            cluster.start(config)
        elif role.current(config) == role.STANDBY:
            raise FailoverError(
                "this box is fenced by a switchover and its cluster is a standby already (re-joining the new "
                "primary): see `jitaku ha status`; it cannot take the primary's part back"
            )
        fence.clear(config)
    rejoin.forget_failure(config)
    log.event("ha_taken_back", fenced_by=found.by, checkpoint=found.checkpoint)
    return True


def _check(config: Config) -> str:
    """Refuse what cannot be promoted; the replication secret (the peer's requests are signed with it)."""
    ready(config)
    found = fence.read(config)
    if found is not None:
        back = (
            " (a switchover that failed after its fence: once `jitaku ha status` says the re-join failed, "
            "`jitaku failover --force` here takes the primary's part back)"
            if found.purpose == "switchover"
            else ""
        )
        raise FailoverError(
            f"this box is fenced ({found.purpose}, by {found.by}): the other box of the pair is the primary, and "
            f"this one's data may be behind it; `jitaku standby setup` re-joins it as that primary's standby{back}"
        )
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


def _fence_for_failover(config: Config, url: str, secret: str, force: bool) -> OldPrimary:
    """Fence the old primary if it answers; what became of it. Any answer over HTTP is a box alive: one that
    is not fenced after it (it refused, or says it is a primary still) stops us unless FORCE. Without any answer,
    its SMTP and PostgreSQL are knocked at (jitaku.ha.alive): one that takes a connection stops us too."""
    from jitaku.ha import peer

    by = box.box_id(config)
    refused: str | None = None
    try:
        answer = peer.fence_answer(url, secret, "failover", by, None, PEER_TIMEOUT)
        if answer is not None:
            lsn = answer.get("lsn")
            if isinstance(lsn, str):  # read after its listeners closed: no state request to wait for
                return OldPrimary(f"fenced at {url}", lsn)
            return _fenced_at(url, secret, "fenced")
    except peer.PeerError as error:
        refused = str(error)
    if refused is None and not _listening(url):  # nothing took the fence: no late answer to wait for
        return _silent(config, url, secret, force)
    if refused is None:  # no answer in time: it may have fenced itself all the same (a late answer)
        said, why = _fenced_after_timeout(url, secret, PEER_TIMEOUT)
        if said == "fenced":
            return _fenced_at(url, secret, "fenced (its answer came late)")
        if said == "silent":
            return _silent(config, url, secret, force)
        late = f"did not answer the fence within {PEER_TIMEOUT:.0f} s"
        what = "says it is not fenced (it may be, once the fence arrives)" if said == "not fenced" else why
        return _alive(url, f"{late}, and {what}", force)
    try:
        state = peer.state(url, secret, PEER_TIMEOUT)
    except peer.PeerError as error:
        return _alive(url, f"refused to be fenced ({refused}) and to say how it stands ({error})", force)
    if state is not None and state.get("fenced"):
        return _fenced_at(url, secret, "fenced already", state)
    if state is not None and state.get("role") == role.STANDBY:
        lsn = state.get("lsn")
        words = f"a standby at {url}, not a primary: not fenced, going on"
        return OldPrimary(words, lsn if isinstance(lsn, str) else None, standby=True)
    return _alive(url, f"refused to be fenced ({refused})", force)


def _listening(url: str) -> bool:
    """Whether the old primary's web takes a TCP connection: one that does not (refused, unreachable) never got
    our fence, so it cannot have fenced itself since; its other doors are knocked at all the same (_silent)."""
    door = alive.web_door(url)
    return door is None or alive.accepts(door.host, door.port, alive.PROBE_TIMEOUT)


def _fenced_at(url: str, secret: str, words: str, state: dict[str, Any] | None = None) -> OldPrimary:
    """A fenced old primary, and its WAL position (its final checkpoint when its cluster stopped)."""
    from jitaku.ha import peer

    if state is None:
        with contextlib.suppress(peer.PeerError):
            state = peer.state(url, secret, PEER_TIMEOUT)
    lsn = state.get("lsn") if state is not None else None
    if not isinstance(lsn, str):
        caveat = (
            "the old primary did not say its WAL position: could not tell whether this box has every write it "
            "acknowledged"
        )
        return OldPrimary(f"{words} at {url}", caveat=caveat)
    stopped = state is not None and state.get("cluster") in ("stopped", "standby") and bool(state.get("checkpoint"))
    return OldPrimary(f"{words} at {url}", lsn, strictly=stopped)


def _alive(url: str, what: str, force: bool) -> OldPrimary:
    """An old primary that answered and is not fenced: a refusal, unless FORCE."""
    if not force:
        raise FailoverError(
            f"the old primary at {url} is up and {what}: stop jitaku serve there and run `jitaku failover` again, "
            "or give --force to promote anyway (two primaries would then take mail)"
        )
    return OldPrimary(f"not fenced at {url}: it {what}; promoting anyway (--force): two primaries may take mail")


def _silent(config: Config, url: str, secret: str, force: bool) -> OldPrimary:
    """An old primary whose web did not answer: down only when its SMTP and PostgreSQL do not either. One whose
    doors answer may be restarting, fenced by our fence (its web not yet up): its state is asked again for up to
    LATE_FENCE_WAIT seconds, and the doors knocked at again, before it is taken for a primary still."""
    doors = alive.doors(config, url, _receiver(config).primary)
    answered = alive.answering(doors)
    if answered:
        said, why = _fenced_after_timeout(url, secret, LATE_FENCE_WAIT)
        if said == "fenced":
            return _fenced_at(url, secret, "fenced (its answer came late)")
        late = f"did not answer the fence within {PEER_TIMEOUT:.0f} s"
        if said == "not fenced":
            return _alive(url, f"{late}, and says it is not fenced", force)
        if said == "refused":
            return _alive(url, f"{late}, and {why}", force)
        answered = alive.answering(doors)
    if answered and not force:
        raise FailoverError(
            f"the old primary's web at {url} does not answer (it may have fenced itself meanwhile), but "
            f"{' and '.join(map(str, answered))} takes connections: it may still be the primary. Stop jitaku serve "
            "there (or power it off) and run `jitaku failover` again, or give --force to promote anyway (two "
            "primaries could then take mail)"
        )
    if answered:
        return OldPrimary(
            f"no answer from {url} in {PEER_TIMEOUT:.0f} s, but {' and '.join(map(str, answered))} takes "
            "connections: not fenced; promoting anyway (--force): two primaries may take mail",
            down=True,
        )
    knocked = f", nor from {' or '.join(map(str, doors))}" if doors else ""
    return OldPrimary(f"no answer from {url} in {PEER_TIMEOUT:.0f} s{knocked}: not fenced, going on", down=True)


def _fenced_after_timeout(url: str, secret: str, timeout: float) -> tuple[str, str]:
    """After a fence that got no answer in time, what the peer's state says, looked at for up to TIMEOUT seconds
    (its fence may take a moment): ("fenced", ""), ("not fenced", ""), ("refused", why: it answered, but not its
    state) or ("silent", ""): it does not answer."""
    from jitaku.ha import peer

    deadline = time.monotonic() + timeout
    said = ("silent", "")
    while True:
        try:
            state = peer.state(url, secret, max(deadline - time.monotonic(), 1.0))
        except peer.PeerError as error:
            said = ("refused", str(error))
        else:
            if state is not None and state.get("fenced"):
                return "fenced", ""
            if state is not None:
                said = ("not fenced", "")
        if time.monotonic() > deadline:  # silent once is no answer yet: a box restarting fenced says it soon
            return said
        time.sleep(POLL)


def _missing_writes(config: Config, old: OldPrimary) -> str | None:
    """A warning when this box may not have every write the old primary acknowledged, else None. A fenced old
    primary said its WAL position: this box replays that far first (bounded). A standby peer's is compared. One
    that is down cannot say: what this standby knows of its replication is told instead."""
    if old.lsn is not None:
        timeout = 0.0 if old.standby else LIVE_CATCH_UP_TIMEOUT
        reached, replayed = _replayed(config, old.lsn, old.strictly, timeout)
        if reached:
            return None
        if old.standby:
            return f"the peer replayed WAL to {old.lsn}, past this box's {replayed}: writes may be missing here"
        return (
            f"this box replayed WAL to {replayed} only in {timeout:.0f} s, short of the old primary's {old.lsn}: "
            "writes it acknowledged after that are missing here (they stay in its cluster)"
        )
    if old.down:
        return _synchronous_warning(config)
    return old.caveat


UNKNOWN_SYNC = "could not tell whether replication was synchronous: writes acknowledged while it was not may be missing"


def _synchronous_warning(config: Config) -> str:
    """What this standby can tell of whether it was synchronous when the old primary went: when it heard from it
    last. The primary's synchronous_standby_names is not replicated (ALTER SYSTEM writes no WAL), so whether it
    named us cannot be read here; a standby silent for longer than [ha] sync_timeout was dropped from it, if the
    primary lived that long."""
    silent = _receiver(config).silent_for
    if silent is None:
        return f"{UNKNOWN_SYNC} (this standby has not heard from the primary since its PostgreSQL started)"
    timeout = config.settings.ha.sync_timeout
    if silent <= timeout:
        return f"{UNKNOWN_SYNC} (this standby last heard from the primary {silent:.0f} s ago)"
    since = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() - silent + timeout))
    return (
        f"this standby was not synchronous from {since} on, if the old primary ran that long: it last heard from it "
        f"{silent:.0f} s ago, and a primary stops waiting for a silent standby after [ha] sync_timeout "
        f"({timeout:g} s); writes it acknowledged from then on may be missing here"
    )


@dataclass(frozen=True)
class Receiver:
    """This standby's WAL receiver, as pg_stat_wal_receiver and primary_conninfo say."""

    status: str | None  # "streaming", "waiting"...; None without a receiver
    primary: tuple[str, int] | None  # the old primary's PostgreSQL, as this box reaches it
    silent_for: float | None  # seconds since the last message from the primary; None: none since the start


RECEIVER = """
SELECT r.status, r.sender_host, r.sender_port, extract(epoch FROM now() - r.last_msg_receipt_time)::float8,
       current_setting('primary_conninfo')
FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true
"""


def primary_database(config: Config) -> tuple[str, int] | None:
    """The primary's PostgreSQL as this standby reaches it (where its WAL receiver streams from, or is set to)."""
    return _receiver(config).primary


def _receiver(config: Config) -> Receiver:
    from psycopg.conninfo import conninfo_to_dict

    with role.connect(config) as connection:
        row = connection.execute(RECEIVER).fetchone()
    assert row is not None
    status, host, port, silent, conninfo = (cast(Any, value) for value in row)
    if not host or str(host).startswith("/"):
        try:
            fields = conninfo_to_dict(str(conninfo or ""))
        except Exception:  # noqa: BLE001 - psycopg's ProgrammingError: no address to knock at, then
            fields = {}
        host, port = fields.get("host"), fields.get("port") or 5432
    primary = None
    if host and not str(host).startswith("/") and str(port).isdecimal():
        primary = (str(host).split(",")[0], int(port))
    return Receiver(status, primary, float(silent) if silent is not None else None)


def _promote(config: Config, promoting: Callable[[], None] | None = None) -> bool:
    """pg_promote, PROMOTING called just before it; whether this call ran it (False: promoted meanwhile)."""
    with role.connect(config) as connection:
        if not role.one(connection, "SELECT pg_is_in_recovery()"):
            return False  # promoted meanwhile (by the daemon's own watch, a person): what we wanted
        if promoting is not None:
            promoting()
        if not role.one(connection, f"SELECT pg_promote(true, {PROMOTE_WAIT})"):
            raise FailoverError(
                f"PostgreSQL did not finish its promotion within {PROMOTE_WAIT} s: see {config.postgres_dir}/log"
            )
    log.event("ha_promote", data_dir=str(config.data_dir))
    return True


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


def _streaming_from(config: Config) -> tuple[str, int]:
    """The old primary's PostgreSQL as our WAL receiver streams from it (host, port); refused when it does not
    stream: a switchover would then have to wait for WAL it may never get."""
    with role.connect(config) as connection:
        row = connection.execute("SELECT status, sender_host, sender_port FROM pg_stat_wal_receiver").fetchone()
    if row is None or row[0] != "streaming" or not row[1]:
        raise FailoverError(
            "this box does not stream from the primary (see `jitaku ha status`): a switchover would lose what it "
            "has not received; fix replication first, or run `jitaku failover` if the primary is gone"
        )
    return str(row[1]), int(cast(Any, row[2]) or 5432)


def _allow_old_primary(config: Config, host: str, url: str) -> None:
    """Let the old primary replicate from us once it is our standby: a pg_hba.conf line for each address it may
    come from. HOST (what we dial) when it is an IP, each of its addresses when it is a name (a name in
    pg_hba.conf matches only with a reverse lookup that agrees), and the peer URL's host when that is another IP."""
    import ipaddress

    addresses = [host] if _is_ip(host) else _resolved(host)
    theirs = alive.url_host(url)
    if theirs is not None and _is_ip(theirs):
        theirs = str(ipaddress.ip_address(theirs))
        if theirs not in addresses:
            addresses.append(theirs)
    for address in addresses:
        standby.allow_replication(config, address)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _resolved(host: str) -> list[str]:
    """HOST's addresses, IPv4 and IPv6, in the resolver's order."""
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as error:
        raise FailoverError(
            f"cannot resolve {host} (the primary's host in primary_conninfo) to let it replicate from this box: "
            f"{getattr(error, 'strerror', None) or error}; nothing was changed"
        ) from None
    return list(dict.fromkeys(str(info[4][0]).split("%")[0] for info in infos))


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
    last = "no answer" if state is None else f"cluster {state.get('cluster')}, fenced {bool(state.get('fenced'))}"
    raise FailoverError(
        f"the old primary did not report its cluster stopped within {STOPPED_TIMEOUT:.0f} s (last: {last})"
    )


def _replayed(config: Config, lsn: str, strictly: bool, timeout: float) -> tuple[bool, str | None]:
    """Whether our cluster replays past LSN (or as far, not STRICTLY) within TIMEOUT seconds, and where its replay
    stands; LSNs compared as numbers, by PostgreSQL."""
    deadline = time.monotonic() + timeout
    with role.connect(config) as connection:
        while True:
            row = connection.execute(
                "SELECT pg_last_wal_replay_lsn()::text, pg_wal_lsn_diff(pg_last_wal_replay_lsn(), %s::pg_lsn) >= %s",
                (lsn, 1 if strictly else 0),
            ).fetchone()
            assert row is not None
            replayed, past = row
            if past or time.monotonic() >= deadline:
                return bool(past), str(replayed) if replayed is not None else None
            time.sleep(POLL)


def _wait_replayed(config: Config, checkpoint: str, strictly: bool) -> None:
    """Our cluster replayed past CHECKPOINT (or as far, not STRICTLY) within CATCH_UP_TIMEOUT."""
    reached, replayed = _replayed(config, checkpoint, strictly, CATCH_UP_TIMEOUT)
    if not reached:
        raise FailoverError(
            f"this box replayed WAL to {replayed} only, short of the old primary's final checkpoint {checkpoint}, "
            f"after {CATCH_UP_TIMEOUT:.0f} s"
        )


def _make_slot(config: Config, name: str) -> bool:
    """The old primary's physical slot here, made before the fence (on the standby, it keeps WAL from our replay
    position on, which is before where the old primary's own WAL ends and where it will ask us to start); whether
    it was made. A slot of that name in use is kept; one left unused (an earlier turn of the pair's, holding WAL
    from long ago) or whose WAL is lost is made anew."""
    with role.connect(config) as connection:
        row = connection.execute(
            "SELECT active, wal_status FROM pg_replication_slots WHERE slot_name = %s", (name,)
        ).fetchone()
        if row is not None and row[0] and row[1] != "lost":
            return False
        if row is not None:
            connection.execute("SELECT pg_drop_replication_slot(%s)", (name,))
            log.event("ha_slot_dropped", slot=name, active=bool(row[0]), wal_status=row[1])
        connection.execute("SELECT 1 FROM pg_create_physical_replication_slot(%s, true)", (name,))
    log.event("ha_slot_made", slot=name)
    return True


def _forget_slot(config: Config, name: str, made: bool) -> None:
    """Drop the slot a switchover MADE when it stops before its fence: unused, it would keep WAL here for ever."""
    if not made:
        return
    try:
        with role.connect(config) as connection:
            connection.execute("SELECT pg_drop_replication_slot(%s)", (name,))
    except Exception as error:  # noqa: BLE001 - the refusal being raised says more; the log keeps this one
        log.event("ha_slot_left", slot=name, error=str(error).splitlines()[0] if str(error) else repr(error))


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
