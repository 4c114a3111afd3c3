"""HTTP Range requests (RFC 9110 §14) for the site's media: a phone's <video> asks for the file in parts, and
will not play or seek without a 206. One range a request: a list of several is answered with the whole file,
which RFC 9110 allows, and which no browser's player asks for."""

from __future__ import annotations

import re
from typing import Literal

_RANGE = re.compile(rb"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*")
UNSATISFIABLE: Literal["unsatisfiable"] = "unsatisfiable"


def byte_range(header: bytes, size: int) -> tuple[int, int] | Literal["unsatisfiable"] | None:
    """The first and last byte (inclusive) of a body of SIZE bytes that a Range HEADER asks for; UNSATISFIABLE
    when it asks only past the end (416); None when it is not one range of bytes (the whole body, 200)."""
    found = _RANGE.fullmatch(header)
    if found is None or not (found.group(1) or found.group(2)):
        return None
    first, last = found.group(1), found.group(2)
    if not first:  # bytes=-N: the last N bytes
        suffix = int(last)
        return (max(size - suffix, 0), size - 1) if suffix and size else UNSATISFIABLE
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # invalid: ignored, as RFC 9110 §14.1.1 says
    return (start, end) if start < size else UNSATISFIABLE
