"""SMART: a disk that starts reallocating sectors is telling us it will die; say so at the first one,
and again each time the count changes. A failed self-assessment is critical. CRC errors (199) are
graphed, not alerted: they count cable trouble, which comes and goes."""

from __future__ import annotations

from typing import NamedTuple

from jitaku.config import SmartCheckSettings
from jitaku.health.result import Result, State, not_watching
from jitaku.health.smartctl import Drive, SmartctlMissing

TEMPERATURE_WARNING = 55.0  # °C; desktop disks are specified to 55-60
WEAR = (  # (attribute, words, Japanese words for the count): non-zero is a warning, growth is news
    ("reallocated", "reallocated sectors", "代替処理済みのセクタが {} 個"),
    ("pending", "pending sectors", "代替処理保留中のセクタが {} 個"),
    ("offline_uncorrectable", "offline uncorrectable sectors", "オフラインで回復不能なセクタが {} 個"),
    ("media_errors", "media errors", "メディアエラーが {} 件"),
)


class Verdict(NamedTuple):
    """One disk's state, said in English and in Japanese side by side, and what in it is news."""

    state: State
    sentence: str
    ja: str
    news: list[str]


def _judge(drive: Drive, previous: dict[str, float]) -> Verdict:
    if drive.error:
        return Verdict(
            State.WARNING,
            f"cannot read SMART from {drive}: {drive.error}",
            f"{drive.ja} の SMART を読めません: {drive.error}",
            [],
        )
    if drive.passed is False:
        advice = "copy what matters off it and replace it now"
        advice_ja = "大事なデータを今すぐ別の場所へコピーし、ディスクを交換してください"
        return Verdict(
            State.CRITICAL,
            f"{drive} fails its SMART self-assessment: {advice}",
            f"{drive.ja} が SMART の自己診断で不合格です: {advice_ja}",
            [],
        )
    worn, worn_ja, news = [], [], []
    for attribute, words, words_ja in WEAR:
        value = getattr(drive, attribute)
        if value:
            before = previous.get(f"{drive.name}.{attribute}")
            grew = before is not None and before < value
            worn.append(f"{value} {words}" + (f" (up from {before:.0f})" if grew else ""))
            worn_ja.append(words_ja.format(value) + (f"（前回の {before:.0f} から増加）" if grew else ""))
            news.append(f"{drive.name}.{attribute}={value}")
    if worn:
        return Verdict(
            State.WARNING,
            f"{drive} is wearing out: {', '.join(worn)}; plan to replace it",
            f"{drive.ja} が劣化しています: {'、'.join(worn_ja)}。交換の準備をしてください",
            news,
        )
    if drive.temperature is not None and drive.temperature > TEMPERATURE_WARNING:
        return Verdict(
            State.WARNING,
            f"{drive} runs hot at {drive.temperature:.0f} °C",
            f"{drive.ja} の温度が {drive.temperature:.0f} °C と高くなっています",
            [f"{drive.name}.hot"],
        )
    heat, heat_ja = "", ""
    if drive.temperature is not None:
        heat, heat_ja = f" at {drive.temperature:.0f} °C", f"（{drive.temperature:.0f} °C）"
    return Verdict(State.OK, f"{drive.name}{heat}", f"{drive.name}{heat_ja}", [])


def without_smartctl(missing: SmartctlMissing, disks: list[str]) -> Result:
    """smartctl is missing: a warning that names the DISKS (configured, or found by lsblk) that go unwatched;
    with none, only a note."""
    if not disks:
        return not_watching(
            "smart", f"{missing}, and no disk here keeps SMART", f"{missing.ja}。SMART を持つディスクもありません"
        )
    names, names_ja = ", ".join(disks), "、".join(disks)
    return Result(
        "smart",
        State.WARNING,
        f"{missing}: the SMART of {names} is not watched.",
        {"watching": False},
        ja=f"{missing.ja}。{names_ja} の SMART を監視できていません。",
    )


def check(settings: SmartCheckSettings, drives: list[Drive], previous: dict[str, float]) -> Result:
    if not drives:
        program = settings.smartctl
        return not_watching("smart", f"{program} finds no disk", f"{program} がディスクを見つけられません")
    verdicts = [_judge(drive, previous) for drive in drives]
    state = max(verdict.state for verdict in verdicts)
    if state == State.OK:
        sentence = "every disk passes SMART: " + ", ".join(verdict.sentence for verdict in verdicts)
        ja = "すべてのディスクの SMART に異常はありません: " + "、".join(verdict.ja for verdict in verdicts)
    else:
        sentence = "; ".join(verdict.sentence for verdict in verdicts if verdict.state != State.OK)
        ja = "。".join(verdict.ja for verdict in verdicts if verdict.state != State.OK)
    metrics: dict[str, float] = {}
    for drive in drives:
        for attribute in ("reallocated", "pending", "offline_uncorrectable", "crc_errors", "media_errors"):
            value = getattr(drive, attribute)
            if value is not None:
                metrics[f"{drive.name}.{attribute}"] = float(value)
        if drive.temperature is not None:
            metrics[f"{drive.name}.temperature"] = float(drive.temperature)
    detail = ",".join(item for verdict in verdicts for item in verdict.news)
    return Result("smart", state, sentence + ".", metrics, detail, ja=ja + "。")
