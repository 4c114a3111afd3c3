"""What the last ACME attempts came to, kept in DIR/acme/state.json: the daemon's renewals, `jitaku cert renew`,
`jitaku cert status` and the certs check all read it.

Local to each box, not in the database: a standby renews nothing until it is promoted, and then judges from the
certificate it serves (mirrored from the primary, jitaku.ha.secret_files), not from the old primary's failures.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from jitaku import files

STATE_NAME = "state.json"
FIRST_RETRY = 600.0  # seconds after the first failure; each next failure doubles it
LAST_RETRY = 43200.0  # at most twice a day, as certbot's timer tries
LONGEST_WAIT = 7 * 86400.0  # seconds: the longest a rate limit's Retry-After makes the next try wait
LAST_TIME = 253402300799.0  # 9999-12-31 23:59:59 UTC: the last time Python's datetime can show
_DOUBLINGS = 16  # past LAST_RETRY already: more would only overflow a float


@dataclass(frozen=True)
class Attempts:
    """Times are Unix seconds; 0: never."""

    last_try: float = 0.0
    last_success: float = 0.0
    last_error: str = ""  # one sentence, empty after a success
    failures: int = 0  # in a row, since the last success
    next_try: float = 0.0  # no automatic try before it (a person's `cert renew` goes ahead anyway)
    left_out: tuple[tuple[str, str], ...] = ()  # (name, why): what the last certificate goes without

    def failed(self, now: float, error: str, retry_after: float | None = None) -> Attempts:
        """One more failure: the next try waits FIRST_RETRY, doubled for each failure in a row up to LAST_RETRY,
        or as long as the CA asked (a rate limit's Retry-After), whichever is later."""
        failures = self.failures + 1
        wait = min(FIRST_RETRY * 2.0 ** min(failures - 1, _DOUBLINGS), LAST_RETRY)  # a lapsed domain fails for years
        return replace(
            self,
            last_try=now,
            last_error=error,
            failures=failures,
            next_try=now + max(wait, min(retry_after or 0.0, LONGEST_WAIT)),
        )

    def succeeded(self, now: float, left_out: Iterable[tuple[str, str]] = ()) -> Attempts:
        """LEFT_OUT: the names the CA would not validate, which the certificate was issued without, each with why."""
        return Attempts(last_try=now, last_success=now, left_out=tuple(left_out))

    def left_out_text(self) -> str:
        """As `jitaku cert status` shows it: "NAME: why; NAME: why"."""
        return "; ".join(f"{name}: {why}" for name, why in self.left_out)


def moment(seconds: float) -> str:
    """A time as the check's sentences, its alerts and `jitaku cert status` show it: local, to the minute, with the
    zone ("2026-12-07 18:20 UTC"), since a person reads it on a phone far from the server."""
    return time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(seconds))


def day(seconds: float) -> str:
    """A date as the same sentences show it: local, as `moment` is, so that "expires on" and "next try at" agree."""
    return time.strftime("%Y-%m-%d", time.localtime(seconds))


def path(data_dir: Path) -> Path:
    return data_dir / "acme" / STATE_NAME


def directory(data_dir: Path) -> Path:
    """DIR/acme, made if missing (0700) and the data directory's owner's: one root made and kept would stop
    `jitaku serve` with `[run] user` (jitaku.privileges.foreign) and the daemon's renewals."""
    where = data_dir / "acme"
    where.mkdir(mode=0o700, exist_ok=True)
    found = files.owner(data_dir)
    if found is not None:
        os.chown(where, *found, follow_symlinks=False)
    return where


def read(data_dir: Path) -> Attempts:
    """A missing or unreadable file is no attempts yet: it only delays nothing."""
    try:
        found = json.loads(path(data_dir).read_text())
    except (OSError, ValueError):
        return Attempts()
    if not isinstance(found, dict):
        return Attempts()
    defaults = asdict(Attempts())
    sane: dict[str, Any] = {
        key: _sane(found.get(key), default) for key, default in defaults.items() if key != "left_out"
    }
    try:
        sane["left_out"] = _left_out(found.get("left_out", []))
    except (TypeError, ValueError):
        sane["left_out"] = ()
    return Attempts(**sane)


def _sane(value: object, default: object) -> object:
    """VALUE when it is of DEFAULT's type and, for a time or a count, one that can be shown (a file from an older
    version, or garbage, that said year 3170900 made every `jitaku cert status` fail); else DEFAULT."""
    if isinstance(default, str):
        return value if isinstance(value, str) else default
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    if not 0 <= value <= LAST_TIME:  # NaN too
        return default
    return int(value) if isinstance(default, int) else float(value)


def _left_out(found: object) -> tuple[tuple[str, str], ...]:
    """A list of [name, why] pairs; or, as a version before 2026-12 wrote it, one sentence "NAME: why; NAME: why",
    split at each DNS name before ": " (a reason holding "; " stays whole)."""
    if isinstance(found, str):
        parts = re.split(r"(?:^|; )([a-z0-9*][a-z0-9-]*(?:\.[a-z0-9-]+)+): ", found)
        return tuple(zip(parts[1::2], parts[2::2], strict=True))
    if not isinstance(found, list):
        raise TypeError("left_out")
    return tuple((str(name), str(why)) for name, why in found)


def write(data_dir: Path, attempts: Attempts) -> None:
    """Owned as the data directory is when written by root (`jitaku cert renew` run by root, the daemon as its
    user)."""
    target = directory(data_dir) / STATE_NAME
    files.replace(target, json.dumps(asdict(attempts), indent=1).encode() + b"\n", 0o600, files.owner(data_dir))
