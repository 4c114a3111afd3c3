"""What each disk says about itself, from `smartctl --json` (smartmontools 7+): the counters that
announce a dying disk (reallocated, pending, offline-uncorrectable sectors), temperature and age.

One reading serves the smart and diskage checks of a round; smartctl wakes sleeping disks otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

from jitaku.config import SmartCheckSettings

INSTALL = "Debian: apt install smartmontools"
SBIN = "/usr/sbin:/sbin"  # where smartmontools puts smartctl; a Debian user's PATH lacks them
OPEN_FAILED = 0b11  # smartctl's exit bits 0 and 1: bad command line, device could not be opened
_cache: dict[tuple[str, tuple[str, ...]], tuple[float, list[Drive]]] = {}
_reading = threading.Lock()  # the smart and diskage checks start together: one reads, the other waits


@dataclass(frozen=True)
class Drive:
    device: str
    model: str | None = None
    serial: str | None = None
    passed: bool | None = None
    reallocated: int | None = None  # attribute 5
    pending: int | None = None  # 197
    offline_uncorrectable: int | None = None  # 198
    crc_errors: int | None = None  # 199: usually the cable
    media_errors: int | None = None  # NVMe
    temperature: float | None = None
    power_on_hours: int | None = None
    error: str | None = None  # why smartctl could not tell

    @property
    def name(self) -> str:
        return self.device.removeprefix("/dev/")

    def __str__(self) -> str:
        return self._said("serial")

    @property
    def ja(self) -> str:
        return self._said("シリアル")

    def _said(self, serial: str) -> str:
        described = " ".join(part for part in (self.model, f"{serial} {self.serial}" if self.serial else None) if part)
        return f"{self.name} ({described})" if described else self.name


def locate(smartctl: str) -> str | None:
    """The program to run, or None when smartmontools is not installed. Found in /usr/sbin too, so that a
    user who installed it is not told to install it again when jitaku runs without root's PATH."""
    return shutil.which(smartctl) or shutil.which(smartctl, path=SBIN)


def _run(smartctl: str, *args: str) -> tuple[int, Any]:
    program = locate(smartctl)
    if program is None:
        raise SmartctlMissing(smartctl)
    try:
        ran = subprocess.run([program, "--json", *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return 1, {}
    try:
        return ran.returncode, json.loads(ran.stdout)
    except ValueError:
        return ran.returncode, {}


class SmartctlMissing(Exception):
    """smartctl is not installed: nothing can read a disk's SMART."""

    def __init__(self, smartctl: str) -> None:
        super().__init__(f"{smartctl} is not installed ({INSTALL})")
        self.ja = f"{smartctl} がインストールされていません（Debian では apt install smartmontools）"


def scan(smartctl: str) -> list[str]:
    _code, found = _run(smartctl, "--scan")
    return [str(item["name"]) for item in found.get("devices", []) if isinstance(item, dict) and "name" in item]


def _raw(table: list[Any], attribute: int) -> int | None:
    for row in table:
        if isinstance(row, dict) and row.get("id") == attribute:
            value = row.get("raw", {}).get("value")
            return int(value) if isinstance(value, int) else None
    return None


def read(smartctl: str, device: str) -> Drive:
    code, data = _run(smartctl, "-a", device)
    if code & OPEN_FAILED or not data:
        messages = [m.get("string", "") for m in data.get("smartctl", {}).get("messages", []) if isinstance(m, dict)]
        return Drive(device, error="; ".join(m for m in messages if m) or f"smartctl exited {code}")
    table = data.get("ata_smart_attributes", {}).get("table", [])
    nvme = data.get("nvme_smart_health_information_log", {})
    return Drive(
        device=device,
        model=data.get("model_name"),
        serial=data.get("serial_number"),
        passed=data.get("smart_status", {}).get("passed"),
        reallocated=_raw(table, 5),
        pending=_raw(table, 197),
        offline_uncorrectable=_raw(table, 198),
        crc_errors=_raw(table, 199),
        media_errors=nvme.get("media_errors"),
        temperature=data.get("temperature", {}).get("current"),
        power_on_hours=data.get("power_on_time", {}).get("hours"),
    )


def drives(settings: SmartCheckSettings, max_age: float = 0.0) -> list[Drive]:
    """Every configured (or scanned) disk's reading; one taken less than MAX_AGE seconds ago is reused."""
    key = (settings.smartctl, settings.devices)
    with _reading:
        cached = _cache.get(key)
        if cached and time.monotonic() - cached[0] < max_age:
            return cached[1]
        found = [read(settings.smartctl, device) for device in settings.devices or scan(settings.smartctl)]
        _cache[key] = (time.monotonic(), found)
        return found
