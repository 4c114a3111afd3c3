"""The backups: backups that broke silently are the commonest complaint of a self-hosted mail server's owner, so
the age of the last good backup and of the last passed restore drill are judged against bounds, the last error is
said in one sentence, and a failed drill (a damaged pack) is critical and names the snapshot.

It reads DIR/backup/state.json, which the daemon's schedule and `jitaku backup now|verify` write (backup/state.py),
and runs no restic of its own: a check every minute must not take the repository's lock from a backup.
"""

from __future__ import annotations

from jitaku.backup.state import Backups
from jitaku.config import BackupCheckSettings, BackupSettings
from jitaku.health.result import Result, State
from jitaku.words import counted

CHECK = "backup"
HOUR = 3600.0


def check(settings: BackupCheckSettings, backup: BackupSettings, backups: Backups, now: float) -> Result | None:
    """None when [backup] has no target: nothing set up, nothing to judge."""
    if not backup.enabled:
        return None
    metrics = {"repository_bytes": float(backups.size)}
    if not backups.last_backup:
        if backups.backup_error:
            error = backups.backup_error.removesuffix(".")
            return Result(
                CHECK,
                State.CRITICAL,
                f"no backup was ever taken: the last try failed: {error}.",
                metrics,
                "backup failed",
                ja=f"バックアップが一度も取れていません。最後の試行は失敗しました: {error}。",
            )
        if backup.every:
            return Result(
                CHECK,
                State.OK,
                "no backup yet: the daemon takes the first one shortly.",
                {**metrics, "watching": False},
                ja="まだバックアップはありません。まもなくデーモンが最初のバックアップを取ります。",
            )
        return Result(
            CHECK,
            State.WARNING,
            "no backup yet, and [backup] every is 0: run `jitaku backup now`, or set every.",
            metrics,
            ja="まだバックアップはありません。[backup] every が 0 です。"
            "`jitaku backup now` を実行するか every を設定してください。",
        )
    age = (now - backups.last_backup) / HOUR
    metrics["backup_age_hours"] = round(age, 2)
    states = [_state(age, settings.warning_hours, settings.critical_hours)]
    said = [f"the last backup, {backups.snapshot}, was taken {_ago(age)}"]
    said_ja = [f"最後のバックアップ {backups.snapshot} は{_ago_ja(age)}に取られました"]
    if backups.last_verify:
        verify_age = (now - backups.last_verify) / HOUR
        metrics["verify_age_hours"] = round(verify_age, 2)
        said.append(f"the last restore drill passed {_ago(verify_age)}")
        said_ja.append(f"最後のリストア検証は{_ago_ja(verify_age)}に成功しました")
    else:  # never verified: judged from the first backup, which has waited for its drill as long
        verify_age = (now - backups.first_backup) / HOUR
        said.append("no restore drill has passed yet")
        said_ja.append("リストア検証はまだ成功していません")
    states.append(_state(verify_age, settings.verify_warning_hours, settings.verify_critical_hours))
    if backups.size:
        said.append(f"the repository holds {_size(backups.size)}")
        said_ja.append(f"リポジトリは {_size(backups.size)} です")
    detail = ""
    if backups.backup_error and backups.backup_tried > backups.last_backup:
        error = backups.backup_error.removesuffix(".")
        said.insert(0, f"the last backup failed: {error}")
        said_ja.insert(0, f"最後のバックアップは失敗しました: {error}")
        states.append(State.WARNING)
        detail = "backup failed"
    if backups.verify_error and backups.verify_tried > backups.last_verify:
        error = backups.verify_error.removesuffix(".")  # "snapshot ID failed verification: why"
        said.insert(0, error)
        said_ja.insert(0, f"リストア検証に失敗しました: {error}")
        states.append(State.CRITICAL)
        detail = "verify failed"
    return Result(CHECK, max(states), "; ".join(said) + ".", metrics, detail, ja="。".join(said_ja) + "。")


def _state(hours: float, warning: float, critical: float) -> State:
    return State.CRITICAL if hours >= critical else State.WARNING if hours >= warning else State.OK


def _ago(hours: float) -> str:
    if hours < 1:
        return f"{counted(max(hours * 60, 0), 'minute')} ago"
    if hours < 48:
        return f"{counted(hours, 'hour')} ago"
    return f"{counted(hours / 24, 'day')} ago"


def _ago_ja(hours: float) -> str:
    if hours < 1:
        return f" {max(hours * 60, 0):.0f} 分前"
    if hours < 48:
        return f" {hours:.0f} 時間前"
    return f" {hours / 24:.0f} 日前"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"
