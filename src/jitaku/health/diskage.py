"""Disks die of age: in the story they reliably went after about two years of 24x7. Warn before the end
of the expected service life, with a date to replace the disk by."""

from __future__ import annotations

import time

from jitaku.config import DiskAgeCheckSettings
from jitaku.health.result import Result, State, not_watching
from jitaku.health.smartctl import Drive
from jitaku.words import counted

HOURS_PER_YEAR = 8766.0


def check(settings: DiskAgeCheckSettings, drives: list[Drive], now: float) -> Result:
    aged = [drive for drive in drives if drive.power_on_hours is not None]
    if not aged:
        return not_watching("diskage", "no disk tells its power-on hours", "稼働時間を報告するディスクがありません")
    life = settings.service_life_hours
    warnings, warnings_ja, fine, fine_ja = [], [], [], []
    for drive in aged:
        hours = drive.power_on_hours or 0
        left = life - hours
        years = f"{hours / HOURS_PER_YEAR:.1f} years"
        years_ja = f"{hours / HOURS_PER_YEAR:.1f} 年"
        if left <= 0:
            past = f"({hours:,} of {life:,.0f} hours)"
            warnings.append(f"{drive} is past its expected service life {past}; replace it soon")
            warnings_ja.append(
                f"{drive.ja} は想定寿命を過ぎています（稼働 {hours:,} 時間、想定 {life:,.0f} 時間）。"
                "早めに交換してください"
            )
        elif left <= settings.warn_days * 24:
            by = time.strftime("%Y-%m-%d", time.gmtime(now + left * 3600))
            warnings.append(
                f"{drive} has run {counted(hours, 'hour')} ({years}) of an expected {life:,.0f}; replace it by {by}"
            )
            warnings_ja.append(
                f"{drive.ja} は想定 {life:,.0f} 時間のうち {hours:,} 時間（{years_ja}）稼働しました。"
                f"{by} までに交換してください"
            )
        else:
            fine.append(f"{drive.name} {years}")
            fine_ja.append(f"{drive.name} {years_ja}")
    metrics = {f"{drive.name}.hours": float(drive.power_on_hours or 0) for drive in aged}
    if warnings:
        return Result("diskage", State.WARNING, "; ".join(warnings) + ".", metrics, ja="。".join(warnings_ja) + "。")
    expected = f"{life / HOURS_PER_YEAR:.1f} years"
    return Result(
        "diskage",
        State.OK,
        f"every disk is within its expected {expected}: {', '.join(fine)}.",
        metrics,
        ja=f"すべてのディスクが想定寿命 {life / HOURS_PER_YEAR:.1f} 年の範囲内です: {'、'.join(fine_ja)}。",
    )
