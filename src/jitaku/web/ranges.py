"""HTTP Range requests (RFC 9110 §14) for the site's media: a phone's <video> asks for the file in parts, and
will not play or seek without a 206. One range a request: a list of several is answered with the whole file,
which RFC 9110 allows, and which no browser's player asks for."""

from __future__ import annotations

import re
from typing import Literal

_RANGE = re.compile(rb"\s*bytes\s*=\s*([0-9]*)\s*-\s*([0-9]*)\s*")
_BEYOND = 10**18  # what a longer number stands for: past the end of any file (int() refuses 4,300 digits)
UNSATISFIABLE: Literal["unsatisfiable"] = "unsatisfiable"


def byte_range(header: bytes, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The first and last byte (inclusive) of a body of SIZE bytes that a Range HEADER asks for; UNSATISFIABLE
    when it asks only past the end (416); None when it is not one range of bytes (the whole body, 200)."""
    found = _RANGE.fullmatch(header)
    if found is None or not (found.group(1) or found.group(2)):
        return None
    first, last = found.group(1), found.group(2)
    if not first:  # bytes=-N: the last N bytes
        suffix = _number(last)
        return (max(size - suffix, 0), size - 1) if suffix and size else UNSATISFIABLE
    start = _number(first)
    end = min(_number(last), size - 1) if last else size - 1
    if last and _number(last) < start:
        return None  # invalid: ignored, as RFC 9110 §14.1.1 says
    return (start, end) if start < size else UNSATISFIABLE


def _number(digits: bytes) -> int:
    """DIGITS as a number, _BEYOND at most: a header may hold thousands of them."""
    digits = digits.lstrip(b"0") or b"0"
    return int(digits) if len(digits) < 19 else _BEYOND
