"""The daemon's backup schedule (when a backup and a restore drill are due, across restarts and failures; the
retention it asks restic for) and the `backup` health check's states and sentences (issue 26).
tests/integration/test_backup_schedule.py runs the schedule against real restic."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from jitaku.backup import child, schedule, snapshot, state
from jitaku.backup import restic as restic_module
from jitaku.backup.restic import Restic
from jitaku.backup.state import Backups
from jitaku.config import BackupCheckSettings, BackupSettings, Config, parse
from jitaku.errors import BackupError
from jitaku.health import backup as backup_check
from jitaku.health.checks import PRIMARY_ONLY
from jitaku.health.result import State
from jitaku.provision import TEMPLATE
from tests.peers import wait_until

HOUR = 3600.0
DAY = 24 * HOUR
NOW = 1_800_000_000.0
DAILY = BackupSettings(target="/mnt/backup/jitaku")  # every day, a drill every week
BOUNDS = BackupCheckSettings()


def test_a_restart_an_hour_after_a_backup_waits_out_the_day_and_a_week_off_backs_up_at_once() -> None:
    hour_ago = Backups().backed_up("a1b2c3d4", NOW - HOUR).verify_passed("a1b2c3d4", NOW - HOUR)
    assert schedule.backup_due(DAILY, hour_ago) == NOW + 23 * HOUR
    assert schedule.next_look(DAILY, hour_ago, NOW) == schedule.LOOK  # looked at again within the hour, no sooner
    week_ago = Backups().backed_up("a1b2c3d4", NOW - 7 * DAY)
    assert schedule.backup_due(DAILY, week_ago) == NOW - 6 * DAY  # due: the first look takes it
    assert schedule.next_look(DAILY, week_ago, NOW) == 1.0
    assert schedule.backup_due(DAILY, Backups()) <= NOW  # never: at once


def test_a_failed_backup_is_tried_again_after_a_while_not_at_once_nor_a_day_later() -> None:
    failed = Backups().backed_up("a1b2c3d4", NOW - 2 * DAY).backup_failed("the target is full", NOW)
    assert schedule.backup_due(DAILY, failed) == NOW + schedule.RETRY
    every_five = BackupSettings(target="/mnt/backup/jitaku", every=5)
    assert schedule.backup_due(every_five, failed) == NOW + 5
    recovered = failed.backed_up("e5f6a7b8", NOW + 10)
    assert schedule.backup_due(DAILY, recovered) == NOW + 10 + DAY and recovered.backup_error == ""


def test_the_drill_follows_the_first_backup_then_its_own_period_and_waits_for_a_backup() -> None:
    assert schedule.verify_due(DAILY, Backups()) is None  # nothing to verify yet
    backed_up = Backups().backed_up("a1b2c3d4", NOW - HOUR)
    assert schedule.verify_due(DAILY, backed_up) <= NOW  # never verified: at once
    verified = backed_up.verify_passed("a1b2c3d4", NOW)
    assert schedule.verify_due(DAILY, verified) == NOW + 7 * DAY
    failed = verified.verify_failed("snapshot a1b2c3d4 failed", NOW + DAY)
    assert schedule.verify_due(DAILY, failed) == NOW + DAY + HOUR  # again after a while, not a week later
    no_drill = BackupSettings(target="/mnt/backup/jitaku", verify_every=0)
    assert schedule.verify_due(no_drill, backed_up) is None
    manual = BackupSettings(target="/mnt/backup/jitaku", every=0)
    assert schedule.backup_due(manual, backed_up) is None


def test_the_retention_asks_restic_for_the_kept_periods_of_our_snapshots_only() -> None:
    assert schedule.retention(DAILY) == [
        "forget",
        "--json",
        "--prune",
        "--tag",
        "jitaku",
        "--keep-daily",
        "7",
        "--keep-weekly",
        "4",
        "--keep-monthly",
        "12",
    ]
    monthly = BackupSettings(target="x", keep_daily=0, keep_weekly=0, keep_monthly=24)
    assert schedule.retention(monthly)[-2:] == ["--keep-monthly", "24"] and "--keep-daily" not in schedule.retention(
        monthly
    )
    assert schedule.retention(BackupSettings(target="x", keep_daily=0, keep_weekly=0, keep_monthly=0)) == []


def test_the_state_survives_a_restart_and_a_file_that_does_not_read_is_none(tmp_path: Path) -> None:
    assert state.read(tmp_path) == Backups()
    state.update(tmp_path, lambda backups: backups.backed_up("a1b2c3d4", NOW))
    state.update(tmp_path, lambda backups: backups.verify_failed("snapshot a1b2c3d4 failed verification", NOW + 1))
    read = state.read(tmp_path)
    assert (read.snapshot, read.last_backup, read.first_backup) == ("a1b2c3d4", NOW, NOW)
    assert read.verify_error == "snapshot a1b2c3d4 failed verification"
    assert state.path(tmp_path).stat().st_mode & 0o777 == 0o600
    state.path(tmp_path).write_text("{not json")
    assert state.read(tmp_path) == Backups()


def test_no_backup_configured_is_no_result_and_a_standby_does_not_judge_one() -> None:
    assert backup_check.check(BOUNDS, BackupSettings(), Backups(), NOW) is None
    assert "backup" in PRIMARY_ONLY


def test_a_fresh_backup_and_drill_are_ok_with_both_ages_and_the_size() -> None:
    backups = Backups().backed_up("a1b2c3d4", NOW - 2 * HOUR).verify_passed("a1b2c3d4", NOW - 3 * DAY)
    backups = backups.__class__(**{**backups.__dict__, "size": 1_234_567_890})
    result = backup_check.check(BOUNDS, DAILY, backups, NOW)
    assert result is not None and result.state == State.OK
    assert result.sentence == (
        "the last backup, a1b2c3d4, was taken 2 hours ago; the last restore drill passed 3 days ago; "
        "the repository holds 1.2 GB."
    )
    assert result.ja == (
        "最後のバックアップ a1b2c3d4 は 2 時間前に取られました。最後のリストア検証は 3 日前に成功しました。"
        "リポジトリは 1.2 GB です。"
    )
    assert result.metrics == {"repository_bytes": 1_234_567_890, "backup_age_hours": 2.0, "verify_age_hours": 72.0}


def test_an_old_backup_warns_then_is_critical_by_the_bounds() -> None:
    verified = Backups().verify_passed("a1b2c3d4", NOW - HOUR)
    for age, expected in ((35, State.OK), (36, State.WARNING), (71, State.WARNING), (72, State.CRITICAL)):
        backups = verified.backed_up("a1b2c3d4", NOW - age * HOUR)
        result = backup_check.check(BOUNDS, DAILY, backups, NOW)
        assert result is not None and result.state == expected, age
    never_verified = Backups().backed_up("a1b2c3d4", NOW - 9 * DAY).backed_up("e5f6a7b8", NOW - HOUR)
    result = backup_check.check(BOUNDS, DAILY, never_verified, NOW)
    assert result is not None and result.state == State.WARNING
    assert "no restore drill has passed yet" in result.sentence


def test_a_failed_backup_warns_with_its_error_in_one_sentence() -> None:
    backups = Backups().backed_up("a1b2c3d4", NOW - 2 * HOUR).verify_passed("a1b2c3d4", NOW - HOUR)
    failed = backups.backup_failed("the backup target /mnt/backup is full (no space left on device).", NOW)
    result = backup_check.check(BOUNDS, DAILY, failed, NOW)
    assert result is not None and result.state == State.WARNING and result.detail == "backup failed"
    assert result.sentence.startswith(
        "the last backup failed: the backup target /mnt/backup is full (no space left on device); the last backup, "
        "a1b2c3d4, was taken 2 hours ago;"
    )
    never = backup_check.check(BOUNDS, DAILY, Backups().backup_failed("restic is not installed", NOW), NOW)
    assert never is not None and never.state == State.CRITICAL
    assert never.sentence == "no backup was ever taken: the last try failed: restic is not installed."


def test_a_failed_drill_is_critical_and_names_the_snapshot_until_one_passes() -> None:
    backups = Backups().backed_up("a1b2c3d4", NOW - HOUR).verify_passed("a1b2c3d4", NOW - DAY)
    error = (
        "snapshot a1b2c3d4 failed verification: restic restore could not read jitaku.db back from /mnt/b: ciphertext"
    )
    failed = backups.verify_failed(error, NOW)
    result = backup_check.check(BOUNDS, DAILY, failed, NOW)
    assert result is not None and result.state == State.CRITICAL and result.detail == "verify failed"
    assert result.sentence.startswith(error + "; the last backup, a1b2c3d4,")
    assert "a1b2c3d4" in result.ja
    passed = backup_check.check(BOUNDS, DAILY, failed.verify_passed("e5f6a7b8", NOW + 60), NOW + 60)
    assert passed is not None and passed.state == State.OK


def test_no_backup_yet_is_not_an_alarm_while_the_schedule_takes_the_first() -> None:
    result = backup_check.check(BOUNDS, DAILY, Backups(), NOW)
    assert result is not None and result.state == State.OK and not result.watching
    manual = backup_check.check(BOUNDS, BackupSettings(target="/mnt/b", every=0), Backups(), NOW)
    assert manual is not None and manual.state == State.WARNING and "jitaku backup now" in manual.sentence


def test_the_template_shows_the_check_bounds_at_their_defaults() -> None:
    block = TEMPLATE.split("# [health.backup]", 1)[1].split("\n\n", 1)[0].split("\n# [", 1)[0]
    lines = [line.removeprefix("# ").split("#")[0].strip() for line in block.splitlines()[1:]]
    shown = parse('domains = ["example.org"]\n[health.backup]\n' + "\n".join(lines), Path("/x/jitaku.toml"))
    assert shown.health.backup == BOUNDS
    assert (BOUNDS.warning_hours, BOUNDS.critical_hours) == (36, 72)


def test_a_stopping_daemon_kills_its_restic_rather_than_wait_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backup of hours must not hold the daemon's stop: restic killed lists no snapshot it did not finish."""
    monkeypatch.setattr(restic_module, "PROGRAM", "sleep")  # a restic that runs long: `sleep 60`
    monkeypatch.setattr(child, "_stopped", threading.Event())  # this test's stop, not the next test's
    failed: list[BaseException] = []

    def run() -> None:
        try:
            Restic(str(tmp_path / "repo"), tmp_path / "password", tmp_path / "cache").run("60")
        except BackupError as error:
            failed.append(error)

    thread = threading.Thread(target=run)
    began = time.monotonic()
    thread.start()
    wait_until(lambda: child._running, timeout=30)
    child.stop_all()
    thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - began < 30
    assert failed and not child._running


def test_a_failed_backup_is_recorded_but_the_clis_run_and_a_stop_are_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = 'domains = ["example.org"]\n[backup]\ntarget = "/mnt/backup/jitaku"\n'
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    stopping = threading.Event()

    def full(config: Config) -> snapshot.Taken:
        raise BackupError("the backup target /mnt/backup/jitaku is full (no space left on device): nothing was kept")

    monkeypatch.setattr(snapshot, "take", full)
    recorded = schedule.back_up(config, stopping)
    assert recorded.backup_error.startswith("the backup target /mnt/backup/jitaku is full")
    assert state.read(tmp_path) == recorded and recorded.last_backup == 0
    stopping.set()  # the daemon stops: restic killed says it failed, which is no news of the backups
    with pytest.raises(schedule.Stopped):
        schedule.back_up(config, stopping)

    def busy(config: Config) -> snapshot.Taken:
        raise snapshot.Busy("another backup or verify runs now")

    monkeypatch.setattr(snapshot, "take", busy)
    with pytest.raises(snapshot.Busy):
        schedule.back_up(config, threading.Event())
    assert state.read(tmp_path) == recorded
