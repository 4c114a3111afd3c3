"""DIR/smart.json: what `jitaku smart collect` read as root, for a daemon that is not root; and what the smart
check says of readings that are old."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitaku.health import smart_readings
from jitaku.health.result import Result, State
from jitaku.health.smartctl import Drive

SDA = Drive("/dev/sda", model="WDC WD10EZEX", serial="WD-1", passed=True, reallocated=0, power_on_hours=12034)


def test_readings_come_back_as_they_were_written(tmp_path: Path) -> None:
    written = smart_readings.Readings([SDA, Drive("/dev/sdb", error="Permission denied")], 1_700_000_000.5)
    path = smart_readings.write(tmp_path, written)
    assert path == tmp_path / "smart.json" and path.stat().st_mode & 0o777 == 0o640
    assert smart_readings.read(tmp_path) == written
    missing = smart_readings.Readings([], 1_700_000_000.0, missing="smartctl")
    smart_readings.write(tmp_path, missing)
    assert smart_readings.read(tmp_path) == missing
    assert sorted(p.name for p in tmp_path.iterdir()) == ["smart.json"]  # no partial file left


def test_no_file_is_none_and_a_broken_one_says_what_writes_it_anew(tmp_path: Path) -> None:
    assert smart_readings.read(tmp_path) is None
    (tmp_path / "smart.json").write_text('{"taken": 1}\n')
    with pytest.raises(smart_readings.BrokenReadings) as broken:
        smart_readings.read(tmp_path)
    assert str(broken.value) == (
        f"cannot use {tmp_path / 'smart.json'} (KeyError: 'drives'); `jitaku smart collect` writes it anew"
    )


def test_readings_go_stale_after_three_intervals_or_half_an_hour() -> None:
    assert smart_readings.stale_after(60) == 1800
    assert smart_readings.stale_after(3600) == 3 * 3600


@pytest.mark.parametrize(
    ("age", "said", "said_ja"),
    [(1860, "31 minutes", "31分"), (3 * 3600 + 5, "3 hours", "3時間"), (5 * 86400, "5 days", "5日")],
)
def test_stale_readings_warn_naming_the_timer(age: float, said: str, said_ja: str) -> None:
    ok = Result("smart", State.OK, "every disk passes SMART: sda at 34 °C.", ja="異常なし。")
    stale = smart_readings.aged(ok, age)
    assert stale.state == State.WARNING
    assert stale.sentence == (
        f"the last SMART readings are {said} old: is jitaku-smart.timer running? (systemctl status"
        " jitaku-smart.timer); they said: every disk passes SMART: sda at 34 °C."
    )
    assert stale.ja.startswith(f"最後の SMART の読み取りは {said_ja}前です。")
    critical = Result("smart", State.CRITICAL, "sda fails its SMART self-assessment.")
    assert smart_readings.aged(critical, age).state == State.CRITICAL
