"""One updater at a time, by a lock the kernel drops when its holder dies.

A PID file outlives a power cut and then blocks every later updater (the
outage this project was started over); flock(2) on a file in the data
directory cannot: the lock belongs to the open file, which dies with the
process, however it dies.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = "ddns.lock"


class Busy(Exception):
    """Another process is updating now."""


@contextmanager
def held(data_dir: Path, wait: float = 0.0) -> Iterator[None]:
    """Hold the DDNS lock; wait up to WAIT seconds for it, then raise Busy."""
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise Busy(f"another jitaku process is updating DNS now ({data_dir / LOCK_NAME})") from None
                time.sleep(0.1)
        yield
    finally:
        os.close(fd)  # closing the file releases the lock
