"""One `jitaku serve` per data directory, by a lock the kernel drops when its holder dies.

A second daemon on the same directory started, and failed only on its ports if at all: with other
listeners in the config it ran a second queue and DDNS updater on the same database (issue 17). A PID file
is no answer: after a power cut it names a dead process and blocks the restart (the outage this project
was started over). flock(2) belongs to the open file, which the kernel closes however the process ends,
kill -9 included; the pid written in the file only names the holder in the refusal.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from jitaku.errors import ServeError

LOCK_NAME = "serve.lock"


@contextmanager
def held(data_dir: Path, owner: pwd.struct_passwd | None = None) -> Iterator[None]:
    """Hold DATA_DIR's serve lock while the block runs, or raise ServeError naming the pid that holds it.

    SMTP workers forked inside the block share the open file, so the lock lasts until the last process of
    this daemon is gone: none of them still commits mail when the next daemon starts. They follow the main
    process within moments of its death (PR_SET_PDEATHSIG, see app._worker).

    Taken as root before the listeners are bound (a second daemon is told it is one, not that a port is in
    use), the file is given to OWNER, the user the daemon becomes (`[run] user`), like all else in the
    directory.
    """
    path = data_dir / LOCK_NAME
    try:  # a link planted where the lock belongs is refused (ELOOP), never followed
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    except OSError as error:
        raise ServeError(f"cannot open {path}: {error.strerror or error}") from None
    try:
        if owner is not None:
            _give(descriptor, path, owner)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ServeError(f"jitaku serve is already running on {data_dir} ({_holder(descriptor)})") from None
        os.ftruncate(descriptor, 0)  # whatever an earlier holder wrote
        os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(descriptor)  # the last process to close it releases the lock


def _give(descriptor: int, path: Path, owner: pwd.struct_passwd) -> None:
    """Make the lock file OWNER's. Root opens it in a directory OWNER may write to: a hard link or a device
    put there in its place is refused, never handed over."""
    found = os.fstat(descriptor)
    if not stat.S_ISREG(found.st_mode) or found.st_nlink != 1 or found.st_uid not in (0, owner.pw_uid):
        raise ServeError(f"{path} is not a lock file jitaku made; remove it and start again")
    os.fchown(descriptor, owner.pw_uid, owner.pw_gid)


def _holder(descriptor: int) -> str:
    written = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip()
    return f"pid {written}" if written.isdigit() else "pid not written yet"


def running(data_dir: Path) -> bool:
    """Whether a daemon holds DATA_DIR's serve lock now (for the commands that need one running). A shared lock
    is tried and let go at once: it writes nothing in the file, and it fails only while a daemon holds it."""
    try:
        descriptor = os.open(data_dir / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return False
    except OSError as error:
        raise ServeError(f"cannot open {data_dir / LOCK_NAME}: {error.strerror or error}") from None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)
    return False
