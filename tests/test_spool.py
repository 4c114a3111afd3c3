"""mail/spool.py: a message moves to disk once large, and the pipeline loads large ones one at a time."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from jitaku.mail import spool
from jitaku.mail.spool import Spooler


def _fill(target: spool.Spool, size: int) -> bytes:
    line = b"x" * 998 + b"\r\n"
    data = line * (size // len(line))
    for start in range(0, len(data), len(line)):
        target.add(data[start : start + len(line)])
    return data


def test_a_small_message_stays_in_memory_and_a_large_one_goes_to_disk(tmp_path: Path) -> None:
    spooler = Spooler(tmp_path)

    async def run() -> None:
        small, large = spooler.spool(), spooler.spool()
        small_data = _fill(small, 200_000)
        large_data = _fill(large, 3 * spool.IN_MEMORY)
        assert small._file is None and large._file is not None
        assert spooler.in_memory <= spool.IN_MEMORY
        async with small.loaded() as data:
            assert data == small_data
        async with large.loaded() as data:
            assert data == large_data
        assert spooler.in_memory == 0

    asyncio.run(run())


def test_the_process_total_in_memory_sends_even_small_messages_to_disk(tmp_path: Path) -> None:
    spooler = Spooler(tmp_path)
    spools = [spooler.spool() for _ in range(2 * spool.MEMORY_TOTAL // spool.IN_MEMORY)]
    for each in spools:
        _fill(each, spool.IN_MEMORY - spool.CHUNK)
    assert spooler.in_memory <= spool.MEMORY_TOTAL
    assert spools[-1]._file is not None
    for each in spools:
        each.discard()
    assert spooler.in_memory == 0


def test_the_load_budget_admits_a_large_message_alone_and_in_turn() -> None:
    async def run() -> list[str]:
        budget = spool._Budget(100)
        order: list[str] = []

        async def hold(name: str, size: int, seconds: float) -> None:
            await budget.take(size)
            order.append(name)
            await asyncio.sleep(seconds)
            budget.give(size)

        first = asyncio.create_task(hold("60", 60, 0.05))
        await asyncio.sleep(0)
        others = [
            asyncio.create_task(hold("huge", 500, 0.05)),  # more than the whole: alone, when its turn comes
            asyncio.create_task(hold("10", 10, 0)),  # fits now, but waits its turn behind "huge"
        ]
        await asyncio.gather(first, *others)
        return order

    assert asyncio.run(run()) == ["60", "huge", "10"]


def test_a_cancelled_waiter_gives_its_turn_away() -> None:
    async def run() -> None:
        budget = spool._Budget(100)
        await budget.take(100)
        waiting = asyncio.create_task(budget.take(50))
        behind = asyncio.create_task(budget.take(20))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        budget.give(100)
        await asyncio.wait_for(behind, 1)
        assert budget._used == 20

    asyncio.run(run())
