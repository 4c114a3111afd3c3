"""What the replication check says in each state jitaku.ha.sync can find a primary in, and the names it reads
from and writes to synchronous_standby_names (the two clusters themselves: tests/integration/test_sync_replication)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitaku.config import Config, ConfigError, parse
from jitaku.ha import status
from jitaku.ha.status import _as_standby
from jitaku.ha.sync import Facts, Standby, standby_names, synchronous_setting
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
