"""Automatic failover (issue 24, point 6), off by default: a standby's watch of its primary while `[ha] auto_after`
is above 0 on PostgreSQL (jitaku.services runs it in a standby's main process). It promotes this box only when
all of these hold, each for a reason:

- The primary has been silent for auto_after seconds: its web (peer.state every AUTO_EVERY seconds) answers
  nothing. Any answer is a box alive, never a reason to promote: a primary, a fenced box or a standby (a
  switchover, or a person, is at work), a 5xx (its database restarting), a refusal (403: another secret, clocks
  apart; alerted). auto_after must outlast the primary's reboot: a primary coming back is never failed over (the
  promotion asks its state once more just before the fence, and any answer stops it).
- None of its doors takes a connection now (jitaku.ha.alive: its SMTP, its PostgreSQL): a hung web is no dead box.
- The witness outside (jitaku.ha.witness) cannot reach the pair's public services now either. This standby serves
  nothing, so whatever answers the witness is the primary, still serving: a cut between the two boxes, not a dead
  primary. A witness that cannot be asked leaves the choice to a person; one that cannot be asked when the watch
  starts is alerted then (a warning), before it matters.
- Replication was synchronous when contact was lost: the primary's last state answer (200) named this box among
  its synchronous standbys that keep up (/api/ha/state's "synchronous", jitaku.web.ha.keeping_up), looked up by
  this standby's own name (its WAL receiver's slot_name: jitaku.ha.sync counts a standby by application_name =
  slot name). Only then does this box have every write the primary acknowledged, and only for a while: a primary
  that goes on without this standby for `[ha] sync_timeout` (the pair's boxes are configured alike) turns
  asynchronous (jitaku.ha.sync) and acknowledges writes it never sends here. So from the first missed answer on,
  the watch knocks at its doors (every KNOCK_EVERY seconds) and asks the witness (every WITNESS_EVERY); any
  sighting (an answer of any kind, a door, the witness) is the last time it was alive, and the doors and the
  witness must both have found it gone since, by its last answer + sync_timeout - MARGIN (MARGIN: the primary's
  timer may have started a little before that answer). A primary that lived on longer, or was not seen gone in
  time, may have acknowledged writes missing here. A standby that has not heard from its primary since its daemon
  started cannot know, and never promotes by itself.

Otherwise it alerts once for each reason (a category), saying why, and that `jitaku failover` promotes anyway;
it keeps watching, and an answer from the primary says the alert is over, as does the end of the watch when the
box became the primary (by itself or by a person). The promotion is jitaku.ha.failover.promote_automatically (the
state asked once more, the fence attempt, never forced, then pg_promote); one that fails is not tried again until
the primary has answered. The daemon's watch of its cluster then serves as the primary, and its "became the
primary" alert says it was automatic, and why (promotion()), only when this watch ran pg_promote itself.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from time import monotonic
from typing import Any

from jitaku import log
from jitaku.config import Config
from jitaku.ha import alive, failover, peer, role, standby, witness

AUTO_EVERY = 2.0  # seconds between two asks of the primary's state
STATE_TIMEOUT = 3.0  # seconds the primary has to answer each
KNOCK_EVERY = 5.0  # seconds between two knocks at a silent primary's doors
WITNESS_EVERY = 10.0  # seconds between two asks of the witness while the primary is silent: it is outside the home
LOOK_TIMEOUT = 10.0  # seconds a knock at the doors, or a look at this box's own cluster, may take in all
WITNESS_TIMEOUT = 20.0  # seconds an ask of the witness may take (the buddy client's own bound is 15 s)
MARGIN = 2.0  # seconds the primary's timer for this standby may have started before its last answer
NAME_GRACE = 60.0  # seconds the primary may answer while this standby cannot say its own name, before a warning
WITNESS_RETRY = 60.0  # seconds between two asks of a witness that could not be asked when the watch started
OVER_TIMEOUT = 5.0  # seconds the last alert of a watch ended by a promotion may take

_RECEIVER = "SELECT pg_is_in_recovery(), (SELECT slot_name FROM pg_stat_wal_receiver)"


class Level(Enum):
    CRITICAL = "critical"  # the box holds back while its primary is silent: a person must decide
    WARNING = "warning"  # automatic failover could not work if the primary died now
    OVER = "over"  # the last alert of its kind is over


Alert = Callable[[str, str, Level], Awaitable[None]]  # (sentence, ja, level)
Ended = Callable[[], str | None]  # how the services ended ("promoted", "stopped"...); None while they run


class Action(Enum):
    WATCH = "watch"  # nothing to do but look again
    HOLD = "hold"  # do not promote: a person must decide (alerted)
    PROMOTE = "promote"


@dataclass(frozen=True)
class Decision:
    action: Action
    words: str = ""
    ja: str = ""
    key: str = ""  # the reason's category: alerted (HOLD) or logged (WATCH) once each time it changes


@dataclass
class Watch:
    """What the watch knows of the primary (times are monotonic)."""

    started: float  # when the watch started: the silence of a primary that never answered counts from then
    name: str | None = None  # this standby's, as the primary's answers name its synchronous standbys
    answered: float | None = None  # its last answer of any kind
    heard: float | None = None  # its last state answer (200), and whether that named this box synchronous
    synchronous: bool = False
    alive_at: float | None = None  # the last time anything saw it: an answer, a door, the witness
    doors: list[str] | None = None  # its doors that took a connection at the last knock; None: not knocked
    knocked_at: float | None = None  # since its last answer
    doors_shut_at: float | None = None  # when a knock found every door shut, first since alive_at
    seen: witness.Answer | None = None  # the witness's last answer since its last answer
    asked_at: float | None = None
    unseen_at: float | None = None  # when the witness reached none of the targets, first since alive_at
    failed: bool = False  # a promotion failed since its last answer: a person decides
    held: set[str] = field(default_factory=set)  # the reasons alerted since its last answer: each once, until then
    warned: set[str] = field(default_factory=set)  # the warnings standing
    witness_at: float | None = None  # when a witness that could not be asked at the start was asked last
    said: dict[str, str] = field(default_factory=dict)  # what each event logged last, so each is logged once
    error: str = ""  # the last failure of a step, logged once

    def gone_at(self) -> float | None:
        """When the doors and the witness had both found the primary gone since it was last seen; None if not."""
        if self.doors_shut_at is None or self.unseen_at is None:
            return None
        return max(self.doors_shut_at, self.unseen_at)


def decide(known: Watch, now: float, auto_after: float, sync_timeout: float) -> Decision:
    """What to do NOW while the primary does not answer, from what the watch KNOWS of it."""
    silent = now - (known.answered if known.answered is not None else known.started)
    if silent < auto_after or known.doors is None or known.seen is None:
        return Decision(Action.WATCH)
    if known.doors:
        return _held(
            "doors",
            silent,
            f"{' and '.join(known.doors)} takes connections: it is not dead (its web hangs, or restarts)",
            f"{' / '.join(known.doors)} は接続を受け付けています。停止していません(Web が止まっているか再起動中)",
        )
    seen = known.seen
    if seen.seen is witness.Seen.ANSWERS:
        return _held(
            "witness answers",
            silent,
            f"{seen.words}: a cut between the boxes, not a dead primary",
            f"外部の監視役からは届いています({seen.words})。故障ではなく二台の間の断線です",
        )
    if seen.seen is witness.Seen.UNKNOWN:
        return _held(
            "witness unknown",
            silent,
            f"the witness cannot tell whether it serves ({seen.words})",
            f"外部の監視役にも確認できません({seen.words})",
        )
    if known.heard is None:
        return _held(
            "never heard",
            silent,
            f"{seen.words}, but it has not answered since this daemon started: whether this box was its "
            "synchronous standby is not known",
            f"外部からも届きません({seen.words})。ただしこのデーモンの起動以来応答がなく、こちらが同期スタンバイ"
            "だったか分かりません",
        )
    if not known.synchronous:
        return _held(
            "asynchronous",
            silent,
            f"{seen.words}, but replication was not synchronous when contact was lost (its last answer did not "
            "name this box among its synchronous standbys that keep up): writes it acknowledged may be missing here",
            f"外部からも届きません({seen.words})。ただし接続が切れた時点でレプリケーションは同期ではありませんでした。"
            "受け付け済みの書き込みが欠けている可能性があります",
        )
    gone = known.gone_at()
    if gone is None:
        return Decision(Action.WATCH)
    if gone > known.heard + sync_timeout - MARGIN:
        return _held(
            "lived on",
            silent,
            f"{seen.words}, but it was not seen gone until {gone - known.heard:.0f} s after its last answer, past "
            "[ha] sync_timeout: it may have turned asynchronous meanwhile, and writes it acknowledged then may be "
            "missing here",
            f"外部からも届きません({seen.words})。ただし最後の応答から {gone - known.heard:.0f} 秒後まで停止を"
            "確認できず、[ha] sync_timeout を過ぎています。その間に非同期になり、受け付けた書き込みが欠けている"
            "可能性があります",
        )
    if known.failed:
        return _held("failed", silent, "a promotion failed (alerted)", "昇格に失敗しました(通知済み)")
    return Decision(
        Action.PROMOTE,
        f"the primary was silent for {silent:.0f} s, at every door, {seen.words}, and this box was its synchronous "
        f"standby when contact was lost, and stayed it until the primary was seen gone ({gone - known.heard:.0f} s "
        "after its last answer)",
        f"プライマリは {silent:.0f} 秒どこからも応答がなく、外部からも届かず({seen.words})、接続が切れた時点で"
        "こちらが同期スタンバイで、停止が確認されるまでそのままでした",
    )


def _held(key: str, silent: float, why: str, why_ja: str) -> Decision:
    return Decision(
        Action.HOLD,
        f"the primary has been silent for {silent:.0f} s, but {why}. This standby does not promote itself; if the "
        "primary is down, run `jitaku failover` here to promote it anyway.",
        f"プライマリは {silent:.0f} 秒応答しませんが、{why_ja}。自動では昇格しません。プライマリが停止しているなら、"
        "こちらで `jitaku failover` を実行してください。",
        key,
    )


_promotions: list[tuple[str, str]] = []  # why this process promoted its box (en, ja), until its alert says so


def promotion() -> tuple[str, str] | None:
    """Why this process promoted its box by itself, once (the new primary's "became the primary" alert); None
    when it did not (a person's `jitaku failover`, a switchover)."""
    return _promotions.pop() if _promotions else None


async def watch(config: Config, alert: Alert, ended: Ended) -> None:
    """Watch the primary until this box promotes itself (then return: the daemon's watch of the cluster ends the
    services); cancelled with the services. Each step that may block runs in a thread, bounded. A step that fails
    is logged and the next one looks again: the watch never ends the services it watches for."""
    url, secret = peer.peer_url(config), _secret(config)
    if url is None or secret is None:
        log.event("ha_auto_off", reason="no peer or no replication secret")
        await alert(
            "automatic failover is on ([ha] auto_after) but this standby knows no peer to watch ([ha] peer, or a "
            "replication secret): it will not promote itself.",
            "自動フェイルオーバーが有効ですが、監視する相手([ha] peer またはレプリケーション秘密)がありません。"
            "自動では昇格しません。",
            Level.WARNING,
        )
        return
    known = Watch(monotonic())
    log.event("ha_auto_watch", peer=url, auto_after=config.settings.ha.auto_after)
    try:
        await _witness_at_start(config, known, alert)
        while True:
            await asyncio.sleep(AUTO_EVERY)
            try:
                if await _step(config, url, secret, known, alert, ended):
                    return
                known.error = ""
            except Exception as error:  # noqa: BLE001 - never ends the services it watches for; the next look may do
                text = f"{type(error).__name__}: {error}"[:300]
                if text != known.error:
                    known.error = text
                    log.event("ha_auto_failed", error=text)
    except asyncio.CancelledError:
        if ended() == "promoted":  # by a person, or a switchover: what this watch alerted is over
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_over_promoted(known, alert), OVER_TIMEOUT)
        raise


async def _step(config: Config, url: str, secret: str, known: Watch, alert: Alert, ended: Ended) -> bool:
    """One look at the primary; whether this box promoted itself."""
    settings = config.settings.ha
    if known.name is None:
        await _name(config, known, alert)
    await _witness_again(config, known, alert)
    answer = await _state(url, secret)
    if answer is not None:
        await _heard(known, answer, monotonic(), alert)
        return False
    await _look(config, url, known, alert)
    decision = decide(known, monotonic(), settings.auto_after, settings.sync_timeout)  # the time after the looks
    if decision.action is Action.HOLD:
        await _hold(known, decision.key, decision.words, decision.ja, alert)
    elif decision.action is Action.PROMOTE:
        return await _promote(config, known, decision, alert, ended)
    elif known.heard is None:
        _say(
            known,
            "ha_auto_unheard",
            "the primary has not answered since this daemon started: this box does not know whether it is its "
            "synchronous standby, and will not promote itself until it has answered once",
        )
    return False


async def _heard(known: Watch, answer: dict[str, Any] | peer.PeerError, now: float, alert: Alert) -> None:
    """The primary answered (ANSWER: its state, or its refusal): a box alive, whatever it said, and what the watch
    knew of its silence is over. A 5xx (its database restarting, or failing) leaves its last state answer as it
    was: when it dies now, that answer decides, and this sighting counts against sync_timeout. A refusal (403:
    another secret, clocks apart) is alerted."""
    known.answered = known.alive_at = now
    known.doors = known.knocked_at = known.doors_shut_at = None
    known.seen = known.asked_at = known.unseen_at = None
    known.failed = False
    if isinstance(answer, peer.PeerError) and (answer.status is None or answer.status < 500):
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
    if isinstance(answer, peer.PeerError):
        _say(known, "ha_auto_peer", f"the primary answers {answer.status}: its database cannot say how it stands")
    else:
        synchronous = answer.get("synchronous")
        primary = answer.get("role") == role.PRIMARY and not answer.get("fenced")
        known.heard = now
        known.synchronous = bool(
            primary and known.name is not None and isinstance(synchronous, list) and known.name in synchronous
        )
        words = (
            f"the primary answers: role {answer.get('role')}, fenced {bool(answer.get('fenced'))}, "
            f"this box synchronous {known.synchronous}"
        )
        _say(known, "ha_auto_peer", words)
        if known.name is None and now - known.started >= NAME_GRACE:
            await _warn(
                known,
                "name",
                "automatic failover cannot work: this standby cannot read its own name (its WAL receiver's "
                "slot_name in pg_stat_wal_receiver) while its primary answers, so it never knows whether it is the "
                "synchronous standby and will not promote itself; see `jitaku ha status` here.",
                "自動フェイルオーバーが機能しません。このスタンバイは自分の名前(pg_stat_wal_receiver の "
                "slot_name)を読めず、同期スタンバイかどうか分からないため自動では昇格しません。こちらで "
                "`jitaku ha status` を確認してください。",
                alert,
            )
    if known.held:
        known.held = set()
        await alert(
            "the primary answers this standby again: automatic failover watches it as before.",
            "プライマリが再びこのスタンバイに応答しています。自動フェイルオーバーの監視を続けます。",
            Level.OVER,
        )


async def _look(config: Config, url: str, known: Watch, alert: Alert) -> None:
    """Knock at the silent primary's doors and ask the witness, each when its time has come, both at once; a
    sighting is the last time it was alive, and a look that found it gone counts from when it began."""
    began = monotonic()
    knock = known.knocked_at is None or began - known.knocked_at >= KNOCK_EVERY
    again = KNOCK_EVERY if known.seen is not None and known.seen.seen is witness.Seen.UNKNOWN else WITNESS_EVERY
    ask = known.asked_at is None or began - known.asked_at >= again
    doors, seen = await asyncio.gather(
        _doors(config, url, known) if knock else _nothing(), _witness(config) if ask else _nothing()
    )
    done = monotonic()
    if knock:
        known.knocked_at, known.doors = began, doors
    if ask and seen is not None:
        known.asked_at, known.seen = began, seen
        if seen.seen is not witness.Seen.UNKNOWN:  # a warning of the start is over; the hold says it otherwise
            await _witness_said(known, seen, alert)
    if doors or (seen is not None and seen.seen is witness.Seen.ANSWERS):
        known.alive_at, known.doors_shut_at, known.unseen_at = done, None, None
        return
    after = known.alive_at is None or began >= known.alive_at
    if knock and doors == [] and known.doors_shut_at is None and after:
        known.doors_shut_at = began
    if seen is not None and seen.seen is witness.Seen.SILENT and known.unseen_at is None and after:
        known.unseen_at = began


async def _nothing() -> None:
    return None


async def _doors(config: Config, url: str, known: Watch) -> list[str] | None:
    """The primary's doors that take a connection; None when the knock could not be made in time."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(_answering_doors, config, url), LOOK_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - TimeoutError, or the OS's: not known, so not taken for shut
        _say(known, "ha_auto_knock_failed", f"{type(error).__name__}: {error}"[:300])
        return None


def _answering_doors(config: Config, url: str) -> list[str]:
    """The old primary's doors that take a connection (jitaku.ha.alive), in words."""
    try:
        database = failover.primary_database(config)
    except Exception:  # noqa: BLE001 - our own cluster cannot say: its SMTP is knocked at still
        database = None
    return [str(door) for door in alive.answering(alive.doors(config, url, database))]


async def _witness(config: Config) -> witness.Answer:
    """The witness's answer, bounded; UNKNOWN when it cannot be had."""
    try:
        return await asyncio.wait_for(witness.ask(config), WITNESS_TIMEOUT)
    except TimeoutError:
        return witness.Answer(witness.Seen.UNKNOWN, f"the witness did not answer within {WITNESS_TIMEOUT:.0f} s")
    except Exception as error:  # noqa: BLE001 - a witness URL without a host, say: nobody can ask it
        return witness.Answer(witness.Seen.UNKNOWN, f"cannot ask the witness: {type(error).__name__}: {error}"[:300])


async def _witness_at_start(config: Config, known: Watch, alert: Alert) -> None:
    """Ask the witness once as the watch starts: one that cannot answer would keep this box from promoting itself
    when it matters, so it is said now (a warning), and asked again until it answers."""
    known.witness_at = monotonic()
    await _witness_said(known, await _witness(config), alert)


async def _witness_again(config: Config, known: Watch, alert: Alert) -> None:
    if "witness" in known.warned and (known.witness_at is None or monotonic() - known.witness_at >= WITNESS_RETRY):
        await _witness_at_start(config, known, alert)


async def _witness_said(known: Watch, seen: witness.Answer, alert: Alert) -> None:
    if seen.seen is witness.Seen.UNKNOWN:
        await _warn(
            known,
            "witness",
            f"automatic failover cannot work: {seen.words}. If the primary died now, this standby would not "
            "promote itself; fix the witness ([ha] witness, witness_token, witness_targets).",
            f"自動フェイルオーバーが機能しません: {seen.words}。いまプライマリが停止しても自動では昇格しません。"
            "監視役の設定([ha] witness、witness_token、witness_targets)を確認してください。",
            alert,
        )
    elif "witness" in known.warned:
        known.warned.discard("witness")
        await alert(
            f"the witness answers again ({seen.words}): automatic failover can work.",
            f"監視役が再び応答しています({seen.words})。自動フェイルオーバーが機能します。",
            Level.OVER,
        )


async def _name(config: Config, known: Watch, alert: Alert) -> None:
    """This standby's name, once its WAL receiver says it."""
    try:
        known.name = await asyncio.wait_for(asyncio.to_thread(own_name, config), LOOK_TIMEOUT)
    except Exception as error:  # noqa: BLE001 - psycopg's, the OS's, TimeoutError: looked up again next step
        _say(known, "ha_auto_no_name", f"cannot read this standby's own name: {type(error).__name__}: {error}"[:300])
        return
    if known.name is None:
        return
    log.event("ha_auto_name", application_name=known.name)
    if "name" in known.warned:
        known.warned.discard("name")
        await alert(
            f"this standby reads its own name ({known.name}) again: automatic failover can work.",
            f"このスタンバイは自分の名前({known.name})を読めるようになりました。自動フェイルオーバーが機能します。",
            Level.OVER,
        )


def own_name(config: Config) -> str | None:
    """This standby's name as its primary's answers say it: its WAL receiver's slot_name (jitaku.ha.sync counts a
    standby whose application_name is its slot's, as `jitaku standby setup` makes it); None while it does not
    stream."""
    with role.connect(config) as connection:
        connection.execute(f"SET statement_timeout = {int(LOOK_TIMEOUT * 1000)}")
        row = connection.execute(_RECEIVER).fetchone()
    return str(row[1]) if row is not None and row[0] and row[1] else None


async def _hold(known: Watch, key: str, words: str, ja: str, alert: Alert) -> None:
    """Hold back, alerting WORDS once for each reason KEY until the primary answers (a witness that flaps between
    two answers is alerted twice, not at each flap)."""
    if key in known.held:
        return
    known.held.add(key)
    log.event("ha_auto_hold", reason=key, words=words)
    await alert(words, ja, Level.CRITICAL)


async def _warn(known: Watch, key: str, words: str, ja: str, alert: Alert) -> None:
    """Warn WORDS once, until what KEY names is over."""
    if key in known.warned:
        return
    known.warned.add(key)
    log.event("ha_auto_warning", reason=key, words=words)
    await alert(words, ja, Level.WARNING)


async def _promote(config: Config, known: Watch, decision: Decision, alert: Alert, ended: Ended) -> bool:
    """Promote this box (not while the services end); whether it is the primary now."""
    if ended() is not None:
        return False
    why = (decision.words, decision.ja)

    def promoting() -> None:
        _promotions[:] = [why]

    try:
        promoted = await asyncio.to_thread(
            failover.promote_automatically, config, decision.words, lambda: ended() is not None, promoting
        )
    except failover.Answered as answered:  # alive after all: watched as before
        log.event("ha_auto_answered", words=str(answered))
        await _heard(known, answered.answer, monotonic(), alert)
        return False
    except Exception as error:  # noqa: BLE001 - FailoverError, or the cluster's: a person decides, told why
        known.failed = True
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        known.held.add("failed")
        log.event("ha_auto_hold", reason="failed", words=reason)
        await alert(
            f"this standby tried to promote itself ({decision.words}) and did not: {reason}. It will not try again "
            "until the primary has answered; run `jitaku failover` here to promote it.",
            f"このスタンバイは自動昇格を試みましたが、できませんでした: {reason}。"
            "プライマリが応答するまで再試行しません。昇格させるにはこちらで `jitaku failover` を実行してください。",
            Level.CRITICAL,
        )
        return False
    log.event("ha_auto_promoted", by_this_watch=promoted)
    await _over_promoted(known, alert)
    return True


async def _over_promoted(known: Watch, alert: Alert) -> None:
    """The watch ends with this box the primary: what it alerted is over."""
    if not known.held and not known.warned:
        return
    known.held, known.warned = set(), set()
    await alert(
        "this standby became the primary: automatic failover's watch of the old primary is over.",
        "このスタンバイはプライマリになりました。旧プライマリの自動フェイルオーバー監視は終了です。",
        Level.OVER,
    )


async def _state(url: str, secret: str) -> dict[str, Any] | peer.PeerError | None:
    """The primary's state; its refusal; None when it is silent (or slower than STATE_TIMEOUT)."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(peer.state, url, secret, STATE_TIMEOUT), STATE_TIMEOUT + 2)
    except peer.PeerError as error:
        return error
    except TimeoutError:
        return None


def _secret(config: Config) -> str | None:
    try:
        return standby.read_secret(standby.secret_path(config))
    except standby.StandbyError:
        return None


def _say(known: Watch, name: str, words: str) -> None:
    """Log WORDS (which hold no count of seconds) as event NAME once, until NAME says something else."""
    if known.said.get(name) != words:
        known.said[name] = words
        log.event(name, words=words)
