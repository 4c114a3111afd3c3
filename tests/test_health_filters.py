"""The `filters` check's counts and sentence (health/filters.py) with no engine on, so that nothing is pinged:
greylisting's count shown while it is on, and greylisting alone making the check one that watches."""

from __future__ import annotations

import asyncio

from jitaku.config import FiltersSettings, GreylistSettings
from jitaku.health import filters
from jitaku.health.result import State
from jitaku.store import tallies

COUNTS = {tallies.FILTER_REJECTED: 2, tallies.FILTER_JUNKED: 1, tallies.GREYLISTED: 7}


def test_greylisting_alone_is_watched_with_its_count() -> None:
    (result,) = asyncio.run(filters.check(FiltersSettings(greylist=GreylistSettings(enabled=True)), COUNTS))
    assert (result.check, result.state, result.watching) == ("filters", State.OK, True)
    assert result.metrics == {"rejected": 2, "junked": 1, "viruses": 0, "unchecked": 0, "greylisted": 7}
    assert "greylisting is on" in result.sentence and "7 greylisted" in result.sentence


def test_without_greylisting_its_count_is_not_said() -> None:
    (result,) = asyncio.run(filters.check(FiltersSettings(), COUNTS))
    assert (result.state, result.watching) == (State.OK, False)
    assert result.metrics["greylisted"] == 7  # the same metrics whatever is on: what a reader of the JSON expects
    assert "greylisted" not in result.sentence and "not watching" in result.sentence


def test_every_kind_the_filters_count_is_shown() -> None:
    """A tally the pipeline counts (tallies.FILTER_*, GREYLISTED) that the check does not read would be counted
    and never seen, as greylisting's was."""
    counted = {getattr(tallies, name) for name in dir(tallies) if name.startswith("FILTER_")} | {tallies.GREYLISTED}
    assert counted == set(filters.COUNTED)
