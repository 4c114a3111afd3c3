"""Memories of pure functions whose inputs strangers control: only small inputs are remembered.

An lru_cache keyed on a From field or a DNS record would hold whatever size a sender chose, a thousand
times over; with `small_inputs_cache` an input longer than MAX_CHARS (all its strings and bytes
together) is computed every time instead, so the memory stays within MAXSIZE x MAX_CHARS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


def small_inputs_cache(maxsize: int, max_chars: int) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """lru_cache(MAXSIZE) for calls whose str and bytes arguments (and those in tuple arguments) come to
    at most MAX_CHARS."""

    def decorate(function: Callable[P, T]) -> Callable[P, T]:
        remembered = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            if _size(args) + (_size(tuple(kwargs.values())) if kwargs else 0) <= max_chars:
                return remembered(*args, **kwargs)  # type: ignore[arg-type]
            return function(*args, **kwargs)

        return call

    return decorate


_TEXT = (str, bytes)  # a tuple, not `str | bytes`: that union would be made anew at each call


def _size(values: tuple[object, ...]) -> int:
    size = 0
    for value in values:
        if isinstance(value, _TEXT):
            size += len(value)
        elif isinstance(value, tuple):
            size += _size(value)
    return size
