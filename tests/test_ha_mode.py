"""Which mode the daemon serves in (jitaku.ha.mode), and the main process's loop over its services' outcomes
(jitaku.app.run): each outcome but "stopped" makes it decide again and serve again, in the same process."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from jitaku import app, services
from jitaku.config import Config, parse
from jitaku.ha import fence, mode
from jitaku.ha.address import AddressError
from jitaku.health.result import State


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return Config(parse('domains = ["example.org"]\n', tmp_path / "jitaku.toml"), tmp_path)


@pytest.fixture(autouse=True)
def _no_wait_began(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's daemon a process of its own: no cold-start wait began before it."""
    monkeypatch.setattr(mode, "_began", [])


def test_a_box_alone_without_a_fence_is_the_primary(config: Config) -> None:
    assert mode.decide(config, starting=True) == "primary"
    assert mode.newer_primary(config) is None  # no pair: nobody to ask


def test_a_fence_file_makes_the_box_fenced_whatever_its_database(config: Config) -> None:
    fence.write(config, fence.Fence("failover", "http://192.0.2.2:8080", 1.0))
    assert mode.decide(config, starting=True) == "fenced"
    (config.data_dir / "ha" / "fenced").write_text("not json")
    assert mode.decide(config, starting=True) == "fenced"  # fail safe
    fence.clear(config)
    assert mode.decide(config, starting=True) == "primary"


def test_the_main_process_serves_again_after_each_change_of_part(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes = iter(["standby", "primary", "fenced"])
    outcomes = iter(["promoted", "fenced", "stopped"])
    served: list[tuple[str, Any]] = []

    async def serve(_config: Config, serving: str, *_args: Any, after: Any = None, **_kwargs: Any) -> str:
        served.append((serving, after))
        return next(outcomes)

    monkeypatch.setattr(mode, "decide", lambda _config, **_: next(modes))
    monkeypatch.setattr(services, "serve", serve)
    app.run(config, app.Sockets([], [], []))
    assert served == [("standby", None), ("primary", "promoted"), ("fenced", "fenced")]
    assert not (config.data_dir / "ports.json").exists()  # forgotten once it stopped, as before


def test_ports_are_recorded_once_for_every_run_of_the_services(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded: list[str] = []
    outcomes = iter(["promoted", "stopped"])

    async def serve(*_args: Any, **_kwargs: Any) -> str:
        recorded.append(json.loads((config.data_dir / "ports.json").read_text())["web"])
        return next(outcomes)

    monkeypatch.setattr(mode, "decide", lambda _config, **_: "primary")
    monkeypatch.setattr(services, "serve", serve)
    app.run(config, app.Sockets([], [], []))
    assert recorded == [[], []]


def test_sigterm_while_the_mode_is_decided_ends_the_daemon_before_any_service_starts(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []

    def decide(_config: Config, **_: Any) -> str:
        os.kill(os.getpid(), signal.SIGTERM)  # as `systemctl stop` during the peer's 3 s
        return "primary"

    async def serve(*_args: Any, **_kwargs: Any) -> str:
        served.append("served")
        return "stopped"

    monkeypatch.setattr(mode, "decide", decide)
    monkeypatch.setattr(services, "serve", serve)
    app.run(config, app.Sockets([], [], []))
    assert served == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # given back


def test_sigterm_while_the_part_changes_ends_the_daemon_rather_than_serve_again(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[str] = []

    async def serve(_config: Config, serving: str, *_args: Any, **_kwargs: Any) -> str:
        served.append(serving)
        os.kill(os.getpid(), signal.SIGTERM)  # no event loop handler here: app.run's notes it
        return "promoted"

    monkeypatch.setattr(mode, "decide", lambda _config, **_: "standby")
    monkeypatch.setattr(services, "serve", serve)
    app.run(config, app.Sockets([], [], []))
    assert served == ["standby"]


def test_sigterm_after_a_promotion_or_a_fence_wins_over_it() -> None:
    async def ended() -> str:
        ending = services._Ending()
        ending.end("promoted")
        ending.terminate()
        ending.end("fenced")
        return ending.outcome

    assert asyncio.run(ended()) == "stopped"


def test_sigterm_before_the_services_handler_is_noted_stops_them(config: Config) -> None:
    outcome = asyncio.run(asyncio.wait_for(services.serve(config, "primary", [], [], terminated=lambda: True), 60))
    assert outcome == "stopped"


def test_a_worker_is_forked_with_sigterm_blocked_until_its_own_handlers_are_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = 'domains = ["example.org"]\n[smtp]\nworkers = 2\n'
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    seen = tmp_path / "mask"

    def worker(*_args: Any) -> int:
        seen.write_text(str(signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])))
        return 0

    monkeypatch.setattr(app, "_worker", worker)
    [pid] = app._fork_workers(config, app.Sockets([], [], []), "primary")
    os.waitpid(pid, 0)
    assert seen.read_text() == "True"
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the main process's, unblocked


class Address:
    """A floating address that records what it was asked, and may refuse to be taken."""

    def __init__(self, refuse: str | None = None) -> None:
        self.asked: list[str] = []
        self._refuse = refuse

    def take(self) -> None:
        self.asked.append("take")
        if self._refuse is not None:
            raise AddressError(self._refuse)

    def release(self) -> None:
        self.asked.append("release")

    def __str__(self) -> str:
        return "192.0.2.10/24 on eth0"


def test_a_primary_takes_the_address_and_a_standby_or_fenced_box_lets_it_go() -> None:
    notices: list[Any] = []
    taken, let_go = Address(), Address()
    asyncio.run(services._hold_address(taken, True, notices))  # type: ignore[arg-type]
    asyncio.run(services._hold_address(let_go, False, notices))  # type: ignore[arg-type]
    assert (taken.asked, let_go.asked, notices) == (["take"], ["release"], [])


def test_a_primary_that_cannot_take_the_address_serves_and_alerts() -> None:
    notices: list[Any] = []
    address = Address(refuse="another box answers for 192.0.2.10 (52:54:00:12:34:56)")
    asyncio.run(services._hold_address(address, True, notices))  # type: ignore[arg-type]
    [(state, sentence, _ja)] = notices
    assert state == State.CRITICAL
    assert sentence.startswith("this primary could not take the floating address 192.0.2.10/24 on eth0: another box")


class Announced:
    """A health monitor that records what it was asked to announce."""

    def __init__(self) -> None:
        self.said: list[tuple[str, State, str]] = []

    async def announce(self, check: str, state: State, sentence: str, _ja: str = "") -> None:
        self.said.append((check, state, sentence))


def test_a_primary_that_finds_a_newer_primary_while_it_serves_fences_itself(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = iter(
        [
            mode.Seen(refused="403 clocks apart"),
            mode.Seen(refused="403 clocks apart"),
            mode.Seen(),  # unreachable, or a 5xx: not known whether it still refuses
            mode.Seen(answered=True),
            mode.Seen(answered=True),
            mode.Seen(refused="another secret"),
            mode.Seen(newer="http://192.0.2.2:8080"),
        ]
    )
    monkeypatch.setattr(mode, "PEER_EVERY", 0.01)
    monkeypatch.setattr(mode, "look", lambda _config: next(seen))
    monitor = Announced()

    async def watched() -> str:
        ending = services._Ending()
        await asyncio.wait_for(services._watch_peer(config, ending, monitor), 30)  # type: ignore[arg-type]
        return ending.outcome

    assert asyncio.run(watched()) == "fenced"
    found = fence.read(config)
    assert found is not None and (found.purpose, found.by) == ("split-brain", "http://192.0.2.2:8080")
    said = [(state, sentence) for _check, state, sentence in monitor.said]
    assert [state for state, _sentence in said] == [State.CRITICAL, State.OK, State.CRITICAL]  # each change, once
    assert "403 clocks apart" in said[0][1] and "answers it again" in said[1][1] and "another secret" in said[2][1]


def test_a_peer_that_refuses_us_while_another_box_holds_the_address_fences_us_at_start(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mode, "look", lambda _config: mode.Seen(refused="403 clocks apart"))
    monkeypatch.setattr(mode, "address_elsewhere", lambda _config: False)
    assert mode.decide(config, starting=True) == "primary"  # alone on the link: it must still take mail
    assert fence.read(config) is None
    monkeypatch.setattr(mode, "address_elsewhere", lambda _config: True)
    assert mode.decide(config, starting=True) == "fenced"
    assert mode.decide(config, starting=True) == "fenced"  # the fence stays


def test_a_primary_that_could_not_take_the_address_tries_again_until_it_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Flaky(Address):
        def take(self) -> None:
            self.asked.append("take")
            if len(self.asked) < 3:
                raise AddressError("another box answers for 192.0.2.10")

    monkeypatch.setattr(services, "ADDRESS_RETRY", 0.01)
    address = Flaky()
    notices: list[Any] = []
    held = asyncio.run(services._hold_address(address, True, notices))  # type: ignore[arg-type]
    assert not held and len(notices) == 1  # alerted once
    asyncio.run(asyncio.wait_for(services._keep_taking(address), 30))  # type: ignore[arg-type]
    assert address.asked == ["take", "take", "take"]


def test_a_peer_whose_database_restarts_is_not_a_refusal_and_each_change_is_logged_once(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    import contextlib

    from jitaku.ha import peer, role, standby

    answers: list[Any] = [
        peer.PeerError("http://192.0.2.2:8080 answered the state request with 503: database restarting", 503),
        peer.PeerError("http://192.0.2.2:8080 answered the state request with 403: clocks apart", 403),
        None,
        None,
        {"role": "standby", "fenced": False, "timeline": 1},
        {"role": "standby", "fenced": False, "timeline": 1},
        None,
    ]

    def state(_url: str, _secret: str, _timeout: float) -> dict[str, Any] | None:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    standby.secret_path(config).parent.mkdir(exist_ok=True)
    standby.secret_path(config).write_text("s3cret\n")
    monkeypatch.setattr(role, "postgresql", lambda _config: True)
    monkeypatch.setattr(role, "connect", lambda _config, _timeout, **_kwargs: contextlib.nullcontext(None))
    monkeypatch.setattr(role, "one", lambda _connection, _sql: 1)
    monkeypatch.setattr(peer, "peer_url", lambda _config: "http://192.0.2.2:8080")
    monkeypatch.setattr(peer, "state", state)
    logged: list[str] = []
    monkeypatch.setattr(mode.log, "event", lambda name, **_fields: logged.append(name))
    monkeypatch.setattr(mode, "_last", [])
    seen = [mode.look(config) for _ in range(7)]
    assert seen[0] == mode.Seen()  # a 5xx: not known, never alerted as a refusal
    assert seen[1].refused is not None and "403" in seen[1].refused
    assert seen[2] == seen[3] == seen[6] == mode.Seen()
    assert seen[4] == seen[5] == mode.Seen(answered=True)
    assert logged == [
        "ha_peer_unknown",
        "ha_peer_unknown",
        "ha_peer_unreachable",
        "ha_peer_seen",
        "ha_peer_unreachable",
    ]


def test_a_peer_url_that_points_at_this_box_itself_is_no_peer_and_is_said_once(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A one-host pair (`standby allow 127.0.0.1`, or a wrong [ha] peer): this box's own web answers as an unfenced
    primary on its own timeline; taken for its peer, it would end each cold-start wait it began, and never serve."""
    import contextlib
    import logging

    from jitaku.ha import box, peer, role, standby

    standby.secret_path(waiting_config).parent.mkdir(exist_ok=True)
    standby.secret_path(waiting_config).write_text("s3cret\n")
    itself = {"role": "primary", "fenced": False, "timeline": 1, "box": box.box_id(waiting_config)}
    monkeypatch.setattr(role, "postgresql", lambda _config: True)
    monkeypatch.setattr(role, "current", lambda _config: role.PRIMARY)
    monkeypatch.setattr(role, "connect", lambda _config, _timeout, **_kwargs: contextlib.nullcontext(None))
    monkeypatch.setattr(role, "one", lambda _connection, _sql: 1)
    monkeypatch.setattr(peer, "peer_url", lambda _config: "http://127.0.0.1:8025")
    monkeypatch.setattr(peer, "state", lambda _url, _secret, _timeout: itself)
    monkeypatch.setattr(mode, "paired", lambda _config: (True, False))
    logged: list[tuple[str, int]] = []
    monkeypatch.setattr(mode.log, "event", lambda name, level=logging.INFO, **_fields: logged.append((name, level)))
    monkeypatch.setattr(mode, "_last", [])
    assert [mode.look(waiting_config) for _ in range(3)] == [mode.Seen()] * 3
    assert logged == [("ha_peer_is_this_box", logging.WARNING)]
    assert mode.decide(waiting_config, starting=True) == "waiting"  # as with no peer at all
    other = {**itself, "box": "0" * 32}
    monkeypatch.setattr(peer, "state", lambda _url, _secret, _timeout: other)
    assert mode.look(waiting_config) == mode.Seen(answered=True)


def test_a_fenced_box_whose_part_was_taken_back_serves_as_the_primary_again(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import role

    fence.write(config, fence.Fence("switchover", "two", 1.0, rejoin="192.0.2.2:5433", cluster="stopped"))
    looks: list[int] = []

    def current(_config: Config) -> str:
        looks.append(1)
        if len(looks) < 3:
            raise OSError("the cluster is stopped")
        return role.PRIMARY

    monkeypatch.setattr(services, "UNFENCED_POLL", 0.01)
    monkeypatch.setattr(role, "current", current)

    async def watched() -> str:
        ending = services._Ending()
        waiting = asyncio.create_task(services._until_unfenced(config, ending))
        await asyncio.sleep(0.2)
        assert not waiting.done() and not looks  # fenced still: its cluster is not even asked
        fence.clear(config)  # `jitaku failover --force` took the part back
        await asyncio.wait_for(waiting, 30)
        return ending.outcome

    assert asyncio.run(watched()) == "promoted"
    assert len(looks) == 3


@pytest.fixture
def waiting_config(tmp_path: Path) -> Config:
    text = 'domains = ["example.org"]\n[ha]\ncold_start_wait = 0.05\n'
    return Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)


def _a_primary(monkeypatch: pytest.MonkeyPatch, seen: mode.Seen, paired: tuple[bool, bool]) -> None:
    """This box's cluster a primary, its peer seeing SEEN, its slots PAIRED (had a standby, one streams now)."""
    from jitaku.ha import role

    monkeypatch.setattr(role, "current", lambda _config: role.PRIMARY)
    monkeypatch.setattr(mode, "look", lambda _config: seen)
    monkeypatch.setattr(mode, "paired", lambda _config: paired)
    monkeypatch.setattr(mode, "address_elsewhere", lambda _config: False)


def test_a_primary_that_had_a_standby_waits_for_its_silent_peer_after_a_cold_start_only(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    _a_primary(monkeypatch, mode.Seen(), (True, False))
    assert mode.decide(waiting_config, starting=True) == "waiting"
    assert mode.decide(waiting_config, starting=False) == "primary"  # its wait is over: it decides as before
    assert fence.read(waiting_config) is None


def test_a_box_that_took_the_part_alone_serves_as_the_primary_without_another_look(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    _a_primary(monkeypatch, mode.Seen(), (True, False))
    monkeypatch.setattr(mode, "look", lambda _config: pytest.fail("looked at the peer again"))
    assert mode.decide(waiting_config, starting=False, alone=True) == "primary"
    fence.write(waiting_config, fence.Fence("failover", "http://192.0.2.2:8080", 1.0))
    assert mode.decide(waiting_config, starting=False, alone=True) == "fenced"  # a fence still wins


@pytest.mark.parametrize(
    ("seen", "paired"),
    [
        (mode.Seen(), (False, False)),  # never had a standby (a primary before `standby setup`)
        (mode.Seen(), (True, True)),  # its standby streams from it already: no other primary
        (mode.Seen(answered=True), (True, False)),  # the peer answered as a standby, or a fenced box
    ],
)
def test_a_primary_that_sees_its_peer_or_never_had_one_serves_at_once_after_a_cold_start(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch, seen: mode.Seen, paired: tuple[bool, bool]
) -> None:
    _a_primary(monkeypatch, seen, paired)
    assert mode.decide(waiting_config, starting=True) == "primary"


def test_a_peer_that_refuses_us_after_a_cold_start_keeps_the_primary_waiting(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    _a_primary(monkeypatch, mode.Seen(refused="403 clocks apart"), (True, False))
    assert mode.decide(waiting_config, starting=True) == "waiting"  # it is there, and may be the primary
    assert fence.read(waiting_config) is None


def test_a_waiting_box_whose_peer_refuses_it_keeps_waiting_past_the_wait_and_says_so_once(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    refusing = [mode.Seen(refused="403 clocks apart")] * 30  # 0.3 s: six times cold_start_wait
    outcome, said = _wait(waiting_config, monkeypatch, [*refusing, mode.Seen(answered=True)], [])
    assert outcome == "decided"  # only once it answered as a peer should; the witness never asked
    assert [state for _check, state, _sentence in said] == [State.CRITICAL, State.OK]
    assert "refuses it (403 clocks apart)" in said[0][2]


def test_a_cold_start_wait_of_0_never_waits_and_a_fenced_box_stays_fenced(
    config: Config, waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    _a_primary(monkeypatch, mode.Seen(), (True, False))
    text = 'domains = ["example.org"]\n[ha]\ncold_start_wait = 0\n'
    assert (
        mode.decide(Config(parse(text, config.data_dir / "jitaku.toml"), config.data_dir), starting=True) == "primary"
    )
    fence.write(waiting_config, fence.Fence("failover", "http://192.0.2.2:8080", 1.0))
    assert mode.decide(waiting_config, starting=True) == "fenced"


def test_an_sqlite_box_or_someone_elses_postgresql_server_never_waits(waiting_config: Config) -> None:
    assert mode.paired(waiting_config) == (False, False)
    assert mode.decide(waiting_config, starting=True) == "primary"
    text = 'domains = ["example.org"]\n[database]\nurl = "postgresql://jitaku@192.0.2.1/jitaku"\n'
    external = Config(parse(text, waiting_config.data_dir / "jitaku.toml"), waiting_config.data_dir)
    assert mode.paired(external) == (False, False)  # its slots are its own replication's: not even asked


def test_the_daemon_waits_only_at_a_cold_start_and_after_its_wait_saw_the_peer(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    starts: list[tuple[bool, bool]] = []
    outcomes = iter(["decided", "alone", "promoted", "stopped"])
    modes = iter(["waiting", "waiting", "primary", "primary"])

    def decide(_config: Config, starting: bool, alone: bool = False) -> str:
        starts.append((starting, alone))
        return next(modes)

    served: list[tuple[str, Any]] = []

    async def serve(_config: Config, serving: str, *_args: Any, after: Any = None, **_kwargs: Any) -> str:
        served.append((serving, after))
        return next(outcomes)

    monkeypatch.setattr(mode, "decide", decide)
    monkeypatch.setattr(services, "serve", serve)
    app.run(config, app.Sockets([], [], []))
    # its peer seen, it may wait again (the peer gone meanwhile); once it took the part alone, it looks no more
    assert starts == [(True, False), (True, False), (False, True), (False, False)]
    assert served == [("waiting", None), ("waiting", "decided"), ("primary", "alone"), ("primary", "promoted")]


def _wait(
    config: Config, monkeypatch: pytest.MonkeyPatch, looks: list[mode.Seen], said: list[Any], streams: bool = False
) -> tuple[str, Any]:
    """services._until_decided with the peer seen as LOOKS say (then silent), the witness saying SAID in turn, a
    standby streaming from this box when STREAMS: the outcome, and what the monitor was asked to announce."""
    from jitaku.ha import witness

    async def ask(_config: Config) -> witness.Answer:
        answer = said.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]

    monkeypatch.setattr(services, "WAIT_EVERY", 0.01)
    monkeypatch.setattr(services, "WAIT_RETRY", 0.01)
    monkeypatch.setattr(mode, "look", lambda _config: looks.pop(0) if looks else mode.Seen())
    monkeypatch.setattr(mode, "paired", lambda _config: (True, streams))
    monkeypatch.setattr(witness, "ask", ask)
    monitor = Announced()

    async def waited() -> str:
        ending = services._Ending()
        await asyncio.wait_for(services._until_decided(config, ending, monitor), 30)  # type: ignore[arg-type]
        return ending.outcome

    return asyncio.run(waited()), monitor.said


def test_a_wait_that_saw_its_peer_and_waits_again_counts_from_its_first_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that answers once, then is silent again (its web restarting, a flaky link): the box decides again,
    waits again, and must not start `[ha] cold_start_wait` over each time, or it might never serve."""
    import time

    text = 'domains = ["example.org"]\n[ha]\ncold_start_wait = 1\n'
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    _a_primary(monkeypatch, mode.Seen(), (True, False))
    logged: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(services.log, "event", lambda name, *_level, **fields: logged.append((name, fields)))
    assert mode.decide(config, starting=True) == "waiting"
    time.sleep(2)  # the first wait, ended "decided" by an answer of the peer's
    assert mode.decide(config, starting=True) == "waiting"  # silent again
    outcome, _said = _wait(config, monkeypatch, [], [])
    assert outcome == "alone"
    [waited] = [fields["waited"] for name, fields in logged if name == "ha_wait_over"]
    assert waited >= 2  # counted from the first wait, not from this one (1 s)

    _a_primary(monkeypatch, mode.Seen(answered=True), (True, False))
    assert mode.decide(config, starting=True) == "primary"  # served: the next wait is a new one
    _a_primary(monkeypatch, mode.Seen(), (True, False))
    assert mode.decide(config, starting=True) == "waiting"
    assert time.monotonic() - mode.wait_began() < 2


def test_a_waiting_box_that_sees_its_peer_decides_again_before_the_wait_is_over(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = 'domains = ["example.org"]\n[ha]\ncold_start_wait = 600\n'
    long_wait = Config(parse(text, config.data_dir / "jitaku.toml"), config.data_dir)
    logged: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(services.log, "event", lambda name, **fields: logged.append((name, fields)))
    outcome, said = _wait(long_wait, monkeypatch, [mode.Seen(), mode.Seen(), mode.Seen(answered=True)], [])
    assert (outcome, said) == ("decided", [])  # the witness never asked
    assert [fields["why"] for name, fields in logged if name == "ha_wait_over"] == ["the peer answered"]


def test_a_waiting_box_that_sees_a_newer_primary_fences_itself_at_once(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    newer = mode.Seen(newer="http://192.0.2.2:8080", answered=True)
    outcome, said = _wait(waiting_config, monkeypatch, [mode.Seen(), newer], [])
    assert (outcome, said) == ("fenced", [])  # no second look that could find it silent
    found = fence.read(waiting_config)
    assert found is not None and (found.purpose, found.by) == ("split-brain", "http://192.0.2.2:8080")


def test_a_waiting_box_takes_nothing_while_the_witness_sees_the_pairs_services_then_takes_the_part_alone(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import witness

    answers = witness.Answer(witness.Seen.ANSWERS, "the witness w.example reaches 192.0.2.1:25")
    silent = witness.Answer(witness.Seen.SILENT, "the witness w.example reaches none of 192.0.2.1:25")
    outcome, said = _wait(waiting_config, monkeypatch, [], [answers, answers, answers, silent])
    assert outcome == "alone"
    assert [(check, state) for check, state, _sentence in said] == [("ha", State.CRITICAL), ("ha", State.WARNING)]
    assert "another box may be serving as the primary" in said[0][2]  # said once, for three answers
    assert said[1][2].startswith("mail.example.org took the primary's part alone after ")
    assert said[1][2].endswith(
        "and the witness w.example reaches none of 192.0.2.1:25. If the other box was "
        "promoted while this one was off, check it before it serves too."
    )


def test_a_waiting_box_takes_nothing_while_another_machine_answers_for_the_floating_address(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import witness

    held = [True, True, True, False]
    asked: list[bool] = []

    def elsewhere(_config: Config) -> bool:
        asked.append(held[0])
        return held.pop(0)

    monkeypatch.setattr(mode, "address_elsewhere", elsewhere)
    nobody = asyncio.run(witness.ask(waiting_config))
    outcome, said = _wait(waiting_config, monkeypatch, [], [nobody] * 4)
    assert outcome == "alone" and asked == [True, True, True, False]  # only once nobody answers for it
    assert [state for _check, state, _sentence in said] == [State.CRITICAL, State.WARNING]  # said once
    assert "another machine answers for the floating address" in said[0][2]


def test_a_waiting_box_without_a_witness_takes_the_part_alone_once_the_wait_is_over(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import witness

    outcome, said = _wait(waiting_config, monkeypatch, [], [asyncio.run(witness.ask(waiting_config))])
    assert outcome == "alone"
    [(_check, state, sentence)] = said
    assert state == State.WARNING and "no witness configured" in sentence


def test_a_configured_witness_that_cannot_be_asked_keeps_the_waiting_box_waiting_until_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import witness

    text = (
        'domains = ["example.org"]\n[ha]\ncold_start_wait = 0.05\nwitness = "https://w.example"\n'
        'witness_token = "0123456789abcdef"\nwitness_targets = ["203.0.113.5:25"]\n'
    )
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    down = witness.Answer(witness.Seen.UNKNOWN, "cannot ask the witness w.example: ConnectError")
    silent = witness.Answer(witness.Seen.SILENT, "the witness w.example reaches none of 203.0.113.5:25")
    outcome, said = _wait(config, monkeypatch, [], [down, ValueError("garbage"), down, silent])
    assert outcome == "alone"  # only once the witness could say it reaches nobody
    assert [state for _check, state, _sentence in said] == [State.CRITICAL, State.WARNING]  # said once
    assert "the witness cannot be asked (cannot ask the witness w.example: ConnectError)" in said[0][2]


def test_a_witness_without_targets_is_refused_by_the_config(tmp_path: Path) -> None:
    from jitaku.config import ConfigError

    text = 'domains = ["example.org"]\n[ha]\nwitness = "https://w.example"\nwitness_token = "0123456789abcdef"\n'
    with pytest.raises(ConfigError, match=r"jitaku.toml:2: ha: witness needs witness_targets: "):
        parse(text, tmp_path / "jitaku.toml")


def test_a_waiting_box_never_starts_a_look_while_one_still_runs(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from jitaku.ha import role

    released = threading.Event()
    looks: list[float] = []

    def look(_config: Config) -> mode.Seen:
        looks.append(1)
        released.wait(30)  # a peer or a cluster slower than WAIT_LOOK
        return mode.Seen(answered=True)

    monkeypatch.setattr(services, "WAIT_EVERY", 0.01)
    monkeypatch.setattr(services, "WAIT_LOOK", 0.01)
    monkeypatch.setattr(mode, "PEER_TIMEOUT", 0.005)
    monkeypatch.setattr(role, "CONNECT_TIMEOUT", 0.005)
    monkeypatch.setattr(mode, "look", look)
    monkeypatch.setattr(mode, "paired", lambda _config: (True, False))

    async def waited() -> str:
        ending = services._Ending()
        waiting = asyncio.create_task(services._until_decided(config, ending, None))
        await asyncio.sleep(0.5)  # fifty rounds
        released.set()
        await asyncio.wait_for(waiting, 30)
        return ending.outcome

    assert asyncio.run(waited()) == "decided"
    assert len(looks) == 1


def test_a_look_connects_to_this_boxs_cluster_within_the_peers_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import role

    managed = Config(parse('domains = ["example.org"]\n[database]\nmanaged = true\n', tmp_path / "j.toml"), tmp_path)

    class Slots:
        def __enter__(self) -> Slots:
            return self

        def __exit__(self, *_args: object) -> None:
            return None

        def execute(self, _sql: str) -> Slots:
            return self

        def fetchone(self) -> tuple[int, bool]:
            return 1, False

    timeouts: list[tuple[float, float | None]] = []

    def connect(
        _config: Config, timeout: float = role.CONNECT_TIMEOUT, statement_timeout: float | None = None
    ) -> Slots:
        timeouts.append((timeout, statement_timeout))
        return Slots()

    monkeypatch.setattr(role, "postgresql", lambda _config: True)
    monkeypatch.setattr(role, "connect", connect)
    assert mode.paired(managed) == (True, False)
    # 3 s, not the 10 s a command waits for it; each statement too, or a stop during a look would wait for it
    assert timeouts == [(mode.PEER_TIMEOUT, mode.PEER_TIMEOUT)]


@pytest.mark.parametrize(("timeout", "seconds"), [(0.3, 2), (0.005, 2), (3.0, 3), (3.2, 4), (10, 10)])
def test_a_connection_to_this_boxs_cluster_never_waits_forever_for_a_short_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, timeout: float, seconds: int
) -> None:
    import psycopg

    from jitaku.ha import role

    text = 'domains = ["example.org"]\n[database]\nurl = "postgresql://jitaku@192.0.2.1/jitaku"\n'
    external = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    asked: list[dict[str, Any]] = []
    monkeypatch.setattr(psycopg, "connect", lambda _url, **kwargs: asked.append(kwargs))
    role.connect(external, timeout)
    assert asked[0]["connect_timeout"] == seconds  # libpq takes 0 for no timeout at all
    assert asked[0]["options"] is None  # a command's statements take their time
    role.connect(external, timeout, statement_timeout=3.0)
    assert asked[1]["options"] == "-c statement_timeout=3000"


def test_standby_allow_remembers_the_standby_as_the_peer_a_cold_start_asks(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging
    import types

    from jitaku.cli import ha as cli_ha
    from jitaku.ha import peer, secret_files, standby

    _a_primary(monkeypatch, mode.Seen(), (True, False))
    with caplog.at_level(logging.INFO):
        assert mode.decide(waiting_config, starting=True) == "waiting"
    [record] = [record for record in caplog.records if "event=ha_waiting" in record.getMessage()]
    assert record.levelno == logging.WARNING and "no peer to ask" in record.getMessage()

    allowed = standby.Allowed(standby.secret_path(waiting_config), False, True, [], False)
    monkeypatch.setattr(cli_ha, "_managed", lambda _dir: waiting_config)
    monkeypatch.setattr(cli_ha, "hold_cluster", lambda _config: None)
    monkeypatch.setattr(standby, "allow", lambda _config, _host: allowed)
    monkeypatch.setattr(cli_ha, "open_database", lambda _config: types.SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(secret_files, "publish_now", lambda _config, _database: False)
    cli_ha.allow("198.51.100.7", waiting_config.data_dir)
    assert peer.peer_url(waiting_config) == "http://198.51.100.7:8025"  # its own first [web] port


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_standby_allow_of_this_boxs_own_address_remembers_no_peer(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """A pair on one host: the peer URL would be this box's own web, which a cold start would take for its peer."""
    import types

    from jitaku.cli import ha as cli_ha
    from jitaku.ha import peer, secret_files, standby

    allowed = standby.Allowed(standby.secret_path(waiting_config), False, True, [], False)
    monkeypatch.setattr(cli_ha, "_managed", lambda _dir: waiting_config)
    monkeypatch.setattr(cli_ha, "hold_cluster", lambda _config: None)
    monkeypatch.setattr(standby, "allow", lambda _config, _host: allowed)
    monkeypatch.setattr(cli_ha, "open_database", lambda _config: types.SimpleNamespace(close=lambda: None))
    monkeypatch.setattr(secret_files, "publish_now", lambda _config, _database: False)
    cli_ha.allow(host, waiting_config.data_dir)
    assert peer.peer_url(waiting_config) is None


def test_only_a_boot_since_the_box_last_served_as_the_primary_makes_it_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import boot

    text = 'domains = ["example.org"]\n[database]\nmanaged = true\n[ha]\ncold_start_wait = 60\n'
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    kernel = tmp_path / "boot_id"
    kernel.write_text("1111-first-boot\n")
    monkeypatch.setattr(boot, "BOOT_ID", kernel)
    _a_primary(monkeypatch, mode.Seen(), (True, False))
    assert mode.decide(config, starting=True) == "waiting"  # none recorded: never served since the pair was set up
    assert mode.decide(config, starting=True) == "waiting"  # waiting is not serving: still none
    assert mode.decide(config, starting=False, alone=True) == "primary"
    assert (tmp_path / "ha" / "boot_id").read_text() == "1111-first-boot\n"
    assert mode.decide(config, starting=True) == "primary"  # the daemon restarted, the box did not: no wait
    kernel.write_text("2222-after-a-power-cut\n")
    assert mode.decide(config, starting=True) == "waiting"


def test_a_waiting_box_neither_checks_its_reachability_nor_pings_the_heartbeat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.health import checks
    from jitaku.health.monitor import Monitor
    from jitaku.health.standby_file import LocalMonitor

    text = 'domains = ["example.org"]\n[alerts]\nheartbeat_url = "https://hc.example/ping/1"\n'
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    asked: list[str] = []

    async def reachability(_context: checks.Context) -> None:
        asked.append("reachability")

    monkeypatch.setitem(checks.CHECKS, "reachability", reachability)
    waiting = checks.Context(config, None, standby=True, waiting=True)  # type: ignore[arg-type]
    assert asyncio.run(checks.run("reachability", waiting)) == [] and asked == []  # nothing serves yet
    fenced = checks.Context(config, None, standby=True)  # type: ignore[arg-type]
    asyncio.run(checks.run("reachability", fenced))
    assert asked == ["reachability"]

    jobs: list[str] = []

    async def every(_interval: float, job: Any, first: float = 0.0) -> None:
        jobs.append(getattr(job, "__name__", "a check"))

    monkeypatch.setattr(Monitor, "_every", staticmethod(every))
    asyncio.run(LocalMonitor(config, None, waiting=True).run())  # type: ignore[arg-type]
    assert "_heartbeat" not in jobs  # alive, but it takes no mail
    asyncio.run(LocalMonitor(config, None).run())  # type: ignore[arg-type]
    assert "_heartbeat" in jobs


def test_a_waiting_box_whose_standby_streams_again_decides_again(
    waiting_config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    logged: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(services.log, "event", lambda name, **fields: logged.append((name, fields)))
    outcome, said = _wait(waiting_config, monkeypatch, [], [], streams=True)  # the peer silent: its web not up yet
    assert (outcome, said) == ("decided", [])
    assert [fields["why"] for name, fields in logged if name == "ha_wait_over"] == ["a standby streams from this box"]


def test_sigterm_while_a_waiting_box_looks_at_its_peer_ends_the_wait_at_once(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    released, finished = threading.Event(), threading.Event()

    def look(_config: Config) -> mode.Seen:
        released.wait(20)  # a peer that takes its time
        finished.set()
        return mode.Seen()

    monkeypatch.setattr(services, "WAIT_EVERY", 0.01)
    monkeypatch.setattr(mode, "look", look)
    monkeypatch.setattr(mode, "paired", lambda _config: (True, False))

    async def stopped() -> bool:
        waiting = asyncio.create_task(services._until_decided(config, services._Ending(), None))
        await asyncio.sleep(0.2)
        waiting.cancel()  # what the services' end does to their background tasks
        done, _pending = await asyncio.wait([waiting], timeout=5)
        return bool(done) and waiting.cancelled()

    try:
        assert asyncio.run(stopped())
        assert not finished.is_set()  # the event loop ended without waiting for the look's thread
    finally:
        released.set()
