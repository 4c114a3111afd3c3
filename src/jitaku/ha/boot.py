"""Whether this box booted since it last served as the primary: only then may its first decision wait for its peer
(jitaku.ha.mode's "waiting"). A restart of the daemon alone (an upgrade, a crash, `systemctl restart`) leaves the
box as it was, where a boot may follow a power cut of both boxes, while which the other one may have been promoted.

The kernel's boot id (a new random one at each boot) is recorded in DIR/ha/boot_id each time the box serves as the
primary; a box that never did since (a pair set up, and the daemon stopped before it served) has none, and waits.
"""

from __future__ import annotations

from pathlib import Path

from jitaku import files, log
from jitaku.config import Config
from jitaku.ha.cluster import fsync_directory

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def path(config: Config) -> Path:
    return config.data_dir / "ha" / "boot_id"


def current() -> str | None:
    """This boot's id; None where the kernel has none to give (then every start counts as a boot)."""
    try:
        return BOOT_ID.read_text(encoding="ascii").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def changed(config: Config) -> bool:
    """Whether this box booted since it last served as the primary (or cannot tell)."""
    now = current()
    try:
        recorded = path(config).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return True
    return now is None or recorded != now


def record(config: Config) -> None:
    """This boot as the one this box serves as the primary in; a file written once a boot, fsynced: a power cut
    after it must find it."""
    now = current()
    where = path(config)
    if now is None or not changed(config):
        return
    try:
        where.parent.mkdir(mode=0o700, exist_ok=True)
        files.replace(where, now.encode() + b"\n", 0o600)
        fsync_directory(where.parent)
    except OSError as error:  # the next start waits once more: no reason not to serve
        log.event("ha_boot_not_recorded", path=str(where), error=repr(error))
