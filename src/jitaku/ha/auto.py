"""Automatic failover (issue 24, point 6), off by default: a standby's watch of its primary while `[ha] auto_after`
is above 0 on PostgreSQL (jitaku.services runs it in a standby's main process). It promotes this box only when
all of these hold, each for a reason:

- The primary has been silent for auto_after seconds: its web (peer.state every AUTO_EVERY seconds) answers
  nothing. Any answer is a box alive, never a reason to promote: a primary, a fenced box or a standby (a
  switchover, or a person, is at work), a refusal (403: another secret, clocks apart; alerted once).
- None of its doors takes a connection (jitaku.ha.alive: its SMTP, its PostgreSQL): a hung web is no dead box.
- The witness outside (jitaku.ha.witness) cannot reach the pair's public services either. This standby serves
  nothing, so whatever answers the witness is the primary, still serving: a cut between the two boxes, not a dead
  primary. A witness that cannot be asked leaves the choice to a person.
- Replication was synchronous when contact was lost: the primary's last answer named this box among its
  synchronous standbys (/api/ha/state's "synchronous"). Only then does this box have every write the primary
  acknowledged. A primary seen alive after its last answer (a door, the witness) may have lived on unseen until
  the watch found it silent everywhere: when that is more than `[ha] sync_timeout` (the pair's boxes are
  configured alike) after its last answer, it may have stopped waiting for this box meanwhile (jitaku.ha.sync)
  and acknowledged writes it never sent here: that counts as not synchronous until it answers again. A standby
  that has not heard from its primary since its daemon started cannot know, and never promotes by itself.

Otherwise it alerts once, saying why, and that `jitaku failover` promotes anyway; it keeps watching, and an
answer from the primary clears the alert. The promotion is jitaku.ha.failover.promote_automatically (the fence
attempt, never forced, then pg_promote); the daemon's watch of its cluster then serves as the primary, and its
"became the primary" alert says it was automatic, and why (promotion()).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from time import monotonic
from typing import Any

from jitaku import log
from jitaku.config import Config
from jitaku.ha import alive, failover, peer, role, standby, witness

AUTO_EVERY = 2.0  # seconds between two asks of the primary's state
STATE_TIMEOUT = 3.0  # seconds the primary has to answer each
WITNESS_EVERY = 10.0  # seconds between two asks of the witness while this box holds back: it is outside the home

Alert = Callable[[str, str, bool], Awaitable[None]]  # (sentence, ja, over): over says the last alert's trouble is


class Action(Enum):
    WATCH = "watch"  # nothing to do but ask again
    KNOCK = "knock"  # silent long enough: knock at its doors
    ASK = "ask"  # no door answers: ask the witness
    ALIVE = "alive"  # a door answers: not dead (logged)
    HOLD = "hold"  # do not promote: a person must decide (alerted)
    PROMOTE = "promote"


@dataclass(frozen=True)
class Decision:
    action: Action
    words: str = ""
    ja: str = ""
    key: str = ""  # which reason to hold back: alerted once each time it changes


def decide(
    silent: float | None,
    auto_after: float,
    synchronous: bool,
    doors: list[str] | None,
    seen: witness.Answer | None,
) -> Decision:
    """What to do after SILENT seconds without an answer from the primary (None: none since the daemon started),
    SYNCHRONOUS: its last answer named this box synchronous (and it was not seen alive long after), DOORS: its
    doors that take a connection (None: not knocked yet), SEEN: the witness's answer (None: not asked yet)."""
    if silent is None:
        return Decision(
            Action.WATCH,
            "the primary has not answered since this daemon started: whether this box was its synchronous standby "
            "is not known, and it will not promote itself until the primary has answered once",
        )
    if silent < auto_after:
        return Decision(Action.WATCH)
    if doors is None:
        return Decision(Action.KNOCK)
    if doors:
        return Decision(
            Action.ALIVE,
            f"the primary's web has been silent for {silent:.0f} s, but {' and '.join(doors)} takes connections: "
            "it is not dead; not promoting",
        )
    if seen is None:
        return Decision(Action.ASK)
    if seen.seen is witness.Seen.ANSWERS:
        return Decision(
            Action.HOLD,
            f"the primary has been silent for {silent:.0f} s, but {seen.words}: a cut between the boxes, not a dead "
            "primary. This standby does not promote itself; if the primary is down, run `jitaku failover` here.",
            f"プライマリは {silent:.0f} 秒応答しませんが、外部の監視役からは届いています({seen.words})。"
            "故障ではなく二台の間の断線です。自動では昇格しません。プライマリが停止しているなら、こちらで "
            "`jitaku failover` を実行してください。",
            "witness answers",
        )
    if seen.seen is witness.Seen.UNKNOWN:
        return Decision(
            Action.HOLD,
            f"the primary has been silent for {silent:.0f} s, and the witness cannot tell whether it serves "
            f"({seen.words}). This standby does not promote itself: a person must decide (`jitaku failover` here).",
            f"プライマリは {silent:.0f} 秒応答せず、外部の監視役にも確認できません({seen.words})。"
            "自動では昇格しません。判断してください(こちらで `jitaku failover`)。",
            "witness unknown",
        )
    if not synchronous:
        return Decision(
            Action.HOLD,
            f"the primary has been silent for {silent:.0f} s and {seen.words}, but replication may have been "
            "asynchronous when contact was lost (its last answer did not name this box synchronous, or it was seen "
            "alive after, longer than [ha] sync_timeout): writes the primary acknowledged may be missing here. This "
            "standby does not promote itself; run `jitaku failover` here to promote it anyway.",
            f"プライマリは {silent:.0f} 秒応答せず、外部からも届きません({seen.words})。ただし接続が切れた時点で"
            "レプリケーションは非同期でした。受け付け済みの書き込みが欠けている可能性があるため、自動では昇格しません。"
            "それでも昇格させるにはこちらで `jitaku failover` を実行してください。",
            "asynchronous",
        )
    return Decision(
        Action.PROMOTE,
        f"the primary was silent for {silent:.0f} s at every door, {seen.words}, and this box was its synchronous "
        "standby when contact was lost",
        f"プライマリは {silent:.0f} 秒どこからも応答がなく、外部からも届かず({seen.words})、"
        "接続が切れた時点でこちらが同期スタンバイでした",
    )


_promotions: list[tuple[str, str]] = []  # why this process promoted its box (en, ja), until its alert says so


def promotion() -> tuple[str, str] | None:
    """Why this process promoted its box by itself, once (the new primary's "became the primary" alert); None
    when it did not (a person's `jitaku failover`, a switchover)."""
    return _promotions.pop() if _promotions else None


@dataclass
class _Watch:
    """What the watch knows of the primary: when it answered last (monotonic), and whether that answer named this
    box synchronous; when it was last seen alive without answering (a door, the witness)."""

    heard: float | None = None
    synchronous: bool = False
    alive_at: float | None = None
    said: str = ""  # the last thing logged, so each is logged once
    held: str = ""  # the reason alerted last; "" when nothing is alerted
    asked_at: float | None = None  # when the witness was asked last, while holding back
    seen: witness.Answer | None = None

    def in_sync(self, sync_timeout: float, now: float) -> bool:
        """Whether this box still counts as the primary's synchronous standby NOW: its last answer said so, and
        it was not seen alive since, or is found dead within SYNC_TIMEOUT of that answer (it may have lived on
        unseen until now, and a primary waits for a silent standby no longer than that)."""
        lived_on = self.alive_at is not None and self.heard is not None and now - self.heard > sync_timeout
        return self.synchronous and not lived_on


async def watch(config: Config, alert: Alert) -> None:
    """Watch the primary until this box promotes itself (then return: the daemon's watch of the cluster ends the
    services); cancelled with the services. Each step that may block runs in a thread, bounded."""
    url, secret = peer.peer_url(config), _secret(config)
    if url is None or secret is None:
        log.event("ha_auto_off", reason="no peer or no replication secret")
        await alert(
            "automatic failover is on ([ha] auto_after) but this standby knows no peer to watch ([ha] peer, or a "
            "replication secret): it will not promote itself.",
            "自動フェイルオーバーが有効ですが、監視する相手([ha] peer またはレプリケーション秘密)がありません。"
            "自動では昇格しません。",
            False,
        )
        return
    name = await asyncio.to_thread(own_name, config)
    log.event("ha_auto_watch", peer=url, application_name=name, auto_after=config.settings.ha.auto_after)
    known = _Watch()
    while True:
        await asyncio.sleep(AUTO_EVERY)
        try:
            if await _step(config, url, secret, name, known, alert):
                return
        except Exception as error:  # noqa: BLE001 - never ends the services it watches for; the next look may do
            log.event("ha_auto_failed", error=f"{type(error).__name__}: {error}"[:300])


async def _step(config: Config, url: str, secret: str, name: str, known: _Watch, alert: Alert) -> bool:
    """One look at the primary; whether this box promoted itself."""
    settings = config.settings.ha
    answer = await _state(url, secret)
    now = monotonic()
    if answer is not None:
        await _heard(known, answer, name, now, alert)
        return False
    silent = None if known.heard is None else now - known.heard
    decision = decide(silent, settings.auto_after, known.in_sync(settings.sync_timeout, now), None, None)
    if decision.words and decision.action is Action.WATCH:
        _say(known, "ha_auto_unheard", decision.words)
    if decision.action is Action.KNOCK:
        doors = await asyncio.to_thread(_answering_doors, config, url)
        if doors:
            known.alive_at = monotonic()
        decision = decide(silent, settings.auto_after, known.in_sync(settings.sync_timeout, now), doors, None)
    if decision.action is Action.ASK:
        if known.seen is None or known.asked_at is None or now - known.asked_at >= WITNESS_EVERY:
            known.seen, known.asked_at = await witness.ask(config), monotonic()
            if known.seen.seen is witness.Seen.ANSWERS:
                known.alive_at = known.asked_at
        decision = decide(silent, settings.auto_after, known.in_sync(settings.sync_timeout, now), [], known.seen)
    if decision.action is Action.ALIVE:
        _say(known, "ha_auto_alive", decision.words)
    elif decision.action is Action.HOLD:
        await _hold(known, decision.key, decision.words, decision.ja, alert)
    elif decision.action is Action.PROMOTE:
        return await _promote(config, known, decision, alert)
    return False


async def _heard(known: _Watch, answer: dict[str, Any] | peer.PeerError, name: str, now: float, alert: Alert) -> None:
    """The primary answered (ANSWER: its state, or its refusal): a box alive, whatever it said. A 5xx (its
    database restarting) is logged; a refusal (403: another secret, clocks apart) is alerted."""
    known.heard, known.alive_at, known.seen, known.asked_at = now, None, None, None
    if isinstance(answer, peer.PeerError) and answer.status is not None and answer.status >= 500:
        known.synchronous = False  # its database restarting: whether it waits for this box is not known
        _say(known, "ha_auto_peer", f"answers {answer.status}: its database cannot say how it stands")
        return
    if isinstance(answer, peer.PeerError):
        known.synchronous = False
        await _hold(
            known,
            "refused",
            f"the primary answers but refuses this standby ({answer}): this box cannot watch it, and will not "
            "promote itself; check that both boxes hold the same replication secret and that their clocks agree.",
            f"プライマリは応答しますが、このスタンバイの要求を拒否しています({answer})。監視できないため自動では"
            "昇格しません。両方が同じレプリケーション秘密を持ち、時計が合っているか確認してください。",
            alert,
        )
        return
    primary = answer.get("role") == role.PRIMARY and not answer.get("fenced")
    synchronous = answer.get("synchronous")
    known.synchronous = primary and isinstance(synchronous, list) and name in synchronous
    _say(
        known,
        "ha_auto_peer",
        f"role {answer.get('role')}, fenced {bool(answer.get('fenced'))}, this box synchronous {known.synchronous}",
    )
    if known.held:
        known.held = ""
        await alert(
            "the primary answers this standby again: automatic failover watches it as before.",
            "プライマリが再びこのスタンバイに応答しています。自動フェイルオーバーの監視を続けます。",
            True,
        )


async def _hold(known: _Watch, key: str, words: str, ja: str, alert: Alert) -> None:
    """Hold back, alerting WORDS once for each new reason KEY."""
    if known.held == key:
        return
    known.held = key
    log.event("ha_auto_hold", reason=key, words=words)
    await alert(words, ja, False)


async def _promote(config: Config, known: _Watch, decision: Decision, alert: Alert) -> bool:
    why = (decision.words, decision.ja)
    _promotions[:] = [why]
    try:
        await asyncio.to_thread(failover.promote_automatically, config, decision.words)
    except Exception as error:  # noqa: BLE001 - FailoverError, or the cluster's: a person decides, told why
        _promotions.clear()
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        await _hold(
            known,
            f"failed: {reason}",
            f"this standby tried to promote itself ({decision.words}) and did not: {reason}",
            f"このスタンバイは自動昇格を試みましたが、できませんでした: {reason}",
            alert,
        )
        await asyncio.sleep(WITNESS_EVERY)  # not again at once: the old primary, or this cluster, may need a while
        return False
    return True


async def _state(url: str, secret: str) -> dict[str, Any] | peer.PeerError | None:
    """The primary's state; its refusal; None when it is silent (or slower than STATE_TIMEOUT)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(peer.state, url, secret, STATE_TIMEOUT), STATE_TIMEOUT + 2)
    except peer.PeerError as error:
        return error
    except TimeoutError:
        return None


def _answering_doors(config: Config, url: str) -> list[str]:
    """The old primary's doors that take a connection (jitaku.ha.alive), in words."""
    try:
        database = failover.primary_database(config)
    except Exception:  # noqa: BLE001 - our own cluster cannot say: its SMTP is knocked at still
        database = None
    return [str(door) for door in alive.answering(alive.doors(config, url, database))]


def own_name(config: Config) -> str:
    """This standby's name as its primary's pg_stat_replication says it: the application_name of its
    primary_conninfo (jitaku.ha.standby writes slot_name there, --name or the host's), else slot_name(None)."""
    from psycopg.conninfo import conninfo_to_dict

    try:
        with role.connect(config) as connection:
            conninfo = role.one(connection, "SELECT current_setting('primary_conninfo')")
        found = conninfo_to_dict(str(conninfo or "")).get("application_name")
    except Exception:  # noqa: BLE001 - psycopg's errors: the name standby setup would give
        found = None
    return str(found) if found else standby.slot_name(None)


def _secret(config: Config) -> str | None:
    try:
        return standby.read_secret(standby.secret_path(config))
    except standby.StandbyError:
        return None


def _say(known: _Watch, name: str, words: str) -> None:
    """Log WORDS once, until something else is logged."""
    if known.said != words:
        known.said = words
        log.event(name, words=words)
