"""The C heap under Python: glibc's malloc told to keep the daemon small (issues 15 and 20). Other C libraries
go without; nothing else changes."""

from __future__ import annotations

import asyncio
import ctypes
from collections.abc import Callable
from typing import Any

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # malloc.h
ARENAS = 2
LARGE_BLOCK = 1 << 20
TRIM_EVERY = 10.0  # seconds between giving freed pages back


def few_arenas() -> None:
    """At most ARENAS malloc arenas, before any thread starts (glibc fixes its limit at the first thread's
    arena). By default every thread that allocates gets one of up to 8 per core, each holding on to what it
    once held: resident memory grows with the load and stays (issue 20)."""
    mallopt = _glibc("mallopt")
    if mallopt is not None:
        mallopt(M_ARENA_MAX, ARENAS)


def unmap_large_blocks() -> None:
    """Give every block of LARGE_BLOCK bytes or more its own mapping, returned to the system when freed.

    glibc's default adapts: once a large mapped block is freed, blocks that large come from the heap,
    which seldom shrinks; ten 22 MB messages left the daemon holding hundreds of MB (issue 15). A fixed
    threshold also stops the adapting of the trim threshold: keep it at twice, as glibc would.
    """
    mallopt = _glibc("mallopt")
    if mallopt is not None:
        mallopt(M_MMAP_THRESHOLD, LARGE_BLOCK)
        mallopt(M_TRIM_THRESHOLD, 2 * LARGE_BLOCK)


async def give_back_regularly() -> None:
    """Every TRIM_EVERY seconds, hand the pages malloc holds free back to the system. free() only returns the
    top of the heap; the pages freed inside it (what starting up built and dropped, what a burst of mail
    left) stay resident until malloc_trim: about 1.5 MiB of the idle daemon's 78 (issue 20)."""
    trim = _glibc("malloc_trim")
    if trim is None:
        return
    while True:
        trim(0)
        await asyncio.sleep(TRIM_EVERY)


def _glibc(name: str) -> Callable[..., Any] | None:
    function: Callable[..., Any] | None = getattr(ctypes.CDLL(None), name, None)
    return function
