"""Long work on a client's input (SEARCH over a mailbox, LIST over many mailboxes) runs in worker threads,
within a time budget, so that no command holds the event loop that every other connection shares (issue 15:
a SEARCH TEXT over one message of 20,000 header fields froze the daemon for 18 s).

A thread cannot be cancelled: the work is cut into pieces and checks its budget between them, so that it
stops soon after its time runs out or its session goes away (at SIGTERM, asyncio cancels the session's
task, which gives up the budget, and the daemon's exit waits for its worker threads).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
THREADS = 2  # Python computes on one core at a time; more threads would only take turns with the event loop


class OutOfTime(Exception):
    """The command's time ran out, or the session that asked for the work is gone."""


class Budget:
    """The time one command may take; work checks it between pieces."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds
        self._given_up = threading.Event()

    def check(self) -> None:
        if self._given_up.is_set() or time.monotonic() > self.deadline:
            raise OutOfTime

    def give_up(self) -> None:
        self._given_up.set()


class Workers:
    """A few threads of IMAP's own for its long work, apart from the default executor that other services
    (PostgreSQL reads, the MX's SPF and DKIM checks) share: a slow SEARCH never makes them wait."""

    def __init__(self, threads: int = THREADS) -> None:
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="jitaku-imap")

    async def run(self, budget: Budget, work: Callable[[], T]) -> T:
        """WORK's result; OutOfTime when the budget ran out. When the caller is cancelled (its session
        closed, the daemon stopping), the budget is given up so that the thread stops at its next check."""

        def piece() -> T:
            budget.check()  # work queued behind others may have run out of time, or lost its session, already
            return work()

        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, piece)
        except BaseException:
            budget.give_up()
            raise
