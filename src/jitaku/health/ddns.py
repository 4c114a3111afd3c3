"""Is each [[ddns]] record what the world should see? Read from the updater's last round, which compares
our public address with the zone's authoritative servers (the story's power cut: DNS kept the old address
and nobody outside could reach us until morning)."""

from __future__ import annotations

from collections.abc import Sequence

from jitaku.config import Settings
from jitaku.health.result import Result, State
from jitaku.store.ddns import State as RecordState

STALE_ROUNDS = 10  # rounds the updater may miss before its silence is news in itself


def _judge(label: str, state: RecordState | None, now: float, stale_after: float) -> tuple[State, str]:
    if state is None or state.address_at is None:
        return State.WARNING, f"{label} has not been checked yet"
    if now - state.address_at > stale_after:
        return State.WARNING, f"the updater has not checked {label} for {int(now - state.address_at) // 60} minutes"
    if state.fatal:
        mend = "mend [[ddns]] or run `jitaku ddns update --force`"
        return State.CRITICAL, f"{label} is no longer updated: {state.error}; {mend}"
    if state.seen_right is False:
        answer = f"DNS answers {state.published or 'nothing'} for {label}, but we are at {state.address}"
        return State.CRITICAL, answer + (f" ({state.error})" if state.error else "")
    if state.error:
        return State.WARNING, f"{label}: {state.error}"
    return State.OK, f"{label} points at {state.address}"


def check(settings: Settings, states: Sequence[RecordState], now: float) -> Result | None:
    if not settings.ddns:
        return None
    known = {(state.name, state.family): state for state in states}
    stale_after = max(STALE_ROUNDS * settings.public_ip.interval, 600.0)
    judged = [
        _judge(f"{record.name} (IPv{family})", known.get((record.name, family)), now, stale_after)
        for record in settings.ddns
        for family, wanted in ((4, record.ipv4), (6, record.ipv6))
        if wanted
    ]
    state = max(state for state, _sentence in judged)
    shown = [sentence for s, sentence in judged if s == state] if state else [sentence for _s, sentence in judged]
    wrong = sum(1 for s, _sentence in judged if s)
    return Result("ddns", state, "; ".join(shown) + ".", {"records": float(len(judged)), "wrong": float(wrong)})
