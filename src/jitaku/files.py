"""A file replaced whole: its new text written beside it and renamed over it, so that a reader, or a power cut,
finds the old file or the new one and never part of either."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path


def owner(path: Path) -> tuple[int, int] | None:
    """PATH's owner (uid, gid), for what root writes in it or beside it (a command or the daemon run as root on a
    data directory that is another user's): the daemon, running as that user, must read and replace it. None when
    not root: what we write is ours, as the directory is."""
    if os.geteuid() != 0:
        return None
    found = os.stat(path)
    return found.st_uid, found.st_gid


def replace(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None = None) -> None:
    """DATA as PATH, with MODE whatever the umask, and OWNER's (uid, gid) when given. The new file is made with
    O_EXCL and O_NOFOLLOW, never written through a link planted where it goes, and named with this process's pid:
    two writers at once (a timer's run and one by hand) each rename their own."""
    part = path.with_name(f".{path.name}.{os.getpid()}.new")
    part.unlink(missing_ok=True)
    descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchmod(descriptor, mode)
            if owner is not None:
                os.fchown(descriptor, *owner)
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def check_private(path: Path, refusal: Callable[[str], Exception], named: str = "", after: str = "") -> None:
    """REFUSAL's error with a sentence unless PATH (said as PATH and NAMED, "([backup] ssh_key)") is a file nobody
    else may read: a secret in a world-readable file is a leak, whatever reads it. AFTER ends the sentence of a
    file others may read."""
    try:
        info = path.stat()
    except OSError as error:
        raise refusal(f"cannot read {path}{named}: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise refusal(f"{path}{named} is not a file")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise refusal(f"{path}{named} may be read by others (mode {mode:04o}): chmod 600 {path} first{after}")
