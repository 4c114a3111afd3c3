"""The dashboard's graphs as drawn: from the first point (a dot and its value, since a polyline of one point
draws nothing), and always inside the box, whatever the points' dates and values."""

from __future__ import annotations

from jitaku.web import graphs

START, END = 1_800_000_000.0, 1_800_086_400.0  # 24 hours


def inside(x: float, y: float) -> bool:
    """Whether a dot at (X, Y) is whole within the picture."""
    return graphs.DOT <= x <= graphs.WIDTH - graphs.DOT and graphs.DOT <= y <= graphs.HEIGHT - graphs.DOT


def test_a_line_of_one_point_is_a_dot_with_its_value() -> None:
    graph = graphs.draw("Queue", {"size": [(END - 360, 3.0)]}, START, END)
    (line,) = graph.lines
    assert not graph.empty and line.value == 3.0 and line.newest is not None and inside(*line.newest)
    assert line.points == f"{line.newest[0]:.1f},{line.newest[1]:.1f}"


def test_the_newest_point_of_each_line_is_the_dot_and_the_value() -> None:
    graph = graphs.draw("Traffic", {"in": [(START + 60, 1.0), (END - 60, 4.0)], "out": []}, START, END)
    drawn, empty = graph.lines
    assert (
        drawn.value == 4.0
        and drawn.newest is not None
        and drawn.points.endswith(f"{drawn.newest[0]:.1f},{drawn.newest[1]:.1f}")
    )
    assert (empty.label, empty.newest, empty.value, empty.points) == ("out", None, None, "")


def test_points_at_the_edges_or_dated_past_them_are_drawn_inside_the_box() -> None:
    # an hour's count dated at the middle of the hour: the current hour's lies after now, the oldest before START
    lines = {"in": [(START - 1800, 0.0), (START, 5.0), (END, 0.0), (END + 1800, 5.0)]}
    (line,) = graphs.draw("Mail per hour", lines, START, END).lines
    for point in line.points.split():
        x, y = (float(number) for number in point.split(","))
        assert inside(x, y), point


def test_a_graph_with_no_points_is_empty() -> None:
    graph = graphs.draw("Disk temperature", {}, START, END)
    assert graph.empty and graph.lines == [] and graph.top == 1.0
