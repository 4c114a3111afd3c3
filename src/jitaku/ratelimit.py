"""Failed-login limits per client address, shared by every protocol that takes passwords."""

from __future__ import annotations

import time
from collections import defaultdict, deque


class FailureLimiter:
    """After MAX_FAILURES failed logins within WINDOW seconds, refuse that address for BLOCK seconds."""

    def __init__(self, max_failures: int = 5, window: float = 300.0, block: float = 900.0) -> None:
        self._max = max_failures
        self._window = window
        self._block = block
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)
        self._blocked_until: dict[str, float] = {}

    def blocked(self, client: str) -> bool:
        until = self._blocked_until.get(client)
        if until is None:
            return False
        if time.monotonic() >= until:
            del self._blocked_until[client]
            return False
        return True

    def failed(self, client: str) -> None:
        now = time.monotonic()
        recent = self._failures[client]
        recent.append(now)
        while recent and recent[0] < now - self._window:
            recent.popleft()
        if len(recent) >= self._max:
            self._blocked_until[client] = now + self._block
            del self._failures[client]

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)
