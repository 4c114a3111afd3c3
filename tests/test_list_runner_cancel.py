"""A list runner cancelled (a fence, a stop, a switchover) while a post's lease renewal ends is cancelled: the
cancel was once the CancelledError a `suppress` meant for the renewal swallowed, and the runner ran on with its
cancel pending, where Python 3.11's asyncio.timeout could no longer end its wait, and the daemon's stop hung."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from jitaku.lists import runner as runner_module
from jitaku.lists.runner import ListRunner
from jitaku.store.lists import InboxItem


class SlowToEnd:
    """A store whose lease renewal, once cancelled, takes a moment to end (its transaction rolled back)."""

    def __init__(self) -> None:
        self.renewing = asyncio.Event()
        self.release = asyncio.Event()

    async def transact(self, job: Any, durable: bool = True) -> Any:
        self.renewing.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await self.release.wait()
            raise


def test_a_runner_cancelled_while_its_renewal_ends_is_cancelled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "LEASE_SECONDS", 0.04)  # the first renewal at once
    item = InboxItem(1, 1, "post", "sota@example.test", "a@example.org", 0.0, None, 0, b"", lease="token")

    async def run() -> None:
        store = SlowToEnd()
        listed = object.__new__(ListRunner)
        listed._database = store  # type: ignore[assignment]

        async def handle() -> None:
            async with listed._renewing(item):
                await store.renewing.wait()  # the post handled while a renewal is under way
            await asyncio.sleep(3600)  # what a runner whose cancel was swallowed goes on to: its next wait

        handling = asyncio.create_task(handle())
        await store.renewing.wait()
        for _ in range(3):
            await asyncio.sleep(0)  # the block left: the renewal cancelled, and waited for
        handling.cancel()  # the runner's own cancel, as the renewal ends
        store.release.set()
        done, _ = await asyncio.wait([handling], timeout=5)
        assert done and handling.cancelled(), "the runner's cancel was swallowed: it runs on"

    asyncio.run(run())
