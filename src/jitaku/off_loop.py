"""A blocking call run off the event loop in a daemon thread of its own, which a stopping daemon does not wait for.

asyncio.to_thread's executor is waited for at the loop's end, with no timeout on Python 3.11: a look at a peer half
there, a cluster that hangs, or an ACME order polling its CA would hold a fence or a stop for as long as it takes.
Here the awaiting task may be cancelled and the loop may end while the call runs on until its own timeouts or stop
event end it; its result is then dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable
from typing import TypeVar, cast

T = TypeVar("T")


def off_the_loop(call: Callable[[], T], name: str) -> asyncio.Future[T]:
    """CALL's result, or what it raised, as a future of the running loop; CALL runs in the caller's context (its
    log fields)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled: nobody awaits it any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast(T, result))

    def run() -> None:
        result, error = None, None
        try:
            result = context.run(call)
        except Exception as raised:  # noqa: BLE001 - the awaiting task's to see
            error = raised
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: the services stopped
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return future
