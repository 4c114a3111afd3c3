"""The daemon's log lines, written without a LogRecord, read as logging's Formatter wrote them."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from jitaku import log


@pytest.fixture
def stderr(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    jitaku = logging.getLogger("jitaku")
    kept = jitaku.handlers[:], jitaku.level, jitaku.propagate
    root = logging.getLogger()
    root_kept = root.handlers[:], root.level
    log.setup()
    yield stream
    jitaku.handlers[:], jitaku.level, jitaku.propagate = kept
    root.handlers[:], root.level = root_kept[0], root_kept[1]


def test_an_event_is_one_line_with_time_level_and_quoted_values(stderr: io.StringIO) -> None:
    log.event("accepted", queue_id="4Q", size=512, user=None, reply='550 "no"\r\n', subject="\x1b[31mred")
    log.event("queue_stuck", level=logging.WARNING, reason="")
    logging.getLogger("jitaku").info("not an event")  # through logging, the same format
    lines = stderr.getvalue().splitlines()
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
    assert re.fullmatch(
        stamp + r' INFO event=accepted queue_id=4Q size=512 reply="550 \\"no\\"\\r\\n" subject=\\x1b\[31mred',
        lines[0],
    )
    assert re.fullmatch(stamp + ' WARNING event=queue_stuck reason=""', lines[1])
    assert re.fullmatch(stamp + " INFO not an event", lines[2])
    assert len(lines) == 3


def test_a_handler_added_by_someone_else_still_gets_records(
    stderr: io.StringIO, caplog: pytest.LogCaptureFixture
) -> None:
    jitaku = logging.getLogger("jitaku")
    jitaku.addHandler(caplog.handler)
    try:
        log.event("delivered", to="a@example.test")
    finally:
        jitaku.removeHandler(caplog.handler)
    assert [record.getMessage() for record in caplog.records] == ["event=delivered to=a@example.test"]
    assert "event=delivered to=a@example.test" in stderr.getvalue()
