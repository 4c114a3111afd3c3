"""Automatic failover's choice (jitaku.ha.auto.decide), and its watch of the primary driven step by step with the
primary's answers, its doors and the witness stood in for: it promotes only a standby that was synchronous, whose
primary is silent at every door and unseen by the witness. The whole on a managed pair:
tests/integration/test_failover.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from jitaku.config import Config, parse
from jitaku.ha import auto, failover, peer, witness
from jitaku.ha.auto import Action, decide
from jitaku.ha.witness import Answer, Seen

SILENT = Answer(Seen.SILENT, "the witness w.example reaches none of 203.0.113.5:25")
ANSWERS = Answer(Seen.ANSWERS, "the witness w.example reaches 203.0.113.5:25")
UNKNOWN = Answer(Seen.UNKNOWN, "cannot ask the witness w.example: ConnectError")


def test_a_primary_silent_at_every_door_and_unseen_by_the_witness_is_promoted_over_only_when_synchronous() -> None:
    assert decide(120, 60, True, [], SILENT).action is Action.PROMOTE
    held = decide(120, 60, False, [], SILENT)
    assert held.action is Action.HOLD and "asynchronous when contact was lost" in held.words
    assert "`jitaku failover`" in held.words and "非同期" in held.ja


def test_the_watch_knocks_then_asks_the_witness_only_after_auto_after_seconds_of_silence() -> None:
    assert decide(59, 60, True, None, None).action is Action.WATCH
    assert decide(60, 60, True, None, None).action is Action.KNOCK
    assert decide(60, 60, True, [], None).action is Action.ASK
    alive = decide(60, 60, True, ["its PostgreSQL at 192.168.1.10:5433"], None)
    assert alive.action is Action.ALIVE and "192.168.1.10:5433 takes connections" in alive.words


def test_a_witness_that_reaches_the_primary_or_cannot_tell_holds_back_whatever_the_replication() -> None:
    cut = decide(600, 60, True, [], ANSWERS)
    assert cut.action is Action.HOLD and "a cut between the boxes, not a dead primary" in cut.words
    assert "reaches 203.0.113.5:25" in cut.words and cut.ja
    unknown = decide(600, 60, True, [], UNKNOWN)
    assert unknown.action is Action.HOLD and "a person must decide" in unknown.words and unknown.ja
    assert len({cut.key, unknown.key, decide(600, 60, False, [], SILENT).key}) == 3  # each alerted once


def test_a_standby_that_never_heard_from_its_primary_never_promotes() -> None:
    never = decide(None, 60, True, [], SILENT)
    assert never.action is Action.WATCH and "not promote itself" in never.words


@pytest.fixture
def config(tmp_path: Path) -> Config:
    text = (
        'domains = ["example.org"]\n[ha]\npeer = "http://192.168.1.10:8080"\nauto_after = 4\nsync_timeout = 10\n'
        'witness = "https://w.example"\nwitness_token = "0123456789abcdef"\nwitness_targets = ["203.0.113.5:25"]\n'
    )
    return Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)


class Primary:
    """What the watch is told, step by step: the primary's answers (a state, a PeerError, None: silent), its
    doors, the witness; and what it did: alerts, promotions."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answer: dict[str, Any] | peer.PeerError | None = None
        self.doors: list[str] = []
        self.seen = SILENT
        self.asked = 0
        self.alerts: list[tuple[str, bool]] = []
        self.promoted: list[str] = []
        self.now = 1000.0
        monkeypatch.setattr(peer, "state", self._state)
        monkeypatch.setattr(auto, "_answering_doors", lambda config, url: list(self.doors))
        monkeypatch.setattr(witness, "ask", self._ask)
        monkeypatch.setattr(failover, "promote_automatically", lambda config, why: self.promoted.append(why))
        monkeypatch.setattr(auto, "monotonic", lambda: self.now)

    def _state(self, url: str, secret: str, timeout: float) -> dict[str, Any] | None:
        if isinstance(self.answer, peer.PeerError):
            raise self.answer
        return self.answer

    async def _ask(self, config: Config) -> Answer:
        self.asked += 1
        return self.seen

    async def alert(self, sentence: str, ja: str, over: bool) -> None:
        assert ja
        self.alerts.append((sentence, over))

    def step(self, config: Config, known: auto._Watch, seconds: float = 2.0) -> bool:
        self.now += seconds
        return asyncio.run(auto._step(config, "http://192.168.1.10:8080", "s", "two", known, self.alert))


def synchronous(*names: str, **more: Any) -> dict[str, Any]:
    return {"role": "primary", "fenced": False, "synchronous": list(names), **more}


def test_the_watch_promotes_once_the_synchronous_primary_is_silent_and_unseen(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, known = Primary(monkeypatch), auto._Watch()
    primary.answer = synchronous("two")
    assert not primary.step(config, known)
    primary.answer = None
    assert not primary.step(config, known, 3)  # silent for 3 s of 4
    primary.doors = ["its SMTP at 192.168.1.10:25"]
    assert not primary.step(config, known, 2) and primary.asked == 0  # a door answers: not dead
    primary.doors = []
    assert primary.step(config, known, 2)
    assert primary.promoted and "synchronous standby when contact was lost" in primary.promoted[0]
    assert auto.promotion() is not None and auto.promotion() is None  # said once, by the new primary's alert


def test_the_watch_holds_back_for_an_asynchronous_standby_a_fenced_box_a_refusal_or_a_witness_that_sees_it(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary, known = Primary(monkeypatch), auto._Watch()
    for answer in (synchronous("one"), synchronous("two", fenced=True), {"role": "standby", "fenced": False}):
        primary.answer = answer
        primary.step(config, known)
        primary.answer = None
        assert not primary.step(config, known, 5) and not primary.promoted
        assert "asynchronous when contact was lost" in primary.alerts[-1][0]
        primary.answer = synchronous("two")
        primary.step(config, known)
        assert primary.alerts[-1][1]  # it answers again: the alert is over
    primary.answer = peer.PeerError("403")
    for _ in range(3):
        primary.step(config, known, 60)  # a refusal is a box alive however long it lasts, alerted once
    assert [over for _, over in primary.alerts[-1:]] == [False] and "refuses this standby" in primary.alerts[-1][0]
    assert len([a for a, _ in primary.alerts if "refuses" in a]) == 1 and not primary.promoted

    primary.answer = synchronous("two")
    primary.step(config, known)
    alerts = len(primary.alerts)
    primary.answer = peer.PeerError("503", 503)  # its database restarting: alive, not known to wait for this box
    primary.step(config, known)
    assert len(primary.alerts) == alerts  # not alerted: a refusal is, not a box whose database restarts
    primary.answer = None
    assert not primary.step(config, known, 5) and "asynchronous when contact was lost" in primary.alerts[-1][0]

    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer, primary.seen = None, ANSWERS
    assert not primary.step(config, known, 5) and "a cut between the boxes" in primary.alerts[-1][0]
    primary.seen = SILENT  # the primary lived on, seen by the witness, longer than sync_timeout after its last
    primary.step(config, known, 20)  # answer: it went asynchronous meanwhile, and may have acknowledged writes
    assert not primary.promoted and "asynchronous when contact was lost" in primary.alerts[-1][0]


def test_a_failed_promotion_is_alerted_and_the_watch_goes_on(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    primary, known = Primary(monkeypatch), auto._Watch()

    def refused(config: Config, why: str) -> str:
        raise failover.FailoverError("the old primary at http://192.168.1.10:8080 is up and refused to be fenced")

    monkeypatch.setattr(failover, "promote_automatically", refused)
    monkeypatch.setattr(auto, "WITNESS_EVERY", 0.01)  # the pause before the next try
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer = None
    assert not primary.step(config, known, 5)
    assert "did not: the old primary at http://192.168.1.10:8080 is up" in primary.alerts[-1][0]
    assert auto.promotion() is None
