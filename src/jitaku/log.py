"""Logs are events: one line each, `event=NAME key=value ...`, greppable like Postfix's maillog.

`jitaku serve` writes its own lines straight to stderr (`_Lines`), in the format logging's Formatter gave
them ("2025-01-02 03:04:05,678 INFO event=..."): a LogRecord, its formatTime (strftime and localtime) and
the Logger's walk to its handlers cost half of the 16 us a line took, and the MX writes a line a message.
Whoever adds a handler of their own (pytest's caplog, a library user) gets the records as before.
"""

from __future__ import annotations

import collections
import logging
import re
import sys
import time
from typing import Any, TextIO

from jitaku.terminal import visible

_logger = logging.getLogger("jitaku")
EVERY = 60.0  # seconds between two lines of a Throttled kind of event


class _Lines(logging.StreamHandler[TextIO]):
    """The daemon's one handler, whose lines `event` also writes without a LogRecord."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self._second = -1
        self._stamp = ""

    def write_line(self, level: int, message: str) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:  # as Formatter.formatTime, made once a second
            self._second, self._stamp = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        line = f"{self._stamp},{int((now - second) * 1000):03d} {logging.getLevelName(level)} {message}\n"
        with self.lock:  # type: ignore[union-attr]  # made by Handler.__init__
            self.stream.write(line)
            self.stream.flush()


_direct: _Lines | None = None


def setup(level: int = logging.INFO) -> None:
    global _direct
    handler = _direct = _Lines(sys.stderr)
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False
    # Libraries (asyncio, sqlalchemy) speak only when something is wrong.
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


# what makes a value need quotes, or `visible`'s spelling out (terminal._CONTROL's characters)
_PLAIN = re.compile('[ "=\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]')


def _value(value: Any) -> str:
    """One value, quoted when it must be; a remote server's reply or a stranger's text cannot steer the
    terminal that `jitaku serve` or `journalctl` prints to."""
    if type(value) is int:  # a count or a size: digits, nothing to quote or spell out
        return str(value)
    text = str(value)
    if text and _PLAIN.search(text) is None:
        return text
    if text == "" or any(ch in text for ch in ' "=\n\r\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    return visible(text)


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event; fields whose value is None are left out."""
    if not _logger.isEnabledFor(level):
        return
    line = " ".join(
        [f"event={name}"] + [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
    )
    handlers = _logger.handlers
    direct = _direct
    if direct is not None and len(handlers) == 1 and handlers[0] is direct and not _logger.filters:
        try:
            direct.write_line(level, line)
            return
        except Exception:  # noqa: BLE001 - a closed or broken stderr: logging's own handling reports it
            pass
    _logger.log(level, line)


class Throttled:
    """One line per EVERY seconds for each kind of event, counting those it leaves out: for events a client
    can cause by the thousand a second (refused connections, failed accepts, refused password checks)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}
        self._left_out: collections.Counter[str] = collections.Counter()

    def event(self, kind: str, name: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -EVERY) < EVERY:
            self._left_out[kind] += 1
            return
        self._last[kind] = now
        event(name, **fields, left_out=self._left_out.pop(kind, 0))
