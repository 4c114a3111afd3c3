"""The raid check on /proc/mdstat in every documented state, naming disks through a fake lsblk."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitaku.config import RaidCheckSettings
from jitaku.health import raid
from jitaku.health.disks import parent_name
from jitaku.health.result import State

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def lsblk(tmp_path: Path) -> str:
    """An lsblk that answers with the fixture, whatever it is asked."""
    script = tmp_path / "lsblk"
    script.write_text(f"#!/bin/sh\ncat {FIXTURES / 'lsblk.json'}\n")
    script.chmod(0o755)
    return str(script)


def run(name: str, lsblk: str) -> raid.Result:
    return raid.check(RaidCheckSettings(mdstat=str(FIXTURES / "mdstat" / f"{name}.txt"), lsblk=lsblk))


@pytest.mark.parametrize(
    ("fixture", "state", "sentence"),
    [
        ("healthy_raid1", State.OK, "md1 (raid1) is healthy on sda3 sdb3. md0 (raid1) is healthy on sda1 sdb1."),
        ("healthy_raid5", State.OK, "md2 (raid5) is healthy on sda1 sdb1 sdc1 sdd1."),
        ("healthy_raid10", State.OK, "md3 (raid10) is healthy on sda2 sdb2 sdc2 sdd2."),
        (
            "failed_member",
            State.CRITICAL,
            "md1 is degraded: sdb3 failed (disk WDC WD10EZEX-08WN4A0 serial WD-WCC6Y1KX0002). The array runs on sda alone.",
        ),
        (
            "degraded_removed",
            State.CRITICAL,
            "md1 is degraded: 1 of 2 members are missing. The array runs on sda alone.",
        ),
        (
            "degraded_raid5",
            State.CRITICAL,
            "md2 is degraded: sdc1 failed (disk ST1000DM010-2EP102 serial Z9A1B2C3). The array runs on sda, sdb, sdd.",
        ),
        ("spare", State.OK, "md1 (raid1) is healthy on sda3 sdb3, spare sdc3."),
        (
            "recovering",
            State.WARNING,
            "md1 (raid1) is rebuilding onto sdc3: 27.5% done, about 83 minutes left at 138 MiB/s.",
        ),
        (
            "resyncing",
            State.WARNING,
            "md0 (raid1) is resyncing: 12.3% done, less than a minute left at 13 MiB/s.",
        ),
        (
            "checking",
            State.OK,
            "md1 (raid1) is healthy on sda3 sdb3; a check is running, 3.1% done, about 95 minutes left at 162 MiB/s.",
        ),
        ("inactive", State.CRITICAL, "md127 is inactive (members: sdb3)."),
        (
            "failed_replaced_by_spare",
            State.WARNING,
            "md1 (raid1) runs on a spare: sdb3 (disk WDC WD10EZEX-08WN4A0 serial WD-WCC6Y1KX0002) failed; "
            "remove it and add a new disk.",
        ),
    ],
)
def test_each_mdstat_state(fixture: str, state: State, sentence: str, lsblk: str) -> None:
    result = run(fixture, lsblk)
    assert result is not None
    assert (result.check, result.state, result.sentence) == ("raid", state, sentence)


def test_an_array_waiting_for_another_to_resync_is_not_news(lsblk: str, tmp_path: Path) -> None:
    waiting = (FIXTURES / "mdstat" / "resyncing.txt").read_text().replace("resync = 12.3%", "check = 12.3%")
    (tmp_path / "mdstat").write_text(waiting)
    result = raid.check(RaidCheckSettings(mdstat=str(tmp_path / "mdstat"), lsblk=lsblk))
    assert result is not None and result.state == State.OK
    assert "md1 (raid1) is healthy on sda3 sdb3 (resync=DELAYED: it waits for another array)." in result.sentence
    assert (
        "md1 (raid1) は sda3、sdb3 で正常に動いています（resync=DELAYED: 他のアレイの処理を待っています）。"
        in result.ja
    )
    assert "整合性チェックを実行中です: 12.3% 完了、残り 1 分未満" in result.ja


def test_the_japanese_sentence_names_the_same_arrays_disks_and_numbers(lsblk: str) -> None:
    failed = run("failed_member", lsblk)
    assert failed is not None and failed.said("ja") == failed.ja == (
        "md1 が縮退しています: sdb3 が故障しました（ディスク WDC WD10EZEX-08WN4A0 シリアル WD-WCC6Y1KX0002）。"
        "アレイは sda だけで動いています。"
    )
    raid5 = run("degraded_raid5", lsblk)
    assert raid5 is not None and raid5.ja.endswith("アレイは sda、sdb、sdd で動いています。")
    assert "sdc1 が故障しました（ディスク ST1000DM010-2EP102 シリアル Z9A1B2C3）" in raid5.ja
    removed = run("degraded_removed", lsblk)
    assert removed is not None and "メンバー 2 個のうち 1 個が欠けています" in removed.ja
    recovering = run("recovering", lsblk)
    assert recovering is not None and recovering.ja == (
        "md1 (raid1) は sdc3 への再構築中です: 27.5% 完了、残り約 83 分、速度 138 MiB/s。"
    )
    spare = run("failed_replaced_by_spare", lsblk)
    assert spare is not None and "スペアで動いています: sdb3 が故障しました（ディスク WDC" in spare.ja
    inactive = run("inactive", lsblk)
    assert inactive is not None and inactive.ja == "md127 は inactive のまま動いていません（メンバー: sdb3）。"


@pytest.mark.parametrize("fixture", sorted(path.stem for path in (FIXTURES / "mdstat").glob("*.txt")))
def test_every_mdstat_state_is_said_in_japanese_too(fixture: str, lsblk: str) -> None:
    result = run(fixture, lsblk)
    assert result.ja.endswith("。") and result.ja != result.sentence


def test_an_unreadable_mdstat_is_a_warning_in_both_languages(lsblk: str, tmp_path: Path) -> None:
    result = raid.check(RaidCheckSettings(mdstat=str(tmp_path), lsblk=lsblk))  # a directory: EISDIR
    assert result is not None and result.state == State.WARNING
    assert result.sentence == f"cannot read {tmp_path}: Is a directory"
    assert result.ja == f"{tmp_path} を読めません: Is a directory。"


def test_metrics_count_working_members_and_progress(lsblk: str) -> None:
    result = run("recovering", lsblk)
    assert result is not None
    assert result.metrics == {"md1.working": 1.0, "md1.wanted": 2.0, "md1.progress": 27.5}


def test_no_raid_here_is_ok_and_says_it_is_not_watching_and_why(lsblk: str, tmp_path: Path) -> None:
    empty = run("no_arrays", lsblk)
    assert (empty.state, empty.metrics, empty.watching) == (State.OK, {"watching": False}, False)
    assert empty.sentence == f"not watching: no md arrays in {FIXTURES / 'mdstat' / 'no_arrays.txt'}."
    assert empty.ja == f"監視していません: {FIXTURES / 'mdstat' / 'no_arrays.txt'} に md アレイがありません。"
    absent = raid.check(RaidCheckSettings(mdstat=str(tmp_path / "absent"), lsblk=lsblk))
    assert (absent.state, absent.metrics) == (State.OK, {"watching": False})
    assert absent.sentence == f"not watching: no md arrays ({tmp_path / 'absent'} does not exist)."
    assert run("healthy_raid1", lsblk).watching


def test_without_lsblk_the_disk_is_named_from_the_partition() -> None:
    result = raid.check(RaidCheckSettings(mdstat=str(FIXTURES / "mdstat" / "failed_member.txt"), lsblk="/nonexistent"))
    assert result is not None and "sdb3 failed (disk sdb)" in result.sentence
    assert "sdb3 が故障しました（ディスク sdb）" in result.ja
    assert [parent_name(d) for d in ("sdb3", "nvme0n1p2", "mmcblk0p1", "vda", "sdaa12")] == [
        "sdb",
        "nvme0n1",
        "mmcblk0",
        "vda",
        "sdaa",
    ]
