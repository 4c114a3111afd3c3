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

from jitaku import files

STATE_NAME = "state.json"
FIRST_RETRY = 600.0  # seconds after the first failure; each next failure doubles it
LAST_RETRY = 43200.0  # at most twice a day, as certbot's timer tries
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
            next_try=now + max(wait, retry_after or 0.0),
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


def read(data_dir: Path) -> Attempts:
    """A missing or unreadable file is no attempts yet: it only delays nothing."""
    try:
        found = json.loads(path(data_dir).read_text())
        fields = {key: found[key] for key in Attempts.__dataclass_fields__ if key in found}
        fields["left_out"] = _left_out(fields.get("left_out", []))
        return Attempts(**fields)
    except (OSError, ValueError, TypeError):
        return Attempts()


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
    target = path(data_dir)
    target.parent.mkdir(mode=0o700, exist_ok=True)
    owner = os.stat(data_dir)
    files.replace(
        target,
        json.dumps(asdict(attempts), indent=1).encode() + b"\n",
        0o600,
        (owner.st_uid, owner.st_gid) if os.geteuid() == 0 else None,
    )
