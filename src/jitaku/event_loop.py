"""The event loop the daemon runs on: uvloop where it is installed, asyncio's own otherwise.

uvloop runs the same protocols and transports in C: a tenth less CPU for each SMTP message and IMAP
command (issue 20). It is a dependency wherever it builds (pyproject.toml); a Python without it, or
`JITAKU_EVENT_LOOP=asyncio` (to tell a uvloop bug from ours), runs on asyncio's loop, with the same results.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's new_event_loop, or None for asyncio's default."""
    if os.environ.get("JITAKU_EVENT_LOOP", "") == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def name() -> str:
    """What `started` logs: which loop this process runs."""
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
