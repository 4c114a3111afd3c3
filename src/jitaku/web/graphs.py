"""Graphs as inline SVG, drawn on the server: readable on a phone, no script, nothing fetched."""

from __future__ import annotations

from dataclasses import dataclass

WIDTH, HEIGHT = 600.0, 140.0
# Room inside the box for a line's stroke and its newest point's dot: without it a zero value is drawn on the
# bottom edge, half cut off, and the newest point, at the right edge, loses half its dot.
MARGIN = 8.0
DOT = 6.0  # the newest point's radius
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")
Points = list[tuple[float, float]]


@dataclass(frozen=True)
class Line:
    label: str
    colour: str
    points: str  # SVG polyline points
    # The newest point, where a dot is drawn: a line of one point is a dot, since a polyline of one point draws
    # nothing. None while the line has no points.
    newest: tuple[float, float] | None
    value: float | None  # the newest point's value, for the legend


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


def draw(title: str, lines: dict[str, Points], start: float, end: float) -> Graph:
    """LINES (oldest point first) scaled into the box. A point dated outside [START, END] (an hour's count
    dated at the hour's middle, which may be later than now) is drawn at the box's edge, never past it."""
    top = max((value for points in lines.values() for _at, value in points), default=0.0) or 1.0

    def place(at: float, value: float) -> tuple[float, float]:
        across = (min(max(at, start), end) - start) / (end - start)
        return MARGIN + across * (WIDTH - 2 * MARGIN), HEIGHT - MARGIN - value / top * (HEIGHT - 2 * MARGIN)

    drawn = []
    for number, (label, points) in enumerate(sorted(lines.items())):
        placed = [place(at, value) for at, value in points]
        drawn.append(
            Line(
                label,
                COLOURS[number % len(COLOURS)],
                " ".join(f"{x:.1f},{y:.1f}" for x, y in placed),
                placed[-1] if placed else None,
                points[-1][1] if points else None,
            )
        )
    return Graph(title, top, drawn, not any(lines.values()))
