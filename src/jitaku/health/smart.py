"""SMART: a disk that starts reallocating sectors is telling us it will die; say so at the first one,
and again each time the count changes. A failed self-assessment is critical. CRC errors (199) are
graphed, not alerted: they count cable trouble, which comes and goes."""

from __future__ import annotations

from jitaku.config import SmartCheckSettings
from jitaku.health.result import Result, State
from jitaku.health.smartctl import Drive

TEMPERATURE_WARNING = 55.0  # °C; desktop disks are specified to 55-60
WEAR = (  # (attribute, words): non-zero is a warning, growth is news
    ("reallocated", "reallocated sectors"),
    ("pending", "pending sectors"),
    ("offline_uncorrectable", "offline uncorrectable sectors"),
    ("media_errors", "media errors"),
)


def _judge(drive: Drive, previous: dict[str, float]) -> tuple[State, str, list[str]]:
    if drive.error:
        return State.WARNING, f"cannot read SMART from {drive}: {drive.error}", []
    if drive.passed is False:
        advice = "copy what matters off it and replace it now"
        return State.CRITICAL, f"{drive} fails its SMART self-assessment: {advice}", []
    worn, news = [], []
    for attribute, words in WEAR:
        value = getattr(drive, attribute)
        if value:
            before = previous.get(f"{drive.name}.{attribute}")
            grew = before is not None and before < value
            worn.append(f"{value} {words}" + (f" (up from {before:.0f})" if grew else ""))
            news.append(f"{drive.name}.{attribute}={value}")
    if worn:
        return State.WARNING, f"{drive} is wearing out: {', '.join(worn)}; plan to replace it", news
    if drive.temperature is not None and drive.temperature > TEMPERATURE_WARNING:
        return State.WARNING, f"{drive} runs hot at {drive.temperature:.0f} °C", [f"{drive.name}.hot"]
    heat = f" at {drive.temperature:.0f} °C" if drive.temperature is not None else ""
    return State.OK, f"{drive.name}{heat}", []


def check(settings: SmartCheckSettings, drives: list[Drive], previous: dict[str, float]) -> Result | None:
    if not drives:
        return None
    judged = [_judge(drive, previous) for drive in drives]
    state = max(state for state, _sentence, _news in judged)
    if state == State.OK:
        sentence = "every disk passes SMART: " + ", ".join(sentence for _s, sentence, _n in judged)
    else:
        sentence = "; ".join(sentence for s, sentence, _n in judged if s != State.OK)
    metrics: dict[str, float] = {}
    for drive in drives:
        for attribute in ("reallocated", "pending", "offline_uncorrectable", "crc_errors", "media_errors"):
            value = getattr(drive, attribute)
            if value is not None:
                metrics[f"{drive.name}.{attribute}"] = float(value)
        if drive.temperature is not None:
            metrics[f"{drive.name}.temperature"] = float(drive.temperature)
    detail = ",".join(item for _s, _sentence, news in judged for item in news)
    return Result("smart", state, sentence + ".", metrics, detail)
