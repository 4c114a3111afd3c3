"""Is each [[ddns]] record what the world should see? Read from the updater's last round, which compares
our public address with the zone's authoritative servers (the story's power cut: DNS kept the old address
and nobody outside could reach us until morning)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from jitaku.config import Settings
from jitaku.health.result import Result, State
from jitaku.store.ddns import State as RecordState
from jitaku.words import counted

STALE_ROUNDS = 10  # rounds the updater may miss before its silence is news in itself


class Verdict(NamedTuple):
    """One record's state, said in English and in Japanese side by side so that both name the same facts."""

    state: State
    sentence: str
    ja: str


def _judge(label: str, state: RecordState | None, now: float, stale_after: float) -> Verdict:
    if state is None or state.address_at is None:
        return Verdict(State.WARNING, f"{label} has not been checked yet", f"{label} はまだ確認されていません")
    if now - state.address_at > stale_after:
        minutes = int(now - state.address_at) // 60
        return Verdict(
            State.WARNING,
            f"the updater has not checked {label} for {counted(minutes, 'minute')}",
            f"DDNS の更新処理が {label} を {minutes} 分間確認していません",
        )
    if state.fatal:
        mend = "mend [[ddns]] or run `jitaku ddns update --force`"
        mend_ja = "[[ddns]] を直すか、`jitaku ddns update --force` を実行してください"
        return Verdict(
            State.CRITICAL,
            f"{label} is no longer updated: {state.error}; {mend}",
            f"{label} はもう更新されていません: {state.error}。{mend_ja}",
        )
    if state.seen_right is False:
        answer = f"DNS answers {state.published or 'nothing'} for {label}, but we are at {state.address}"
        answer_ja = (
            f"{label} の DNS の答えは {state.published or 'なし'} ですが、このサーバーのアドレスは {state.address} です"
        )
        why, why_ja = (f" ({state.error})", f"（{state.error}）") if state.error else ("", "")
        return Verdict(State.CRITICAL, answer + why, answer_ja + why_ja)
    if state.error:
        return Verdict(State.WARNING, f"{label}: {state.error}", f"{label}: {state.error}")
    return Verdict(State.OK, f"{label} points at {state.address}", f"{label} は {state.address} を指しています")


def check(settings: Settings, states: Sequence[RecordState], now: float) -> Result | None:
    if not settings.ddns:
        return None
    known = {(state.name, state.family): state for state in states}
    stale_after = max(STALE_ROUNDS * settings.public_ip.interval, 600.0)
    verdicts = [
        _judge(f"{record.name} (IPv{family})", known.get((record.name, family)), now, stale_after)
        for record in settings.ddns
        for family, wanted in ((4, record.ipv4), (6, record.ipv6))
        if wanted
    ]
    state = max(verdict.state for verdict in verdicts)
    shown = [verdict for verdict in verdicts if verdict.state == state] if state else verdicts
    wrong = sum(1 for verdict in verdicts if verdict.state)
    return Result(
        "ddns",
        state,
        "; ".join(verdict.sentence for verdict in shown) + ".",
        {"records": float(len(verdicts)), "wrong": float(wrong)},
        ja="".join(f"{verdict.ja}。" for verdict in shown),
    )
