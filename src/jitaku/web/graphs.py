"""Graphs as inline SVG, drawn on the server: readable on a phone, no script, nothing fetched."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 600.0, 140.0
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")
Points = list[tuple[float, float]]


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    points: str  # SVG polyline points


@dataclass(frozen=True)
class Graph:
    title: str
    top: float  # the value at the top edge
    lines: list[Line]
    empty: bool


def bucket(points: Points, start: float, end: float, buckets: int = 120) -> Points:
    """The mean of each of BUCKETS equal slices of [START, END): a week of minutes fits 600 pixels."""
    width = (end - start) / buckets
    sums: dict[int, list[float]] = {}
    for at, value in points:
        if start <= at < end:
            sums.setdefault(int((at - start) // width), []).append(value)
    return [(start + (index + 0.5) * width, sum(values) / len(values)) for index, values in sorted(sums.items())]


def draw(title: str, bucketed: dict[str, Points], start: float, end: float) -> Graph:
    """BUCKETED lines (see `bucket`) scaled into the picture."""
    top = max((value for points in bucketed.values() for _at, value in points), default=0.0) or 1.0
    lines = []
    for number, (label, points) in enumerate(sorted(bucketed.items())):
        drawn = " ".join(
            f"{(at - start) / (end - start) * WIDTH:.1f},{HEIGHT - value / top * (HEIGHT - 10):.1f}"
            for at, value in points
        )
        lines.append(Line(label, COLOURS[number % len(COLOURS)], drawn))
    return Graph(title, top, lines, not any(bucketed.values()))
