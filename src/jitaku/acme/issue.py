"""A stand-in with helper A's names (branch acme-issue) so that this branch type-checks; dropped at the merge."""

from __future__ import annotations

from dataclasses import dataclass

from jitaku.config import Config


class AcmeError(Exception):
    def __init__(self, sentence: str, retry_after: float | None = None) -> None:
        super().__init__(sentence)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Issued:
    names: tuple[str, ...]
    not_after: float


def obtain(config: Config, now: float) -> Issued:
    raise AcmeError("not built yet.")


def due(config: Config, now: float) -> str | None:
    return None


def due_at(config: Config) -> float | None:
    return None
