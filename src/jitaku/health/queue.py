"""The outbound queue: mail that waits long is mail a remote server refuses or cannot be reached, or a
relayhost that stopped taking ours (the story's ISP closed port 25)."""

from __future__ import annotations

from jitaku.config import QueueCheckSettings
from jitaku.health.result import Result, State
from jitaku.store.queue import Backlog
from jitaku.words import counted


def _duration(seconds: float) -> tuple[str, str]:
    if seconds >= 7200:
        return counted(seconds / 3600, "hour"), f"{seconds / 3600:.0f} 時間"
    return counted(seconds / 60, "minute"), f"{seconds / 60:.0f} 分"


def check(settings: QueueCheckSettings, backlog: Backlog, now: float) -> Result:
    age = now - backlog.oldest_at if backlog.oldest_at is not None else 0.0
    metrics = {"size": float(backlog.size), "oldest_age": age}
    if not backlog.size:
        return Result("queue", State.OK, "the outbound queue is empty.", metrics, ja="送信キューは空です。")
    duration, duration_ja = _duration(age)
    waiting = f"{counted(backlog.size, 'message')} queued, the oldest for {duration}"
    waiting_ja = f"送信待ちのメールが {backlog.size} 通あり、最も古いものは {duration_ja}待っています"
    why, why_ja = (f" ({backlog.oldest_error})", f"（{backlog.oldest_error}）") if backlog.oldest_error else ("", "")
    if age >= settings.critical_age:
        return Result("queue", State.CRITICAL, f"{waiting}{why}.", metrics, ja=f"{waiting_ja}{why_ja}。")
    if age >= settings.warning_age or backlog.size >= settings.warning_size:
        return Result("queue", State.WARNING, f"{waiting}{why}.", metrics, ja=f"{waiting_ja}{why_ja}。")
    return Result("queue", State.OK, f"{waiting}.", metrics, ja=f"{waiting_ja}。")
