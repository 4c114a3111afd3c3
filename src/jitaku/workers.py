"""The SMTP worker processes as the main process sees them: stopped with it, and missed when one dies."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

from jitaku import log


def terminate(children: list[int]) -> None:
    for pid in children:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)


async def watch(children: list[int], stop: asyncio.Event) -> None:
    """A worker that dies takes the daemon down loudly, for the supervisor to restart it whole."""
    while children:
        for pid in children:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                children.remove(pid)
                log.event("worker_died", pid=pid, status=status)
                stop.set()
                return
        await asyncio.sleep(1.0)
