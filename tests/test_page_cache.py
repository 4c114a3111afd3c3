"""The site's kept pages under load: readers who miss one page together wait for one drawing of it, so that a
comment (which drops every page) is not followed by fifty drawings of the home page on the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitaku.store import Database
from jitaku.web.page_cache import Page, PageCache
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)


@pytest.fixture
def pages(tmp_path: Path) -> Iterator[PageCache]:
    database = Database(database_url(tmp_path))
    yield PageCache(database)
    database.close()


def test_fifty_concurrent_misses_of_one_page_draw_it_once_and_keep_it(pages: PageCache) -> None:
    drawn: list[str] = []

    async def draw() -> tuple[Page, bool]:
        drawn.append("/")
        await asyncio.sleep(0.01)
        return Page.of(200, "text/html", b"home"), True

    async def run() -> list[Page]:
        return await asyncio.gather(*(pages.drawn("/", draw) for _ in range(50)))

    got = asyncio.run(run())
    assert drawn == ["/"] and {page.body for page in got} == {b"home"}
    assert pages.get("/") is got[0]
    assert asyncio.run(pages.drawn("/", draw)) is got[0] and drawn == ["/"]  # kept: not drawn again


def test_a_failed_drawing_fails_for_every_waiting_reader_and_the_next_miss_draws_again(pages: PageCache) -> None:
    drawn: list[int] = []

    async def broken() -> tuple[Page, bool]:
        drawn.append(1)
        await asyncio.sleep(0.01)
        raise RuntimeError("the database is gone")

    async def run() -> list[Page | BaseException]:
        return await asyncio.gather(*(pages.drawn("/", broken) for _ in range(5)), return_exceptions=True)

    failed = asyncio.run(run())
    assert drawn == [1] and all(isinstance(error, RuntimeError) for error in failed)
    with pytest.raises(RuntimeError):
        asyncio.run(pages.drawn("/", broken))
    assert drawn == [1, 1] and pages.get("/") is None


def test_a_reader_after_a_drop_does_not_get_the_page_drawn_before_it(pages: PageCache) -> None:
    started = asyncio.Event()

    async def old() -> tuple[Page, bool]:
        started.set()
        await asyncio.sleep(0.02)
        return Page.of(200, "text/html", b"before the comment"), True

    async def new() -> tuple[Page, bool]:
        return Page.of(200, "text/html", b"with the comment"), True

    async def run() -> tuple[Page, Page]:
        first = asyncio.create_task(pages.drawn("/", old))
        await started.wait()
        pages.invalidate()  # a comment published while the page was being drawn
        return await first, await pages.drawn("/", new)

    before, after = asyncio.run(run())
    assert before.body == b"before the comment" and after.body == b"with the comment"
    assert pages.get("/") is after


def test_a_reader_whose_drawer_was_cancelled_draws_the_page_itself(pages: PageCache) -> None:

    async def slow() -> tuple[Page, bool]:
        await asyncio.sleep(10)
        raise AssertionError("cancelled before")

    async def quick() -> tuple[Page, bool]:
        return Page.of(200, "text/html", b"home"), True

    async def run() -> Page:
        drawer = asyncio.create_task(pages.drawn("/", slow))
        await asyncio.sleep(0)
        waiter = asyncio.create_task(pages.drawn("/", quick))
        await asyncio.sleep(0)
        drawer.cancel()
        return await waiter

    assert asyncio.run(run()).body == b"home"
