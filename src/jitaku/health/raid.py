"""Linux software RAID from /proc/mdstat: a degraded array is critical at once and names the failing
member's disk by model and serial (the story's RAID1 ran on one disk for two months, seen only on a boot
screen). A rebuild is a warning with its progress; a scrub (`check`) is normal."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from jitaku.config import RaidCheckSettings
from jitaku.health import disks
from jitaku.health.result import Result, State

REBUILDING = ("recovery", "resync", "reshape")


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


def _eta(progress: Progress) -> str:
    text = f"{progress.percent:g}% done"
    if progress.finish_minutes is not None:
        minutes = progress.finish_minutes
        text += f", about {minutes:.0f} minutes left" if minutes >= 1 else ", less than a minute left"
    if progress.speed_kib is not None:
        text += f" at {progress.speed_kib / 1024:.0f} MiB/s"
    return text


def _judge(array: Array, known: dict[str, disks.Disk]) -> tuple[State, str]:
    def disk(device: str) -> str:
        return str(disks.disk_of(device, known))

    label = f"{array.name} ({array.level})" if array.level else array.name
    if not array.active:
        return State.CRITICAL, f"{array.name} is inactive (members: {', '.join(m.device for m in array.members)})"
    rebuilding = array.progress is not None and array.progress.action in REBUILDING
    if array.degraded and not rebuilding:
        failed = [m for m in array.members if m.failed]
        why = (
            ", ".join(f"{m.device} failed ({disk(m.device)})" for m in failed)
            if failed
            else f"{(array.wanted or 0) - (array.working or 0)} of {array.wanted} members are missing"
        )
        survivors = sorted({disks.disk_of(m.device, known).name for m in array.in_use})
        runs_on = " alone" if len(survivors) == 1 else ""
        return State.CRITICAL, f"{array.name} is degraded: {why}. The array runs on {', '.join(survivors)}{runs_on}"
    if rebuilding and array.progress is not None:
        action = {"recovery": "rebuilding", "resync": "resyncing", "reshape": "reshaping"}[array.progress.action]
        target = [m.device for m in array.in_use if array.progress.action == "recovery"]
        onto = f" onto {target[-1]}" if target and array.degraded else ""
        return State.WARNING, f"{label} is {action}{onto}: {_eta(array.progress)}"
    failed = [m for m in array.members if m.failed]
    if failed:  # a spare took its place; the dead disk is still in the array, and there is no spare now
        dead = ", ".join(f"{m.device} ({disk(m.device)})" for m in failed)
        return State.WARNING, f"{label} runs on a spare: {dead} failed; remove it and add a new disk"
    spares = [m.device for m in array.members if m.spare]
    held = " ".join(m.device for m in array.in_use) + (f", spare {' '.join(spares)}" if spares else "")
    scrub = f"; a {array.progress.action} is running, {_eta(array.progress)}" if array.progress else ""
    waits = f" ({array.pending}: it waits for another array)" if array.pending else ""
    return State.OK, f"{label} is healthy on {held}{scrub}{waits}"


def check(settings: RaidCheckSettings) -> Result | None:
    """None where there is no software RAID (no mdstat, or no arrays in it)."""
    try:
        text = Path(settings.mdstat).read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as error:
        return Result("raid", State.WARNING, f"cannot read {settings.mdstat}: {error.strerror}")
    arrays = parse(text)
    if not arrays:
        return None
    troubled = any(a.degraded or not a.active or any(m.failed for m in a.members) for a in arrays)
    known = disks.read(settings.lsblk) if troubled else {}
    judged = [(array, *_judge(array, known)) for array in arrays]
    state = max(state for _array, state, _sentence in judged)
    shown = [sentence for _array, s, sentence in judged if s == state or state == State.OK]
    metrics: dict[str, float] = {}
    for array in arrays:
        metrics[f"{array.name}.working"] = float(array.working or 0)
        metrics[f"{array.name}.wanted"] = float(array.wanted or 0)
        if array.progress:
            metrics[f"{array.name}.progress"] = array.progress.percent
    return Result("raid", state, ". ".join(shown) + ".", metrics)
