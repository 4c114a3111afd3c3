"""Logs are events: one line each, `event=NAME key=value ...`, greppable like Postfix's maillog."""

from __future__ import annotations

import collections
import logging
import sys
import time
from typing import Any

from jitaku.terminal import visible

_logger = logging.getLogger("jitaku")
EVERY = 60.0  # seconds between two lines of a Throttled kind of event


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False
    # Libraries (asyncio, sqlalchemy) speak only when something is wrong.
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def _value(value: Any) -> str:
    """One value, quoted when it must be; a remote server's reply or a stranger's text cannot steer the
    terminal that `jitaku serve` or `journalctl` prints to."""
    text = str(value)
    if text == "" or any(ch in text for ch in ' "=\n\r\t'):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    return visible(text)


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event; fields whose value is None are left out."""
    if not _logger.isEnabledFor(level):
        return
    parts = [f"event={name}"] + [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
    _logger.log(level, " ".join(parts))


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
