"""Logs are events: one line each, `event=NAME key=value ...`, greppable like Postfix's maillog."""

from __future__ import annotations

import logging
import sys
from typing import Any

_logger = logging.getLogger("jitaku")


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    _logger.handlers[:] = [handler]
    _logger.setLevel(level)
    _logger.propagate = False
    # Libraries (aiosmtpd's "mail.log", asyncio) speak only when something is wrong.
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def _value(value: Any) -> str:
    text = str(value)
    if text == "" or any(ch in text for ch in ' "=\n\r\t'):
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'
    return text


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event; fields whose value is None are left out."""
    if not _logger.isEnabledFor(level):
        return
    parts = [f"event={name}"] + [f"{key}={_value(value)}" for key, value in fields.items() if value is not None]
    _logger.log(level, " ".join(parts))
