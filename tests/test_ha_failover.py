"""The parts of `jitaku failover` and `jitaku switchover` that need no pair: whether a daemon runs, where this
box's MX is reached, the address the old primary is told to re-join, and the refusals before any cluster."""

from __future__ import annotations

import contextlib
import socket
from pathlib import Path

import pytest

from jitaku import ports, serve_lock
from jitaku.config import Config, Listen, parse
from jitaku.ha import alive, failover, fence, peer, role, standby


def configured(tmp_path: Path, extra: str = "") -> Config:
    text = 'domains = ["example.org"]\n[smtp]\nlisten = ["0.0.0.0:25"]\n' + extra
    return Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)


def test_a_daemon_runs_while_its_serve_lock_is_held(tmp_path: Path) -> None:
    assert not serve_lock.running(tmp_path)  # no lock file yet
    with serve_lock.held(tmp_path):
        assert serve_lock.running(tmp_path)
    assert not serve_lock.running(tmp_path)
    assert (tmp_path / serve_lock.LOCK_NAME).read_text().strip().isdigit()  # the probe wrote nothing there


def test_the_mx_is_reached_where_the_running_daemon_listens(tmp_path: Path) -> None:
    config = configured(tmp_path)
    assert failover.mail_address(config) == ("127.0.0.1", 25)  # a wildcard, reached on loopback
    ports.record(tmp_path, {"mx": (Listen("::", 2525),)})
    assert failover.mail_address(config) == ("::1", 2525)


def test_the_old_primary_rejoins_our_cluster_where_it_can_reach_it(tmp_path: Path) -> None:
    listen = '[database]\nlisten = ["127.0.0.1:5433", "192.168.1.11:5433"]\n'
    config = configured(tmp_path, listen)
    assert failover._our_address(config, "127.0.0.1") == "127.0.0.1:5433"
    assert failover._our_address(config, "192.168.1.10") == "192.168.1.11:5433"  # not loopback for another box
    wildcard = configured(tmp_path, '[database]\nlisten = ["0.0.0.0:5433"]\n')
    assert failover._our_address(wildcard, "127.0.0.1") == "127.0.0.1:5433"
    # the address this box routes to the primary from (loopback's own, here)
    assert failover._our_address(wildcard, "127.0.0.2") == "127.0.0.1:5433"


def test_a_store_that_is_not_a_managed_cluster_is_refused(tmp_path: Path) -> None:
    with pytest.raises(failover.FailoverError, match="not a PostgreSQL cluster of jitaku's own"):
        failover.ready(configured(tmp_path))


def test_a_managed_cluster_without_its_daemon_is_refused(tmp_path: Path) -> None:
    config = configured(tmp_path, "[database]\nmanaged = true\n")
    with pytest.raises(failover.FailoverError, match=r"jitaku serve is not running on .*: start jitaku serve first"):
        failover.ready(config)
    with serve_lock.held(tmp_path):
        failover.ready(config)


# The decisions of failover and switchover, with the peer's answers and this box's cluster stood in for: what is
# refused, what is said, and what is done before and after the fence.

URL = "http://192.168.1.10:8080"
PRIMARY: dict[str, object] = {"role": "primary", "fenced": False, "name": "one", "lsn": "0/5000000"}
FENCED: dict[str, object] = {**PRIMARY, "fenced": True, "lsn": "0/5000100"}


class Pair:
    """The peer's answers (a script of states and one fence answer), and what this box did."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fence: object, *states: object, listening: bool = True) -> None:
        self.fence, self.states = fence, list(states)
        self.asked = 0  # state requests
        self.done: list[str] = []
        self.said: list[str] = []
        self.replayed = "0/5000100"  # where this box's replay stands
        monkeypatch.setattr(failover, "POLL", 0.01)
        monkeypatch.setattr(failover, "LATE_FENCE_WAIT", 0.2)
        monkeypatch.setattr(failover, "_check", lambda config: "secret")
        monkeypatch.setattr(failover, "_peer_url", lambda config: URL)
        monkeypatch.setattr(peer, "fence", self._fence)
        monkeypatch.setattr(peer, "fence_answer", self._fence_answer)
        monkeypatch.setattr(peer, "state", self._state)
        monkeypatch.setattr(failover, "_listening", lambda url: listening)  # whether its web takes a connection
        monkeypatch.setattr(failover, "_replayed", self._replayed)
        monkeypatch.setattr(failover, "_promote", lambda config: self.done.append("promote"))
        monkeypatch.setattr(failover, "_wait_greeting", lambda config, started: 1.5)
        monkeypatch.setattr(failover, "_receiver", lambda config: failover.Receiver(None, None, 2.0))

    def _fence(self, url: str, secret: str, purpose: str, by: str, rejoin: str | None, timeout: float) -> bool:
        self.done.append(f"fence {purpose}")
        if isinstance(self.fence, Exception):
            raise self.fence
        return bool(self.fence)

    def _fence_answer(
        self, url: str, secret: str, purpose: str, by: str, rejoin: str | None, timeout: float
    ) -> dict[str, object] | None:
        if isinstance(self.fence, dict):
            self.done.append(f"fence {purpose}")
            return self.fence
        return {"fenced": True, "lsn": None} if self._fence(url, secret, purpose, by, rejoin, timeout) else None

    def _state(self, url: str, secret: str, timeout: float) -> dict[str, object] | None:
        self.asked += 1
        answer = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    def _replayed(self, config: Config, lsn: str, strictly: bool, timeout: float) -> tuple[bool, str]:
        self.done.append(f"replay to {lsn}")
        return int(self.replayed.split("/")[1], 16) >= int(lsn.split("/")[1], 16) + strictly, self.replayed

    def failover(self, config: Config, force: bool = False) -> failover.Promoted:
        return failover.failover(config, 0.0, self.said.append, force)


REFUSED = peer.PeerError(f"{URL} did not fence itself (403): refused")


def test_failover_refuses_an_old_primary_that_answers_and_refuses_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = configured(tmp_path)
    pair = Pair(monkeypatch, REFUSED, PRIMARY)
    with pytest.raises(failover.FailoverError, match=r"is up and refused to be fenced .*403.*--force"):
        pair.failover(config)
    assert "promote" not in pair.done
    done = pair.failover(config, force=True)
    assert "promote" in pair.done and "two primaries may take mail" in done.peer


def test_failover_refuses_a_peer_that_refuses_the_fence_and_its_state_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = Pair(monkeypatch, REFUSED, peer.PeerError("403 on state"))
    with pytest.raises(failover.FailoverError, match=r"is up and refused to be fenced .* and to say how it stands"):
        pair.failover(configured(tmp_path))
    assert pair.done == ["fence failover"]


def test_a_fence_s_answer_says_how_far_to_replay_without_another_state_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = Pair(monkeypatch, {"fenced": True, "lsn": "0/5000080"}, peer.PeerError("no state asked for"))
    done = pair.failover(configured(tmp_path))
    assert done.peer == f"fenced at {URL}"
    assert pair.done == ["fence failover", "replay to 0/5000080", "promote"]


def test_a_fence_answered_too_late_is_found_in_the_state_and_its_wal_replayed_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = Pair(monkeypatch, False, FENCED)
    done = pair.failover(configured(tmp_path))
    assert done.peer == f"fenced (its answer came late) at {URL}"
    assert pair.done == ["fence failover", "replay to 0/5000100", "promote"]
    assert not any(line.startswith("warning") for line in pair.said)


def test_a_late_fence_whose_state_says_not_fenced_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = Pair(monkeypatch, False, PRIMARY)
    with pytest.raises(failover.FailoverError, match=r"did not answer the fence within 3 s, and says it is not"):
        pair.failover(configured(tmp_path))
    assert "promote" not in pair.done


def test_a_fenced_old_primary_ahead_of_this_box_is_warned_of(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(failover, "LIVE_CATCH_UP_TIMEOUT", 0.0)
    pair = Pair(monkeypatch, True, FENCED)
    pair.replayed = "0/5000000"
    pair.failover(configured(tmp_path))
    warning = [line for line in pair.said if line.startswith("warning: ")]
    assert warning == [
        "warning: this box replayed WAL to 0/5000000 only in 0 s, short of the old primary's 0/5000100: writes it "
        "acknowledged after that are missing here (they stay in its cluster)"
    ]
    assert pair.done[-1] == "promote"


def listening() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_a_silent_web_with_smtp_or_postgresql_answering_is_refused_unless_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with listening() as smtp, listening() as database:
        smtp_port, database_port = smtp.getsockname()[1], database.getsockname()[1]
        config = configured(tmp_path, '[ha]\npeer = "http://127.0.0.1:9"\n')
        ports.record(tmp_path, {"mx": (Listen("0.0.0.0", smtp_port),)})
        pair = Pair(monkeypatch, False, None, listening=False)
        monkeypatch.setattr(alive, "ours", lambda host: False)  # as if 127.0.0.1 were the other box
        receiver = failover.Receiver("waiting", ("127.0.0.1", database_port), 30.0)
        monkeypatch.setattr(failover, "_receiver", lambda config: receiver)
        monkeypatch.setattr(failover, "_peer_url", lambda config: "http://127.0.0.1:9")
        with pytest.raises(failover.FailoverError) as refused:
            pair.failover(config)
        said = str(refused.value)
        assert f"its SMTP at 127.0.0.1:{smtp_port} and its PostgreSQL at 127.0.0.1:{database_port} takes" in said
        assert "--force" in said and "promote" not in pair.done
        done = pair.failover(config, force=True)
        assert "promoting anyway (--force)" in done.peer and pair.done[-1] == "promote"
    # both closed: the old primary is down, and the failover goes on, saying what it knocked at
    done = pair.failover(config)
    assert done.peer.startswith("no answer from http://127.0.0.1:9 in 3 s, nor from its SMTP at 127.0.0.1:")
    assert done.peer.endswith(": not fenced, going on")


def test_an_old_primary_restarting_fenced_is_found_fenced_once_its_web_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with listening() as smtp:
        config = configured(tmp_path, '[ha]\npeer = "http://127.0.0.1:9"\n')
        ports.record(tmp_path, {"mx": (Listen("0.0.0.0", smtp.getsockname()[1]),)})
        monkeypatch.setattr(failover, "PEER_TIMEOUT", 0.1)
        # silent well past the fence's own timeout, its web restarting
        pair = Pair(monkeypatch, False, *([None] * 30), FENCED, listening=False)
        monkeypatch.setattr(failover, "LATE_FENCE_WAIT", 30.0)
        monkeypatch.setattr(alive, "ours", lambda host: False)
        monkeypatch.setattr(failover, "_peer_url", lambda config: "http://127.0.0.1:9")
        done = pair.failover(config)
    assert done.peer == "fenced (its answer came late) at http://127.0.0.1:9"
    assert pair.done == ["fence failover", "replay to 0/5000100", "promote"]


def test_an_old_primary_whose_web_takes_no_connection_is_not_waited_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = Pair(monkeypatch, False, FENCED, listening=False)
    monkeypatch.setattr(alive, "answering", lambda doors: [])
    done = pair.failover(configured(tmp_path))
    assert done.peer == f"no answer from {URL} in 3 s, nor from its SMTP at 192.168.1.10:25: not fenced, going on"
    assert pair.asked == 0 and pair.done == ["fence failover", "promote"]  # no late fence looked for
    late = Pair(monkeypatch, False, FENCED)  # its web takes connections: the fence may have come late
    assert late.failover(configured(tmp_path)).peer == f"fenced (its answer came late) at {URL}"
    assert late.asked >= 1


def test_a_door_of_this_box_s_own_is_not_taken_for_the_peer(tmp_path: Path) -> None:
    config = configured(tmp_path, '[database]\nlisten = ["127.0.0.1:5433"]\n')
    assert alive.doors(config, "http://127.0.0.1:8080", ("127.0.0.1", 5433)) == []
    doors = alive.doors(config, "http://127.0.0.1:8080", ("127.0.0.1", 5434))  # the other cluster of a pair here
    assert [str(door) for door in doors] == ["its PostgreSQL at 127.0.0.1:5434"]
    assert alive.url_host("http://[fd00::1]:8080") == "fd00::1"


def test_a_dead_old_primary_is_followed_by_what_this_standby_knows_of_synchronous_replication(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = configured(tmp_path, "[ha]\nsync_timeout = 10\n")
    pair = Pair(monkeypatch, False, None)
    for silent, expected in (
        (None, "has not heard from the primary since its PostgreSQL started"),
        (4.0, "last heard from the primary 4 s ago"),
    ):
        monkeypatch.setattr(failover, "_receiver", lambda config, silent=silent: failover.Receiver(None, None, silent))
        warning = failover._synchronous_warning(config)
        assert warning.startswith(failover.UNKNOWN_SYNC) and expected in warning
    monkeypatch.setattr(failover, "_receiver", lambda config: failover.Receiver("waiting", None, 70.0))
    warning = failover._synchronous_warning(config)
    assert warning.startswith("this standby was not synchronous from ") and "last heard from it 70 s ago" in warning
    monkeypatch.setattr(alive, "answering", lambda doors: [])
    pair.failover(config)
    assert [line for line in pair.said if line.startswith("warning: this standby was not synchronous")]


def test_a_fenced_box_is_told_so_rather_than_called_the_primary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = configured(tmp_path)
    monkeypatch.setattr(failover, "ready", lambda config: None)
    fence.write(config, fence.Fence("failover", "two", 1.0))
    with pytest.raises(
        failover.FailoverError, match=r"^this box is fenced \(failover, by two\): .*`jitaku standby setup` re-joins it"
    ):
        failover._check(config)


def test_a_box_a_failed_switchover_left_fenced_takes_the_primary_s_part_back_when_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jitaku.ha import cluster, rejoin

    config = configured(tmp_path)
    done: list[str] = []
    up: list[bool] = [False]
    monkeypatch.setattr(failover, "ready", lambda config: None)
    monkeypatch.setattr(failover, "_wait_greeting", lambda config, started: 2.5)
    monkeypatch.setattr(cluster, "control", lambda _config: contextlib.nullcontext())
    monkeypatch.setattr(cluster, "running", lambda _config: 4242 if up[0] else None)
    monkeypatch.setattr(cluster, "start", lambda _config: (done.append("start"), up.__setitem__(0, True)))
    monkeypatch.setattr(role, "current", lambda _config: "standby" if up[0] else "primary")
    config.postgres_dir.mkdir()
    (config.postgres_dir / "standby.signal").touch()
    stopped = fence.Fence("switchover", "two", 1.0, rejoin="192.0.2.2:5433", checkpoint="0/3000028", cluster="stopped")
    fence.write(config, stopped)
    (tmp_path / "ha" / rejoin.FAILURE_NAME).write_text("the new primary was not promoted\n")
    with pytest.raises(failover.FailoverError, match=r"^this box is fenced \(switchover, by two\)"):
        failover.failover(config, 0.0, done.append)  # not forced: refused as before
    promoted = failover.failover(config, 0.0, done.append, force=True)
    assert promoted.seconds == 2.5 and done[0] == "start" and "took the primary's part back" in done[1]
    assert not (config.postgres_dir / "standby.signal").exists()
    assert fence.read(config) is None and rejoin.failure(config) is None
    fence.write(config, stopped)  # a cluster already a standby (re-joined meanwhile) is not taken back
    with pytest.raises(failover.FailoverError, match="is a standby already"):
        failover.failover(config, 0.0, done.append, force=True)
    assert fence.read(config) is not None


class Switch(Pair):
    """A switchover's steps stood in for too, in the order they ran."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fence: object, *states: object) -> None:
        super().__init__(monkeypatch, fence, *states)
        monkeypatch.setattr(failover, "STOPPED_TIMEOUT", 0.2)
        monkeypatch.setattr(failover, "_streaming_from", lambda config: ("192.168.1.10", 5433))
        monkeypatch.setattr(failover, "_our_address", lambda config, host: "192.168.1.11:5433")
        monkeypatch.setattr(failover, "_allow_old_primary", lambda config, host, url: self.done.append("allow"))
        monkeypatch.setattr(failover, "_make_slot", lambda config, name: self.done.append("slot") or True)
        monkeypatch.setattr(failover, "_forget_slot", lambda config, name, made: self.done.append("forget slot"))
        monkeypatch.setattr(failover, "_wait_streaming_to", lambda config, name: True)
        monkeypatch.setattr(failover, "_here", lambda config: ("standby", self.replayed))

    def switchover(self, config: Config) -> failover.Switched:
        return failover.switchover(config, 0.0, self.said.append)


STOPPED: dict[str, object] = {**FENCED, "cluster": "stopped", "checkpoint": "0/5000100", "lsn": "0/5000100"}


def test_a_switchover_does_what_can_fail_before_the_fence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = Switch(monkeypatch, True, PRIMARY, STOPPED)
    pair.replayed = "0/5000101"
    done = pair.switchover(configured(tmp_path))
    assert done.streaming and done.old_primary == "one"
    assert pair.done == [
        "allow", "slot", "replay to 0/5000000", "fence switchover", "replay to 0/5000100", "promote"
    ]  # fmt: skip


def test_a_switchover_behind_the_primary_stops_before_the_fence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = Switch(monkeypatch, True, {**PRIMARY, "lsn": "0/6000000"})
    with pytest.raises(failover.FailoverError, match=r"short of the primary's 0/6000000: .*nothing was changed"):
        pair.switchover(configured(tmp_path))
    assert "fence switchover" not in pair.done and pair.done[-1] == "forget slot"


def test_a_refused_or_untaken_switchover_fence_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = Switch(monkeypatch, REFUSED, PRIMARY)
    with pytest.raises(failover.FailoverError, match=r"refused to hand over: .*403.*nothing was changed"):
        pair.switchover(configured(tmp_path))
    assert pair.done[-1] == "forget slot"
    monkeypatch.setattr(failover, "SWITCH_PEER_TIMEOUT", 0.1)
    pair = Switch(monkeypatch, False, PRIMARY)
    with pytest.raises(failover.FailoverError, match=r"says it is not fenced: nothing was changed here; try again$"):
        pair.switchover(configured(tmp_path))
    assert pair.done[-1] == "forget slot" and "promote" not in pair.done


RECOVERY = r"^switchover failed after the primary at http://192.168.1.10:8080 was fenced: "


def test_a_switchover_fence_answered_late_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = Switch(monkeypatch, False, PRIMARY, STOPPED)
    pair.replayed = "0/5000101"
    assert pair.switchover(configured(tmp_path)).streaming
    assert pair.done[-1] == "promote"


def test_a_switchover_fence_never_answered_says_how_both_boxes_stand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failover, "SWITCH_PEER_TIMEOUT", 0.1)
    pair = Switch(monkeypatch, False, PRIMARY, None)
    with pytest.raises(failover.FailoverError, match=RECOVERY) as failed:
        pair.switchover(configured(tmp_path))
    said = str(failed.value)
    assert "did not answer the fence within 0 s, nor say since whether it is fenced" in said
    assert "the old primary does not answer (it may be fenced" in said
    assert "this box is a standby, not promoted (replayed to 0/5000100)" in said
    assert "`jitaku failover --force` there: it takes the primary's part back" in said
    assert "keeps its cluster stopped, fenced" in said and "`jitaku failover --force` here" in said
    assert "jitaku standby setup --primary 192.168.1.10:5433 --secret-file FILE --replace" in said
    assert "promote" not in pair.done


def test_an_old_primary_that_never_stops_its_cluster_is_a_failure_after_the_fence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = Switch(monkeypatch, True, PRIMARY, FENCED)
    with pytest.raises(failover.FailoverError, match=RECOVERY) as failed:
        pair.switchover(configured(tmp_path))
    said = str(failed.value)
    assert "did not report its cluster stopped within 0 s (last: cluster None, fenced True)" in said
    assert "the old primary is fenced and takes no mail" in said and "may lack the old primary's last writes" in said
    assert "promote" not in pair.done


def test_a_failed_promotion_after_the_fence_says_to_fail_over_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pair = Switch(monkeypatch, True, PRIMARY, STOPPED)
    pair.replayed = "0/5000101"

    def fails(config: Config) -> None:
        raise failover.FailoverError("PostgreSQL did not finish its promotion within 60 s")

    monkeypatch.setattr(failover, "_promote", fails)
    with pytest.raises(failover.FailoverError, match=RECOVERY + "PostgreSQL did not finish") as failed:
        pair.switchover(configured(tmp_path))
    said = str(failed.value)
    assert "(its cluster stopped); this box is a standby, not promoted (replayed to 0/5000101)" in said
    assert said.endswith("This box has every write the old primary acknowledged: run `jitaku failover --force` here.")


class Database:
    """This box's cluster as a few queries see it: ROWS answered in turn (the last again), and what was run."""

    def __init__(self, *rows: object) -> None:
        self.rows, self.run = list(rows), []

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, query: str, params: tuple[object, ...] = ()) -> Database:
        self.run.append(" ".join(query.split()[:2]) + (f" {params[0]}" if params else ""))
        return self

    def fetchone(self) -> object:
        return self.rows.pop(0) if len(self.rows) > 1 else self.rows[0]


def test_a_standby_that_does_not_replay_past_the_checkpoint_aborts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(failover, "CATCH_UP_TIMEOUT", 0.1)
    monkeypatch.setattr(failover, "POLL", 0.01)
    database = Database(("0/4000000", False))
    monkeypatch.setattr(role, "connect", lambda config: database)
    with pytest.raises(failover.FailoverError, match=r"replayed WAL to 0/4000000 only, short of .* 0/5000100"):
        failover._wait_replayed(configured(tmp_path), "0/5000100", True)
    database = Database(("0/4000000", False), ("0/5000200", True))
    failover._wait_replayed(configured(tmp_path), "0/5000100", True)  # catches up on the second look
    assert failover.CATCH_UP_TIMEOUT > 0 and len(database.run) == 2


def test_an_unused_or_lost_slot_is_made_anew_and_one_in_use_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = ["SELECT pg_drop_replication_slot(%s) one", "SELECT 1 one"]
    for row, expected in (
        ((False, "reserved"), made),
        ((True, "lost"), made),
        (None, made[1:]),
        ((True, "reserved"), []),
    ):
        database = Database(row)
        monkeypatch.setattr(role, "connect", lambda config, database=database: database)
        assert failover._make_slot(configured(tmp_path), "one") is bool(expected)
        assert database.run[1:] == expected, row


def test_the_old_primary_is_let_in_from_each_address_it_may_come_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    allowed: list[str] = []
    monkeypatch.setattr(standby, "allow_replication", lambda config, host: allowed.append(host) or True)
    monkeypatch.setattr(
        socket,
        "getaddrinfo",
        lambda host, port, **kw: [(0, 0, 0, "", ("192.168.1.10", 0)), (0, 0, 0, "", ("fd00::10", 0, 0, 0))],
    )
    failover._allow_old_primary(configured(tmp_path), "one.lan", "http://192.168.1.20:8080")
    assert allowed == ["192.168.1.10", "fd00::10", "192.168.1.20"]
    allowed.clear()
    failover._allow_old_primary(configured(tmp_path), "192.168.1.10", "http://one.lan:8080")
    assert allowed == ["192.168.1.10"]
