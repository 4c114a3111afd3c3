"""What the replication check says in each state jitaku.ha.sync can find a primary in, and the names it reads
from and writes to synchronous_standby_names (the two clusters themselves: tests/integration/test_sync_replication)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jitaku.config import Config, ConfigError, parse
from jitaku.ha import status, sync, witness
from jitaku.ha.status import _as_standby
from jitaku.ha.sync import Facts, Standby, Synchronizer, standby_names, synchronous_setting
from jitaku.ha.witness import Answer, Seen
from jitaku.health.replication import (
    LAG_BYTES_WARNING,
    LAG_SECONDS_WARNING,
    LOST_AT,
    carried_lost_at,
    check,
    on_standby,
)
from jitaku.health.result import State
from jitaku.provision import TEMPLATE

PATH = Path("/etc/jitaku/jitaku.toml")
NOW = 1_800_000_000.0
STREAMING = Standby("standby1", "streaming", "sync", 0, 1000)
GONE = Standby("standby1", "", "", -1, -1)


@pytest.mark.parametrize(
    ("setting", "names"),
    [
        ("", ()),
        ('FIRST 1 ("standby1")', ("standby1",)),
        ('first 1 ("a", "b")', ("a", "b")),
        ("ANY 1 (a, b)", ("a", "b")),
        ("2 (a, b)", ("a", "b")),
        ("a, b", ("a", "b")),
        ('"we""ird"', ('we"ird',)),
        ("*", ("*",)),
    ],
)
def test_the_names_postgresql_may_hold_are_read(setting: str, names: tuple[str, ...]) -> None:
    assert standby_names(setting) == names


def test_what_it_writes_it_reads_back() -> None:
    assert synchronous_setting(("standby1",)) == 'FIRST 1 ("standby1")'
    assert standby_names(synchronous_setting(("a", 'b"c'))) == ("a", 'b"c')


def test_synchronous_with_the_standby_streaming_is_ok_and_rpo_0() -> None:
    result = check(Facts(False, ("standby1",), (STREAMING,)), 10, NOW)
    assert result.state == State.OK and result.watching
    assert result.sentence == (
        "replication to standby1 is synchronous: every acknowledged write is on both machines (RPO 0)."
    )


def test_synchronous_with_the_standby_gone_warns_that_commits_wait() -> None:
    result = check(Facts(False, ("standby1",), (GONE,)), 10, NOW)
    assert result.state == State.WARNING
    assert "commits wait for it, up to [ha] sync_timeout (10 s)" in result.sentence


def test_asynchronous_for_want_of_the_standby_is_critical_and_says_since_when() -> None:
    result = check(Facts(False, (), (GONE,)), 3, NOW, lost_at=NOW - 12)
    assert result.state == State.CRITICAL
    assert result.sentence == (
        "standby standby1 unreachable for 12 s: replication is asynchronous, writes since then exist only here "
        "(RPO > 0)."
    )
    assert carried_lost_at(result) == NOW - 12  # what `jitaku check` beside the daemon reads back
    assert result.ja


def test_a_standby_catching_up_is_still_rpo_above_0() -> None:
    catching_up = Standby("standby1", "catchup", "async", 5000, 10)
    result = check(Facts(False, (), (catching_up,)), 3, NOW)
    assert result.state == State.CRITICAL and LOST_AT not in result.metrics
    assert result.sentence.startswith("standby standby1 is catching up (5000 bytes behind)")
    assert "(RPO > 0)" in result.sentence


def test_without_a_standby_or_on_one_it_is_not_watching() -> None:
    for facts in (Facts(False, (), ()), Facts(True, (), ())):
        result = check(facts, 10, NOW)
        assert result.state == State.OK and not result.watching
    assert "no standby is set up" in check(Facts(False, (), ()), 10, NOW).sentence


def test_a_recovered_result_carries_no_loss() -> None:
    assert carried_lost_at(check(Facts(False, ("standby1",), (STREAMING,)), 10, NOW)) is None


def test_sync_timeout_defaults_to_10_s_and_must_be_positive() -> None:
    assert parse('domains = ["example.org"]\n', PATH).ha.sync_timeout == 10
    assert parse('domains = ["example.org"]\n[ha]\nsync_timeout = 2.5\n', PATH).ha.sync_timeout == 2.5
    for value in ("0", "-1"):
        with pytest.raises(ConfigError, match="jitaku.toml:3: .*greater than 0"):
            parse(f'domains = ["example.org"]\n[ha]\nsync_timeout = {value}\n', PATH)


def test_the_template_documents_it() -> None:
    assert "# sync_timeout = 10 " in TEMPLATE


def test_a_slot_nobody_uses_that_holds_much_wal_is_a_warning_even_when_synchronous() -> None:
    orphan = Standby("old_box", "", "", -1, -1, 3 << 30)
    result = check(Facts(False, ("standby1",), (STREAMING, orphan)), 10, NOW)
    assert result.state == State.WARNING
    assert "slot old_box, with no standby connected, holds 3072 MB of WAL here" in result.sentence
    small = Standby("old_box", "", "", -1, -1, 1 << 20)
    assert check(Facts(False, ("standby1",), (STREAMING, small)), 10, NOW).state == State.OK


def test_a_lost_standby_says_how_much_wal_its_slot_holds() -> None:
    held = Standby("standby1", "", "", -1, -1, 5 << 20)
    result = check(Facts(False, (), (held,)), 3, NOW, lost_at=NOW - 12)
    assert "its slot holds 5 MB of WAL here" in result.sentence


def _standby_status(lag_bytes: int, lag_seconds: float) -> dict[str, object]:
    return {"peer": "192.0.2.1:5433", "sync_state": "streaming", "lag_bytes": lag_bytes, "lag_seconds": lag_seconds}


def test_a_standby_far_behind_in_bytes_warns_however_recent_its_last_replay() -> None:
    assert on_standby(_standby_status(0, 0.0)).state == State.OK
    assert on_standby(_standby_status(LAG_BYTES_WARNING + 1, 1.0)).state == State.WARNING
    assert on_standby(_standby_status(1000, LAG_SECONDS_WARNING + 1)).state == State.WARNING
    assert on_standby(_standby_status(1000, 1.0)).state == State.OK


def test_a_standby_is_caught_up_only_with_nothing_left_to_replay() -> None:
    """received == replayed is not enough: what it received may itself lag what its primary has."""
    row = ("streaming", "192.0.2.1", 5433, 1, "two", "0/3000000", "0/3000000", 4096, 42.0)
    found = _as_standby(row)
    assert found["lag_bytes"] == 4096 and found["lag_seconds"] == 42.0
    caught_up = ("streaming", "192.0.2.1", 5433, 1, "two", "0/3000000", "0/3000000", 0, 42.0)
    assert _as_standby(caught_up)["lag_seconds"] == 0.0


def test_a_standby_without_the_replication_secret_warns_that_it_copies_no_secret_files() -> None:
    without = on_standby(_standby_status(0, 0.0), secret=False)
    assert without.state == State.WARNING and "DIR/ha/replication.secret" in without.sentence


def test_a_primary_that_never_had_a_standby_says_none_and_one_whose_standby_is_gone_says_disconnected(
    tmp_path: Path,
) -> None:
    alone = Config(parse('domains = ["example.org"]\n', tmp_path / "jitaku.toml"), tmp_path)
    assert status.status(alone)["sync_state"] == "none"  # SQLite: one box
    assert status._as_primary([], [], 1)["sync_state"] == "none"
    gone = status._as_primary([], [("standby_two", 4096)], 2)
    assert (gone["sync_state"], gone["peer"], gone["lag_bytes"]) == ("disconnected", "standby_two", 4096)


def test_a_primarys_cluster_served_as_a_standby_is_not_judged_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fenced primary, or one waiting for its peer after a cold start, runs the standby's monitor: it receives
    nothing, and that is no news to alert about."""
    import asyncio

    from jitaku.config import Config
    from jitaku.ha import status
    from jitaku.health import checks

    config = Config(parse('domains = ["example.org"]\n', tmp_path / "jitaku.toml"), tmp_path)
    found = {**_standby_status(0, 0.0), "role": "primary", "sync_state": "disconnected"}
    monkeypatch.setattr(status, "status", lambda _config: found)
    context = checks.Context(config, None, standby=True)  # type: ignore[arg-type]
    assert asyncio.run(checks._replication(context)) is None
    found["role"] = "standby"
    result = asyncio.run(checks._replication(context))
    assert result is not None and result.state == State.CRITICAL  # a standby that receives nothing: alerted


SILENT = Answer(Seen.SILENT, "the witness w.example reaches none of 203.0.113.5:25")
ANSWERS = Answer(Seen.ANSWERS, "the witness w.example reaches 203.0.113.5:25")
UNKNOWN = Answer(Seen.UNKNOWN, "cannot ask the witness w.example: ConnectError")


class Primary:
    """A primary as its Synchronizer sees it, look by look, with the cluster and the witness stood in for: the
    standby (streaming, or GONE), the witness's answer; and what the Synchronizer did: the synchronous standbys it
    set (() turns replication asynchronous), its alerts, its asks of the witness."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, auto_after: float) -> None:
        text = (
            f'domains = ["example.org"]\n[ha]\nauto_after = {auto_after}\nsync_timeout = 10\n'
            'witness = "https://w.example"\nwitness_token = "0123456789abcdef"\nwitness_targets = ["203.0.113.5:25"]\n'
        )
        config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
        self.standby = STREAMING
        self.names: tuple[str, ...] = ("standby1",)
        self.seen = SILENT
        self.asked = 0
        self.applied: list[tuple[str, ...]] = []
        self.alerts: list[tuple[str, str, bool]] = []
        monkeypatch.setattr(sync, "connect", lambda config: object())
        monkeypatch.setattr(sync, "look", lambda connection: Facts(False, self.names, (self.standby,)))
        monkeypatch.setattr(sync, "apply", self._apply)
        monkeypatch.setattr(witness, "ask", self._ask)
        self.synchronizer = Synchronizer(
            config, lambda facts, wall, lost_at: check(facts, 10, wall, lost_at), None, self._alert
        )
        self._warn: asyncio.Task[None] | None = None

    def _apply(self, connection: object, names: tuple[str, ...]) -> None:
        self.applied.append(names)
        self.names = names

    async def _ask(self, config: Config) -> Answer:
        self.asked += 1
        return self.seen

    async def _alert(self, sentence: str, ja: str, over: bool) -> None:
        self.alerts.append((sentence, ja, over))

    async def ticks(self, *times: float) -> None:
        """A round at each of TIMES (seconds), and the alerts they called for raised."""
        if self._warn is None:
            self._warn = asyncio.create_task(self.synchronizer._warn())
        for now in times:
            await self.synchronizer.tick(now, NOW + now)
        for _ in range(10):
            await asyncio.sleep(0)


def test_a_primary_the_witness_sees_gives_its_silent_standby_up_after_sync_timeout(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The standby's own ask of the witness sees this box too: it holds back, and this primary may go on alone."""

    async def scenario() -> None:
        primary = Primary(monkeypatch, tmp_path, auto_after=60)
        primary.standby, primary.seen = GONE, ANSWERS
        await primary.ticks(0, 5)
        assert primary.applied == [] and primary.asked == 0  # within sync_timeout: commits wait, as always
        await primary.ticks(10)
        assert primary.applied == [()] and primary.asked == 1 and primary.alerts == []

    asyncio.run(scenario())


def test_a_primary_unseen_by_the_witness_stays_synchronous_and_alerts_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Cut off from its standby and from the outside: the standby may be promoting itself, so nothing is
    acknowledged here that it lacks; the witness is asked again every 10 s."""

    async def scenario() -> None:
        primary = Primary(monkeypatch, tmp_path, auto_after=60)
        primary.standby = GONE
        await primary.ticks(0, 10, 11, 15, 20, 25, 30, 41)
        assert primary.applied == [] and primary.asked == 4
        assert len(primary.alerts) == 1
        sentence, ja, over = primary.alerts[0]
        assert not over
        assert sentence.startswith(
            "this primary cannot see its standby standby1 (silent for 10 s) nor be seen by the witness (the witness "
            "w.example reaches none of 203.0.113.5:25): it keeps replication synchronous, and mail waits, since the "
            "standby may promote itself"
        )
        assert "同期のまま" in ja

    asyncio.run(scenario())


def test_a_witness_that_cannot_be_asked_keeps_replication_synchronous_too(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def scenario() -> None:
        primary = Primary(monkeypatch, tmp_path, auto_after=60)
        primary.standby, primary.seen = GONE, UNKNOWN
        await primary.ticks(0, 10, 20)
        assert primary.applied == [] and primary.asked == 2
        assert len(primary.alerts) == 1 and "cannot ask the witness w.example: ConnectError" in primary.alerts[0][0]

    asyncio.run(scenario())


def test_once_the_witness_sees_the_primary_again_replication_turns_asynchronous_and_the_alert_is_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def scenario() -> None:
        primary = Primary(monkeypatch, tmp_path, auto_after=60)
        primary.standby = GONE
        await primary.ticks(0, 10, 15)
        assert primary.applied == []
        primary.seen = ANSWERS
        await primary.ticks(20, 21)
        assert primary.applied == [()]
        assert [over for _, _, over in primary.alerts] == [False, True]
        assert primary.alerts[1][0].startswith("the witness sees this primary again")
        assert "replication to standby1 is asynchronous" in primary.alerts[1][0]

    asyncio.run(scenario())


def test_once_the_standby_keeps_up_again_replication_stays_synchronous_and_the_alert_is_over(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def scenario() -> None:
        primary = Primary(monkeypatch, tmp_path, auto_after=60)
        primary.standby = GONE
        await primary.ticks(0, 10, 15)
        primary.standby = STREAMING
        await primary.ticks(16, 30)
        assert primary.applied == [] and primary.asked == 1
        assert [over for _, _, over in primary.alerts] == [False, True]
        assert primary.alerts[1][0].startswith("standby standby1 keeps up again")
        primary.standby = GONE  # lost again later: a new hold, alerted anew
        await primary.ticks(40, 50)
        assert primary.applied == [] and len(primary.alerts) == 3 and primary.asked == 2

    asyncio.run(scenario())


def test_without_automatic_failover_a_silent_standby_is_given_up_after_sync_timeout_without_a_witness(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def scenario() -> None:
        primary = Primary(monkeypatch, tmp_path, auto_after=0)
        primary.standby = GONE
        await primary.ticks(0, 9)
        assert primary.applied == []
        await primary.ticks(10, 20)
        assert primary.applied == [()] and primary.asked == 0 and primary.alerts == []

    asyncio.run(scenario())
