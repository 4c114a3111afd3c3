"""What every check returns: a state, one sentence a person understands, and numbers to graph."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum
from typing import Any


class State(IntEnum):
    """Ordered by gravity; the value is also `jitaku check`'s exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Result:
    check: str
    state: State
    sentence: str
    metrics: dict[str, float] = field(default_factory=dict)  # and "watching": false when nothing was here to watch
    detail: str = ""  # what, beyond the state, is news when it changes (a counter that grew); not shown
    ja: str = ""  # the sentence in Japanese, for `[alerts] language = "ja"`; empty: the English serves

    @property
    def watching(self) -> bool:
        """False for a check that found nothing here to watch (no md arrays, no disks): ok, but not health."""
        return bool(self.metrics.get("watching", True))

    def said(self, language: str) -> str:
        return self.ja if language == "ja" and self.ja else self.sentence

    def as_json(self) -> dict[str, Any]:
        shown = asdict(self)
        del shown["detail"], shown["ja"]
        return {**shown, "state": str(self.state)}


def not_watching(check: str, why: str, ja: str) -> Result:
    """A check with nothing here to watch: ok, and saying so and why, so that silence is never taken for
    health. (Something it should watch and cannot is a warning instead, from the check itself.)"""
    return Result(check, State.OK, f"not watching: {why}.", {"watching": False}, ja=f"監視していません: {ja}。")


def worst(results: list[Result]) -> State:
    return max((result.state for result in results), default=State.OK)
