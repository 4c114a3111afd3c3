"""The SMART readings the smart and diskage checks judge: smartctl's own when we are root, otherwise what
`jitaku smart collect`, run as root by jitaku-smart.timer, last wrote to DIR/smart.json.

smartctl sends raw ATA, SCSI and NVMe commands, which take CAP_SYS_RAWIO (SG_IO) or CAP_SYS_ADMIN (NVMe
admin commands); either, given to the daemon that parses strangers' mail, is close to giving it root. A
small root helper that runs smartctl and writes down what it read asks less trust than that, and than a
sudo rule, whose argument matching is loose and which needs sudo installed.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

from jitaku import files
from jitaku.config import SmartCheckSettings
from jitaku.health import smartctl
from jitaku.health.result import Result, State, not_watching
from jitaku.health.smartctl import Drive
from jitaku.words import counted

NAME = "smart.json"
MODE = 0o640  # serial numbers and wear, for the daemon (and a backup group, where the directory is 0750)
TIMER = "jitaku-smart.timer"  # what runs `jitaku smart collect` (`jitaku init --service` installs it)
COLLECTOR = "jitaku smart collect"
UNITS = ((86400, "day", "日"), (3600, "hour", "時間"), (60, "minute", "分"))
STALE_AFTER = 1800.0  # seconds: readings older than this (or than three check intervals) are stale


@dataclass(frozen=True)
class Readings:
    drives: list[Drive]
    taken: float  # when, in seconds since the epoch
    missing: str | None = None  # the smartctl that was not installed where they were to be taken


class BrokenReadings(Exception):
    """DIR/smart.json is there but says nothing we can use."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"cannot use {path} ({why}); `{COLLECTOR}` writes it anew")
        self.ja = f"{path} を使えません（{why}）。`{COLLECTOR}` が書き直します"


def take(settings: SmartCheckSettings, max_age: float = 0.0) -> Readings:
    """Run smartctl (as root: it needs raw disk access) on every configured or scanned disk; a reading
    less than MAX_AGE seconds old is reused (smartctl wakes sleeping disks)."""
    try:
        return Readings(smartctl.drives(settings, max_age), time.time())
    except smartctl.SmartctlMissing:
        return Readings([], time.time(), missing=settings.smartctl)


def write(data_dir: Path, readings: Readings) -> Path:
    """READINGS as DIR/smart.json, whole (a reader sees the old file or the new one, never a part), owned
    by the data directory's owner: the user the daemon runs as."""
    path = data_dir / NAME
    text = json.dumps(
        {
            "taken": readings.taken,
            "missing": readings.missing,
            "drives": [dataclasses.asdict(drive) for drive in readings.drives],
        }
    )
    files.replace(path, (text + "\n").encode(), MODE, files.owner(data_dir))
    return path


def read(data_dir: Path) -> Readings | None:
    """What `jitaku smart collect` last wrote; None when it has not yet."""
    path = data_dir / NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        fields = {field.name for field in dataclasses.fields(Drive)}
        drives = [Drive(**{k: v for k, v in item.items() if k in fields}) for item in raw["drives"]]
        return Readings(drives, float(raw["taken"]), raw.get("missing"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise BrokenReadings(path, _why(error)) from None


def _why(error: Exception) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return f"{type(error).__name__}: {error}"


def stale_after(interval: float) -> float:
    """Seconds after which readings are stale: three check intervals, and never less than half an hour
    (the timer runs every few minutes; a missed run or two is no news)."""
    return max(3 * interval, STALE_AFTER)


def not_collected(check: str) -> Result:
    """Not root, and nothing collected yet: nothing to judge, and what would read it."""
    return not_watching(
        check,
        f"SMART is read by `{COLLECTOR}` run as root, which has not written {NAME} yet"
        f" (`jitaku init --service` installs its timer, {TIMER})",
        f"SMART は root で動く `{COLLECTOR}` が読みますが、{NAME} がまだありません"
        f"（`jitaku init --service` がそのタイマー {TIMER} を入れます）",
    )


def aged(result: Result, age: float) -> Result:
    """RESULT, judged on readings AGE seconds old: a warning at least, naming the timer that should have
    taken newer ones."""
    old = f"the last SMART readings are {_age(age, 'en')} old: is {TIMER} running? (systemctl status {TIMER})"
    old_ja = f"最後の SMART の読み取りは {_age(age, 'ja')}前です。{TIMER} は動いていますか（systemctl status {TIMER}）"
    return dataclasses.replace(
        result,
        state=max(result.state, State.WARNING),
        sentence=f"{old}; they said: {result.sentence}",
        ja=f"{old_ja}。その内容: {result.ja or result.sentence}",
    )


def _age(seconds: float, language: str) -> str:
    """ "45 minutes", "3 hours", "2 days" (in Japanese "45分", ...)."""
    size, unit, unit_ja = next(
        (size, unit, unit_ja) for size, unit, unit_ja in UNITS if seconds >= 2 * size or size == UNITS[-1][0]
    )
    whole = int(seconds // size)
    return f"{whole}{unit_ja}" if language == "ja" else counted(whole, unit)
