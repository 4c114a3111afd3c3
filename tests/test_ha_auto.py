"""Automatic failover's watch of the primary (jitaku.ha.auto), driven step by step with the primary's answers, its
doors, the witness and this box's own name stood in for: it promotes only a standby that was synchronous, whose
primary is silent at every door, unseen by the witness, and seen gone before it could have turned asynchronous.
The whole on a managed pair: tests/integration/test_failover.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from jitaku.config import Config, parse
from jitaku.ha import auto, failover, peer, role, witness
from jitaku.ha.auto import Level
from jitaku.ha.witness import Answer, Seen

SILENT = Answer(Seen.SILENT, "the witness w.example reaches none of 203.0.113.5:25")
ANSWERS = Answer(Seen.ANSWERS, "the witness w.example reaches 203.0.113.5:25")
UNKNOWN = Answer(Seen.UNKNOWN, "cannot ask the witness w.example: ConnectError")
URL = "http://192.168.1.10:8080"


def config_of(tmp_path: Path, auto_after: float = 4, sync_timeout: float = 10) -> Config:
    text = (
        f'domains = ["example.org"]\n[ha]\npeer = "{URL}"\nauto_after = {auto_after}\nsync_timeout = {sync_timeout}\n'
        'witness = "https://w.example"\nwitness_token = "0123456789abcdef"\nwitness_targets = ["203.0.113.5:25"]\n'
    )
    return Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return config_of(tmp_path)


@pytest.fixture(autouse=True)
def unsaid() -> None:
    """Each test starts with no promotion noted (the new primary's alert would say it)."""
    auto._promotions.clear()


class Primary:
    """What the watch is told, step by step: the primary's answers (a state, a PeerError, None: silent), its
    doors, the witness, this box's name; and what it did: alerts, promotions."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answer: dict[str, Any] | peer.PeerError | None = None
        self.doors: list[str] = []
        self.seen = SILENT
        self.asked = 0
        self.name: str | None = "two"
        self.alerts: list[tuple[str, Level]] = []
        self.promoted: list[str] = []
        self.now = 1000.0
        self.ended: str | None = None
        monkeypatch.setattr(peer, "state", self._state)
        monkeypatch.setattr(auto, "_answering_doors", lambda config, url: list(self.doors))
        monkeypatch.setattr(auto, "own_name", lambda config: self.name)
        monkeypatch.setattr(witness, "ask", self._ask)
        monkeypatch.setattr(failover, "promote_automatically", self._promote)
        monkeypatch.setattr(auto, "monotonic", lambda: self.now)

    def _state(self, url: str, secret: str, timeout: float) -> dict[str, Any] | None:
        if isinstance(self.answer, peer.PeerError):
            raise self.answer
        return self.answer

    async def _ask(self, config: Config) -> Answer:
        self.asked += 1
        return self.seen

    def _promote(self, config: Config, why: str, stopping: Any, promoting: Any) -> bool:
        promoting()
        self.promoted.append(why)
        return True

    async def alert(self, sentence: str, ja: str, level: Level) -> None:
        assert ja
        self.alerts.append((sentence, level))

    def step(self, config: Config, known: auto.Watch, seconds: float = 2.0) -> bool:
        self.now += seconds
        return asyncio.run(auto._step(config, URL, "s", known, self.alert, lambda: self.ended))

    def watch(self) -> auto.Watch:
        return auto.Watch(self.now)

    def last(self) -> str:
        return self.alerts[-1][0]


def synchronous(*names: str, **more: Any) -> dict[str, Any]:
    return {"role": "primary", "fenced": False, "synchronous": list(names), **more}


def test_the_watch_promotes_once_the_synchronous_primary_is_silent_at_every_door_and_unseen(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = Primary(monkeypatch)
    known = primary.watch()
    primary.answer = synchronous("two")
    assert not primary.step(config, known)
    primary.answer = None
    assert not primary.step(config, known, 3)  # silent for 3 s of 4: the doors and the witness looked at already
    assert primary.asked == 1 and not primary.promoted
    assert primary.step(config, known, 2)
    assert primary.promoted and "synchronous standby when contact was lost" in primary.promoted[0]
    assert auto.promotion() is not None and auto.promotion() is None  # said once, by the new primary's alert
    assert not primary.alerts  # nothing was held back, nothing to say is over


def test_a_door_that_answers_or_a_witness_that_sees_the_primary_holds_back_alerting_each_reason_once(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = Primary(monkeypatch)
    known = primary.watch()
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer, primary.doors = None, ["its SMTP at 192.168.1.10:25"]
    for _ in range(10):  # a hung web, its SMTP open
        assert not primary.step(config, known, 5)
    assert [level for _, level in primary.alerts] == [Level.CRITICAL]
    assert "192.168.1.10:25 takes connections: it is not dead" in primary.last()
    primary.doors = []
    for seen in (ANSWERS, UNKNOWN) * 4:  # a witness that flaps: each reason alerted once
        primary.seen = seen
        primary.step(config, known, 10)
    assert len(primary.alerts) == 3 and not primary.promoted
    assert any("a cut between the boxes" in sentence for sentence, _ in primary.alerts)
    assert "the witness cannot tell whether it serves" in primary.last()
    primary.answer = synchronous("two")
    primary.step(config, known)
    assert primary.alerts[-1][1] is Level.OVER  # it answers again: the alert is over


def test_the_watch_holds_back_for_an_asynchronous_standby_a_fenced_box_or_a_refusal(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = Primary(monkeypatch)
    known = primary.watch()
    for answer in (synchronous("one"), synchronous("two", fenced=True), {"role": "standby", "fenced": False}):
        primary.answer = answer
        primary.step(config, known)
        primary.answer = None
        primary.step(config, known, 1)
        assert not primary.step(config, known, 5) and not primary.promoted
        assert "replication was not synchronous when contact was lost" in primary.last()
        primary.answer = synchronous("two")
        primary.step(config, known)
        assert primary.alerts[-1][1] is Level.OVER
    primary.answer = peer.PeerError("403")
    for _ in range(3):
        primary.step(config, known, 60)  # a refusal is a box alive however long it lasts, alerted once
    assert primary.alerts[-1][1] is Level.CRITICAL and "refuses this standby" in primary.last()
    assert len([a for a, _ in primary.alerts if "refuses" in a]) == 1 and not primary.promoted


def test_a_primary_seen_alive_past_sync_timeout_is_not_promoted_over_however_long_auto_after_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_of(tmp_path, auto_after=60, sync_timeout=10)
    primary = Primary(monkeypatch)
    known = primary.watch()
    primary.answer = synchronous("two")
    primary.step(config, known)
    # the link between the boxes breaks: the primary turns asynchronous 10 s later and takes mail, then dies at 30 s
    primary.answer, primary.seen = None, ANSWERS
    for _ in range(15):
        primary.step(config, known)
    primary.seen = SILENT
    for _ in range(30):
        assert not primary.step(config, known)
    assert not primary.promoted and primary.now - 1002 > 60
    assert "it may have turned asynchronous meanwhile" in primary.last() and "`jitaku failover`" in primary.last()


def test_a_primary_seen_gone_within_sync_timeout_is_promoted_over_after_a_longer_auto_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = config_of(tmp_path, auto_after=60, sync_timeout=10)
    primary = Primary(monkeypatch)
    known = primary.watch()
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer = None  # it dies: nothing of it answers from the first missed answer on
    steps = 0
    while not primary.step(config, known):
        steps += 1
        assert steps < 40
    assert primary.promoted and primary.now - 1002 >= 60


def test_a_primary_that_answers_5xx_before_it_dies_is_promoted_over_unless_it_lived_past_sync_timeout(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = Primary(monkeypatch)
    known = primary.watch()
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer = peer.PeerError("503", 503)  # its database failing: alive, its last 200 still counts
    primary.step(config, known)
    primary.answer = None
    primary.step(config, known)
    assert primary.step(config, known, 4) and primary.promoted
    assert not [alert for alert in primary.alerts if alert[1] is not Level.OVER]

    primary.promoted.clear()
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer = peer.PeerError("503", 503)
    for _ in range(10):  # it answers 503 for 20 s: it may have turned asynchronous meanwhile
        primary.step(config, known)
    primary.answer = None
    for _ in range(5):
        assert not primary.step(config, known)
    assert not primary.promoted and "it may have turned asynchronous meanwhile" in primary.last()


def test_a_primary_that_answers_again_during_the_promotion_is_not_failed_over(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = Primary(monkeypatch)
    state = synchronous("two")

    def answered(config: Config, why: str, stopping: Any, promoting: Any) -> bool:
        raise failover.Answered(f"the old primary at {URL} answered again: not promoted", state)

    monkeypatch.setattr(failover, "promote_automatically", answered)
    known = primary.watch()
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer = None
    primary.step(config, known)
    assert not primary.step(config, known, 3)
    assert known.answered == primary.now and known.seen is None  # heard again: its silence starts anew
    assert auto.promotion() is None and not primary.alerts


def test_the_promotion_asks_the_old_primary_once_more_and_any_answer_stops_it_before_the_fence(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    done: list[str] = []
    monkeypatch.setattr(role, "current", lambda config: role.STANDBY)
    monkeypatch.setattr(failover, "_check", lambda config: "s")
    monkeypatch.setattr(peer, "fence_answer", lambda *args: done.append("fenced"))
    monkeypatch.setattr(failover, "_promote", lambda *args: done.append("promoted"))
    for answer in (synchronous("two"), peer.PeerError("503", 503), {"role": "standby", "fenced": False}):

        def state(url: str, secret: str, timeout: float, answer: Any = answer) -> dict[str, Any]:
            if isinstance(answer, peer.PeerError):
                raise answer
            return dict(answer)

        monkeypatch.setattr(peer, "state", state)
        with pytest.raises(failover.Answered, match="answered again") as raised:
            failover.promote_automatically(config, "why", lambda: False, lambda: done.append("noted"))
        assert raised.value.answer == answer or raised.value.answer is answer
    assert done == []


def test_the_note_that_it_was_automatic_is_set_only_when_this_watch_ran_the_promotion(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = Primary(monkeypatch)
    monkeypatch.setattr(failover, "promote_automatically", lambda config, why, stopping, promoting: False)
    known = primary.watch()
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer = None
    primary.step(config, known)
    assert primary.step(config, known, 3)  # a person's `jitaku failover` promoted it first
    assert auto.promotion() is None

    primary = Primary(monkeypatch)  # the daemon told to stop (SIGTERM): no promotion begins
    known = primary.watch()
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer, primary.ended = None, "stopped"
    primary.step(config, known)
    assert not primary.step(config, known, 3) and not primary.promoted


def test_a_failed_promotion_is_alerted_once_and_not_tried_again_until_the_primary_answers(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = Primary(monkeypatch)
    tries: list[str] = []

    def refused(config: Config, why: str, stopping: Any, promoting: Any) -> bool:
        tries.append(why)
        raise failover.FailoverError(f"the old primary at {URL} is up and refused to be fenced: try {len(tries)}")

    monkeypatch.setattr(failover, "promote_automatically", refused)
    known = primary.watch()
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer = None
    for _ in range(10):
        assert not primary.step(config, known, 3)
    assert len(tries) == 1 and len(primary.alerts) == 1
    assert "did not: the old primary at http://192.168.1.10:8080 is up" in primary.last()
    assert "will not try again until the primary has answered" in primary.last()
    primary.answer = synchronous("two")
    primary.step(config, known)
    primary.answer = None
    primary.step(config, known)
    primary.step(config, known, 3)
    assert len(tries) == 2 and "try 2" in primary.last() and auto.promotion() is None


def test_this_standby_knows_its_name_from_its_wal_receiver_and_without_it_never_counts_as_synchronous(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Receiver:
        def __init__(self, row: tuple[object, ...]) -> None:
            self.row, self.said = row, []

        def __enter__(self) -> Receiver:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

        def execute(self, query: str) -> Receiver:
            self.said.append(query)
            return self

        def fetchone(self) -> tuple[object, ...]:
            return self.row

    monkeypatch.setattr(role, "connect", lambda config: Receiver((True, "two_lan")))
    assert auto.own_name(config) == "two_lan"
    monkeypatch.setattr(role, "connect", lambda config: Receiver((True, None)))  # not streaming: not known yet
    assert auto.own_name(config) is None

    primary = Primary(monkeypatch)
    primary.name = None
    known = primary.watch()
    primary.answer = synchronous("two")
    primary.step(config, known)
    assert not known.synchronous  # whatever the primary says, not known to be this box
    primary.step(config, known, auto.NAME_GRACE)
    assert primary.alerts[-1][1] is Level.WARNING and "cannot read its own name" in primary.last()
    primary.name = "two"
    primary.step(config, known)
    assert known.synchronous and primary.alerts[-1][1] is Level.OVER


def test_a_witness_that_cannot_answer_is_warned_of_when_the_watch_starts_and_until_it_answers(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = Primary(monkeypatch)
    primary.seen = UNKNOWN
    known = primary.watch()
    asyncio.run(auto._witness_at_start(config, known, primary.alert))
    assert primary.alerts == [(primary.last(), Level.WARNING)] and "cannot ask the witness w.example" in primary.last()
    primary.answer = synchronous("two")
    primary.step(config, known)
    assert len(primary.alerts) == 1  # asked again only every WITNESS_RETRY seconds, warned once
    primary.seen = SILENT
    primary.step(config, known, auto.WITNESS_RETRY)
    assert primary.alerts[-1][1] is Level.OVER and "the witness answers again" in primary.last()


def test_the_watch_outlives_its_failures_and_logs_each_once(
    config: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from jitaku.ha import standby

    def broken(url: str, secret: str, timeout: float) -> None:
        raise RuntimeError("the web client broke")

    def nameless(config: Config) -> None:
        raise standby.StandbyError("cannot make a replication slot name")

    monkeypatch.setattr(auto, "_secret", lambda config: "s")
    monkeypatch.setattr(auto, "AUTO_EVERY", 0.01)
    monkeypatch.setattr(auto, "own_name", nameless)
    monkeypatch.setattr(peer, "state", broken)
    monkeypatch.setattr(witness, "ask", lambda config: asyncio.sleep(0, SILENT))
    # no knock at URL's LAN address from a unit test: each took its 2 s timeouts in a thread that asyncio.run's
    # end waits for, and a loaded run once held the worker past the test's timeout
    monkeypatch.setattr(auto, "_answering_doors", lambda config, url: [])
    alerts: list[Level] = []

    async def alert(sentence: str, ja: str, level: Level) -> None:
        alerts.append(level)

    async def run() -> bool:
        task = asyncio.create_task(auto.watch(config, alert, lambda: None))
        await asyncio.sleep(0.3)
        running = not task.done()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return running

    with caplog.at_level(logging.INFO):
        assert asyncio.run(run())
    assert caplog.text.count("event=ha_auto_failed") == 1 and "the web client broke" in caplog.text
    assert caplog.text.count("cannot make a replication slot name") == 1 and alerts == []


def test_what_the_watch_alerted_is_over_when_the_services_end_with_the_box_promoted_by_anyone(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    primary = Primary(monkeypatch)
    primary.seen = UNKNOWN  # warned of as the watch starts
    monkeypatch.setattr(auto, "_secret", lambda config: "s")
    monkeypatch.setattr(auto, "AUTO_EVERY", 0.01)

    async def run(outcome: str) -> None:
        primary.alerts.clear()
        primary.ended = None
        task = asyncio.create_task(auto.watch(config, primary.alert, lambda: primary.ended))
        while len(primary.alerts) < 1:
            await asyncio.sleep(0.01)
        primary.ended = outcome
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(run("promoted"))  # a person's `jitaku failover`, while the primary never answered
    assert primary.alerts[0][1] is Level.WARNING and primary.alerts[-1][1] is Level.OVER
    assert "this standby became the primary" in primary.last()
    asyncio.run(run("stopped"))  # SIGTERM: nothing is over
    assert [level for _, level in primary.alerts] == [Level.WARNING]
