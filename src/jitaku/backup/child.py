"""The programs a backup runs (restic, pg_dump, pg_restore), as children that end with us: each has a deadline,
dies with the thread that started it (a `jitaku backup now` killed with -9 leaves nothing running on to write a
snapshot or a dump nobody asked for any more), is killed by stop_all when the daemon stops (rather than holding
its exit for hours), and has only the last STDERR_KEPT bytes of its stderr kept, for the sentence its failure
becomes.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

STDERR_KEPT = 64 << 10  # the last bytes of stderr kept for the sentence
PR_SET_PDEATHSIG = 1  # linux/prctl.h

_running: set[subprocess.Popen[bytes]] = set()  # this process's children, for stop_all
_running_lock = threading.Lock()
_stopped = threading.Event()  # stop_all's: no child started after it (a retry, the prune after a backup)


class Stopped(Exception):
    """stop_all ran, and resume() has not since: the daemon stops, and nothing more is started to wait for."""


@dataclass(frozen=True)
class Ended:
    """How a child ended: its exit status, the end of its stderr, whether its deadline killed it, and whether
    the reader of its stdout had it killed (it said too much)."""

    code: int
    stderr: str
    expired: bool
    cut: bool


def run(
    command: list[str],
    environment: dict[str, str],
    timeout: float,
    cwd: Path | str | None = None,
    read: Callable[[IO[bytes]], bool] | None = None,
) -> Ended:
    """COMMAND run to its end, or killed at TIMEOUT seconds, or when this thread is interrupted (Ctrl-C, or
    SIGTERM made SystemExit). READ is given its stdout and returns True to have it killed; without READ, its
    stdout goes nowhere. OSError when it cannot be started."""
    if _stopped.is_set():
        raise Stopped(f"{Path(command[0]).name} was not started: the daemon stops")
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,  # never a password prompt
        stdout=subprocess.PIPE if read is not None else subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=environment,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - a CLI's or worker thread's child, nothing else forks
    )
    assert process.stderr is not None
    with _running_lock:
        _running.add(process)
        if _stopped.is_set():  # stop_all ran since the look above, before this one was there to kill
            process.kill()
    stderr = _Tail(process.stderr)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        process.kill()

    timer = threading.Timer(timeout, expire)
    timer.start()
    cut = False
    try:
        if read is not None:
            assert process.stdout is not None
            cut = read(process.stdout)
        else:
            process.wait()
    finally:
        if process.poll() is None and (cut or sys.exc_info()[0] is not None):
            process.kill()  # too much said, or interrupted: nothing of it stays behind
        code = process.wait()
        with _running_lock:
            _running.discard(process)
        timer.cancel()
        stderr.join()
        if process.stdout is not None:
            process.stdout.close()
    return Ended(code, stderr.text(), expired.is_set(), cut)


def stop_all() -> None:
    """Every child this process runs, killed, and none started after (until resume()): the daemon stops, and its
    schedule's backup or drill is cut short rather than holding the stop for hours (restic lists no snapshot it
    did not finish), nor is one started by a retry or a prune after it."""
    with _running_lock:
        _stopped.set()
        for process in _running:
            process.kill()


def resume() -> None:
    """Children run again after stop_all(): the schedule starts anew in this process (a box promoted again)."""
    _stopped.clear()


def _die_with_parent() -> None:
    """In the child, before its program starts: SIGKILL when the thread that started it ends (this process
    killed), which it never does sooner, since that thread waits for it to finish."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class _Tail(threading.Thread):
    """A stream read to its end in a thread of its own (so that neither pipe fills and stalls the child), keeping
    only its last STDERR_KEPT bytes."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self._stream = stream
        self._kept = b""
        self.start()

    def run(self) -> None:
        with self._stream:
            while chunk := self._stream.read1(STDERR_KEPT):
                self._kept = (self._kept + chunk)[-STDERR_KEPT:]

    def text(self) -> str:
        return self._kept.decode(errors="replace")
