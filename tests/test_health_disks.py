"""The smart and diskage checks, reading smartctl JSON through a fake smartctl that serves fixtures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from jitaku.config import DiskAgeCheckSettings, SmartCheckSettings
from jitaku.health import diskage, smart, smartctl
from jitaku.health.disks import Disk, with_smart
from jitaku.health.result import State

FAKE = Path(__file__).parent / "fixtures" / "smartctl" / "fake_smartctl.py"
NOW = 1_795_000_000.0  # 2026-11-18


class Disks:
    """A fake smartctl whose disks the test sets: device -> fixture name."""

    def __init__(self, directory: Path) -> None:
        self.map = directory / "devices.json"
        self.path = directory / "smartctl"
        self.path.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} {self.map} "$@"\n')
        self.path.chmod(0o755)

    def set(self, **devices: str) -> None:
        self.map.write_text(json.dumps({f"/dev/{name}": fixture for name, fixture in devices.items()}))

    def read(self, *devices: str) -> list[smartctl.Drive]:
        return smartctl.drives(SmartCheckSettings(smartctl=str(self.path), devices=devices))


@pytest.fixture
def disks(tmp_path: Path) -> Disks:
    return Disks(tmp_path)


def test_readings_from_smartctl_json(disks: Disks) -> None:
    disks.set(sda="healthy", nvme0="nvme", sdc="failing")
    sda, nvme0, sdc = disks.read()  # found by --scan
    assert (sda.model, sda.serial, sda.reallocated, sda.pending, sda.temperature, sda.power_on_hours) == (
        "WDC WD10EZEX-08WN4A0",
        "WD-WCC6Y1KX0001",
        0,
        0,
        34,
        12034,
    )
    assert (nvme0.media_errors, nvme0.power_on_hours, nvme0.reallocated) == (0, 8123, None)
    assert sdc.passed is False and sdc.reallocated == 1824 and str(sdc) == "sdc (ST1000DM010-2EP102 serial Z9A1B2C3)"
    (missing,) = disks.read("/dev/sdz")
    assert missing.error == "/dev/sdz: No such device"


def test_healthy_disks_are_ok_with_their_temperatures(disks: Disks) -> None:
    disks.set(sda="healthy", nvme0="nvme")
    result = smart.check(SmartCheckSettings(), disks.read(), {})
    assert result is not None and result.state == State.OK
    assert result.sentence == "every disk passes SMART: sda at 34 °C, nvme0 at 38 °C."
    assert result.ja == "すべてのディスクの SMART に異常はありません: sda（34 °C）、nvme0（38 °C）。"
    assert result.metrics["sda.temperature"] == 34.0 and result.metrics["nvme0.media_errors"] == 0.0


def test_reallocated_sectors_warn_at_once_and_again_when_they_grow(disks: Disks) -> None:
    disks.set(sda="healthy", sdb="healthy")
    first = smart.check(SmartCheckSettings(), disks.read(), {})
    assert first is not None and first.state == State.OK
    disks.set(sda="healthy", sdb="reallocating")
    grown = smart.check(SmartCheckSettings(), disks.read(), first.metrics)
    assert grown is not None and grown.state == State.WARNING
    assert grown.sentence == (
        "sdb (WDC WD10EZEX-08WN4A0 serial WD-WCC6Y1KX0002) is wearing out: 8 reallocated sectors (up from 0), "
        "2 pending sectors (up from 0); plan to replace it."
    )
    assert grown.ja == (
        "sdb (WDC WD10EZEX-08WN4A0 シリアル WD-WCC6Y1KX0002) が劣化しています: "
        "代替処理済みのセクタが 8 個（前回の 0 から増加）、代替処理保留中のセクタが 2 個（前回の 0 から増加）。"
        "交換の準備をしてください。"
    )
    steady = smart.check(SmartCheckSettings(), disks.read(), grown.metrics)
    assert steady is not None and steady.detail == grown.detail  # the same news is not news again
    assert "up from" not in steady.sentence and "前回" not in steady.ja and "代替処理済みのセクタが 8 個" in steady.ja


def test_a_failed_self_assessment_is_critical(disks: Disks) -> None:
    disks.set(sda="healthy", sdc="failing")
    result = smart.check(SmartCheckSettings(), disks.read(), {})
    assert result is not None and result.state == State.CRITICAL
    assert result.sentence == (
        "sdc (ST1000DM010-2EP102 serial Z9A1B2C3) fails its SMART self-assessment: "
        "copy what matters off it and replace it now."
    )
    assert result.ja.startswith("sdc (ST1000DM010-2EP102 シリアル Z9A1B2C3) が SMART の自己診断で不合格です: ")


def test_no_disks_is_ok_and_says_it_is_not_watching(disks: Disks) -> None:
    disks.set()
    found = smart.check(SmartCheckSettings(smartctl="smartctl"), disks.read(), {})
    assert (found.state, found.sentence, found.metrics) == (
        State.OK,
        "not watching: smartctl finds no disk.",
        {"watching": False},
    )
    assert found.ja == "監視していません: smartctl がディスクを見つけられません。"
    aged = diskage.check(DiskAgeCheckSettings(), [], NOW)
    assert (aged.state, aged.sentence, aged.watching) == (
        State.OK,
        "not watching: no disk tells its power-on hours.",
        False,
    )


def test_without_smartctl_disks_that_keep_smart_are_a_warning_and_none_a_note(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent")
    with pytest.raises(smartctl.SmartctlMissing, match="apt install smartmontools") as missing:
        smartctl.drives(SmartCheckSettings(smartctl=absent))
    unwatched = smart.without_smartctl(missing.value, ["sda", "sdb"])
    assert (unwatched.state, unwatched.metrics) == (State.WARNING, {"watching": False})
    assert unwatched.sentence == (
        f"{absent} is not installed (Debian: apt install smartmontools): the SMART of sda, sdb is not watched."
    )
    assert unwatched.ja == (
        f"{absent} がインストールされていません（Debian では apt install smartmontools）。"
        "sda、sdb の SMART を監視できていません。"
    )
    virtual = smart.without_smartctl(missing.value, [])
    assert (virtual.state, virtual.metrics) == (State.OK, {"watching": False})
    assert virtual.sentence == (
        f"not watching: {absent} is not installed (Debian: apt install smartmontools), and no disk here keeps SMART."
    )


def test_the_disks_that_keep_smart_are_those_smartctl_scans_for() -> None:
    known = {
        name: Disk(name)
        for name in ("sda", "sdab", "hdb", "nvme0n1", "vda", "xvda", "zram0", "loop3", "mmcblk0", "sr0")
    }
    known["sda3"] = known["md1"] = Disk("sda")  # a partition and an array on it are the disk's
    assert with_smart(known) == ["hdb", "nvme0n1", "sda", "sdab"]


def test_smartctl_is_found_in_sbin_beyond_a_users_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    (sbin / "smartctl").write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE} {tmp_path / "devices.json"} "$@"\n')
    (sbin / "smartctl").chmod(0o755)
    (tmp_path / "devices.json").write_text(json.dumps({"/dev/sda": "healthy"}))
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    monkeypatch.setattr(smartctl, "SBIN", str(sbin))
    assert smartctl.locate("smartctl") == str(sbin / "smartctl")
    (found,) = smartctl.drives(SmartCheckSettings(smartctl="smartctl"))
    assert (found.device, found.error) == ("/dev/sda", None)


def test_disk_age_warns_before_the_end_of_service_life_with_a_date(disks: Disks) -> None:
    disks.set(sda="healthy", sdb="reallocating", sdd="old", sdc="failing")
    result = diskage.check(DiskAgeCheckSettings(), disks.read(), NOW)
    assert result is not None and result.state == State.WARNING
    assert result.sentence == (
        "sdb (WDC WD10EZEX-08WN4A0 serial WD-WCC6Y1KX0002) has run 16,950 hours (1.9 years) of an expected 17,520; "
        "replace it by 2026-12-12; "
        "sdd (ST2000DM008-2FR102 serial ZFL0AB12) has run 17,100 hours (2.0 years) of an expected 17,520; "
        "replace it by 2026-12-05; "
        "sdc (ST1000DM010-2EP102 serial Z9A1B2C3) is past its expected service life (21,833 of 17,520 hours); "
        "replace it soon."
    )
    assert result.ja == (
        "sdb (WDC WD10EZEX-08WN4A0 シリアル WD-WCC6Y1KX0002) は想定 17,520 時間のうち 16,950 時間（1.9 年）稼働しました。"
        "2026-12-12 までに交換してください。"
        "sdd (ST2000DM008-2FR102 シリアル ZFL0AB12) は想定 17,520 時間のうち 17,100 時間（2.0 年）稼働しました。"
        "2026-12-05 までに交換してください。"
        "sdc (ST1000DM010-2EP102 シリアル Z9A1B2C3) は想定寿命を過ぎています（稼働 21,833 時間、想定 17,520 時間）。"
        "早めに交換してください。"
    )
    young = diskage.check(DiskAgeCheckSettings(), disks.read("/dev/sda"), NOW)
    assert young is not None and young.state == State.OK
    assert young.sentence == "every disk is within its expected 2.0 years: sda 1.4 years."
    assert young.ja == "すべてのディスクが想定寿命 2.0 年の範囲内です: sda 1.4 年。"


@pytest.mark.parametrize("fixture", sorted(path.stem for path in FAKE.parent.glob("*.json")))
def test_every_smartctl_reading_is_said_in_japanese_too(fixture: str, disks: Disks) -> None:
    disks.set(sda=fixture)
    for result in (
        smart.check(SmartCheckSettings(), disks.read(), {}),
        diskage.check(DiskAgeCheckSettings(), disks.read(), NOW),
    ):
        assert result is not None and result.ja.endswith("。") and result.ja != result.sentence


def test_a_disk_smartctl_cannot_read_is_said_in_japanese_too(disks: Disks) -> None:
    disks.set()
    result = smart.check(SmartCheckSettings(), disks.read("/dev/sdz"), {})
    assert result is not None and result.state == State.WARNING
    assert result.ja == "sdz の SMART を読めません: /dev/sdz: No such device。"
