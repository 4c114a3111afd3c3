"""Linux software RAID from /proc/mdstat: a degraded array is critical at once and names the failing
member's disk by model and serial (the story's RAID1 ran on one disk for two months, seen only on a boot
screen). A rebuild is a warning with its progress; a scrub (`check`) is normal."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from jitaku.config import RaidCheckSettings
from jitaku.health import disks
from jitaku.health.result import Result, State, not_watching
from jitaku.words import counted

REBUILDING = ("recovery", "resync", "reshape")
ACTIONS_JA = {
    "recovery": "再構築",
    "resync": "再同期",
    "reshape": "構成変更",
    "check": "整合性チェック",
    "repair": "修復",
}


class Verdict(NamedTuple):
    """One array's state, said in English and in Japanese side by side so that both name the same facts."""

    state: State
    sentence: str
    ja: str


@dataclass(frozen=True)
class Member:
    device: str
    slot: int
    failed: bool
    spare: bool


@dataclass(frozen=True)
class Progress:
    action: str  # recovery, resync, reshape, check, repair
    percent: float
    finish_minutes: float | None
    speed_kib: int | None


@dataclass(frozen=True)
class Array:
    name: str
    active: bool
    level: str
    members: tuple[Member, ...]
    wanted: int | None
    working: int | None
    progress: Progress | None
    pending: str | None  # "resync=DELAYED" and the like: waiting for another array

    @property
    def degraded(self) -> bool:
        return self.wanted is not None and self.working is not None and self.working < self.wanted

    @property
    def in_use(self) -> list[Member]:
        return [m for m in self.members if not m.failed and not m.spare]


_HEADER = re.compile(r"^(md\S*)\s*:\s*(\S+)(?:\s+\([^)]*\))?\s*(.*)$")
_MEMBER = re.compile(r"^(\S+?)\[(\d+)\]((?:\([A-Z]\))*)$")
_COUNTS = re.compile(r"\[(\d+)/(\d+)\]\s*\[[U_]+\]")
_PROGRESS = re.compile(
    r"(recovery|resync|reshape|check|repair)\s*=\s*([\d.]+)%"
    r"(?:.*?finish=([\d.]+)min)?(?:.*?speed=(\d+)K/sec)?"
)
_PENDING = re.compile(r"\b(resync|recovery|reshape|check)=(DELAYED|PENDING)\b")


def parse(text: str) -> list[Array]:
    arrays: list[Array] = []
    block: list[str] = []
    for line in text.splitlines() + [""]:
        if _HEADER.match(line) or not line.strip() or line.startswith(("Personalities", "unused devices")):
            if block:
                arrays.append(_array(block))
            block = [line] if _HEADER.match(line) else []
        elif block:
            block.append(line)
    return arrays


def _array(lines: list[str]) -> Array:
    header = _HEADER.match(lines[0])
    assert header is not None
    name, status, rest = header.groups()
    words = rest.split()
    level = words[0] if words and not _MEMBER.match(words[0]) else ""
    members = []
    for word in words[1:] if level else words:
        found = _MEMBER.match(word)
        if found:
            flags = found.group(3)
            members.append(Member(found.group(1), int(found.group(2)), "(F)" in flags, "(S)" in flags))
    body = " ".join(lines[1:])
    counts = _COUNTS.search(body)
    progress = _PROGRESS.search(body)
    pending = _PENDING.search(body)
    return Array(
        name=name,
        active=status == "active",
        level=level,
        members=tuple(sorted(members, key=lambda m: m.slot)),
        wanted=int(counts.group(1)) if counts else None,
        working=int(counts.group(2)) if counts else None,
        progress=Progress(
            progress.group(1),
            float(progress.group(2)),
            float(progress.group(3)) if progress.group(3) else None,
            int(progress.group(4)) if progress.group(4) else None,
        )
        if progress
        else None,
        pending=pending.group(0) if pending else None,
    )


def _eta(progress: Progress) -> tuple[str, str]:
    text, ja = f"{progress.percent:g}% done", f"{progress.percent:g}% 完了"
    if progress.finish_minutes is not None:
        minutes = progress.finish_minutes
        text += f", about {counted(minutes, 'minute')} left" if minutes >= 1 else ", less than a minute left"
        ja += f"、残り約 {minutes:.0f} 分" if minutes >= 1 else "、残り 1 分未満"
    if progress.speed_kib is not None:
        text += f" at {progress.speed_kib / 1024:.0f} MiB/s"
        ja += f"、速度 {progress.speed_kib / 1024:.0f} MiB/s"
    return text, ja


def _judge(array: Array, known: dict[str, disks.Disk]) -> Verdict:
    def disk(device: str) -> disks.Disk:
        return disks.disk_of(device, known)

    label = f"{array.name} ({array.level})" if array.level else array.name
    if not array.active:
        members = [m.device for m in array.members]
        return Verdict(
            State.CRITICAL,
            f"{array.name} is inactive (members: {', '.join(members)})",
            f"{array.name} は inactive のまま動いていません（メンバー: {'、'.join(members)}）",
        )
    rebuilding = array.progress is not None and array.progress.action in REBUILDING
    if array.degraded and not rebuilding:
        failed = [m for m in array.members if m.failed]
        missing = (array.wanted or 0) - (array.working or 0)
        if failed:
            why = ", ".join(f"{m.device} failed ({disk(m.device)})" for m in failed)
            why_ja = "、".join(f"{m.device} が故障しました（{disk(m.device).ja}）" for m in failed)
        else:
            why = f"{missing} of {array.wanted} members are missing"
            why_ja = f"メンバー {array.wanted} 個のうち {missing} 個が欠けています"
        survivors = sorted({disk(m.device).name for m in array.in_use})
        alone = len(survivors) == 1
        runs_on = ", ".join(survivors) + (" alone" if alone else "")
        runs_on_ja = "、".join(survivors) + (" だけで" if alone else " で")
        return Verdict(
            State.CRITICAL,
            f"{array.name} is degraded: {why}. The array runs on {runs_on}",
            f"{array.name} が縮退しています: {why_ja}。アレイは {runs_on_ja}動いています",
        )
    if rebuilding and array.progress is not None:
        action = {"recovery": "rebuilding", "resync": "resyncing", "reshape": "reshaping"}[array.progress.action]
        target = [m.device for m in array.in_use if array.progress.action == "recovery"]
        onto, onto_ja = (f" onto {target[-1]}", f" {target[-1]} への") if target and array.degraded else ("", "")
        eta, eta_ja = _eta(array.progress)
        return Verdict(
            State.WARNING,
            f"{label} is {action}{onto}: {eta}",
            f"{label} は{onto_ja}{ACTIONS_JA[array.progress.action]}中です: {eta_ja}",
        )
    failed = [m for m in array.members if m.failed]
    if failed:  # a spare took its place; the dead disk is still in the array, and there is no spare now
        dead = ", ".join(f"{m.device} ({disk(m.device)})" for m in failed)
        dead_ja = "、".join(f"{m.device} が故障しました（{disk(m.device).ja}）" for m in failed)
        return Verdict(
            State.WARNING,
            f"{label} runs on a spare: {dead} failed; remove it and add a new disk",
            f"{label} はスペアで動いています: {dead_ja}。故障したディスクを取り外し、新しいディスクを追加してください",
        )
    in_use = [m.device for m in array.in_use]
    spares = [m.device for m in array.members if m.spare]
    held = " ".join(in_use) + (f", spare {' '.join(spares)}" if spares else "")
    spare_ja = f"（スペア {'、'.join(spares)}）" if spares else ""
    scrub, scrub_ja = "", ""
    if array.progress:
        eta, eta_ja = _eta(array.progress)
        scrub = f"; a {array.progress.action} is running, {eta}"
        scrub_ja = f"。{ACTIONS_JA[array.progress.action]}を実行中です: {eta_ja}"
    waits = f" ({array.pending}: it waits for another array)" if array.pending else ""
    waits_ja = f"（{array.pending}: 他のアレイの処理を待っています）" if array.pending else ""
    return Verdict(
        State.OK,
        f"{label} is healthy on {held}{scrub}{waits}",
        f"{label} は {'、'.join(in_use)} で正常に動いています{spare_ja}{scrub_ja}{waits_ja}",
    )


def check(settings: RaidCheckSettings) -> Result:
    """Where there is no software RAID (no mdstat, or no arrays in it) the result says it is not watching."""
    try:
        text = Path(settings.mdstat).read_text(errors="replace")
    except FileNotFoundError:  # the md driver is not loaded: no array was ever assembled
        why = f"no md arrays ({settings.mdstat} does not exist)"
        return not_watching("raid", why, f"md アレイがありません（{settings.mdstat} がありません）")
    except OSError as error:
        return Result(
            "raid",
            State.WARNING,
            f"cannot read {settings.mdstat}: {error.strerror}",
            ja=f"{settings.mdstat} を読めません: {error.strerror}。",
        )
    arrays = parse(text)
    if not arrays:
        return not_watching("raid", f"no md arrays in {settings.mdstat}", f"{settings.mdstat} に md アレイがありません")
    troubled = any(a.degraded or not a.active or any(m.failed for m in a.members) for a in arrays)
    known = disks.read(settings.lsblk) if troubled else {}
    verdicts = [_judge(array, known) for array in arrays]
    state = max(verdict.state for verdict in verdicts)
    shown = [verdict for verdict in verdicts if verdict.state == state or state == State.OK]
    metrics: dict[str, float] = {}
    for array in arrays:
        metrics[f"{array.name}.working"] = float(array.working or 0)
        metrics[f"{array.name}.wanted"] = float(array.wanted or 0)
        if array.progress:
            metrics[f"{array.name}.progress"] = array.progress.percent
    sentence = ". ".join(verdict.sentence for verdict in shown) + "."
    return Result("raid", state, sentence, metrics, ja="".join(f"{verdict.ja}。" for verdict in shown))
