"""A standby counts its web admin's failed logins in memory (its store is the primary's, read-only): the same
limits as the store's count."""

from __future__ import annotations

import asyncio

from jitaku.config import LoginSettings
from jitaku.ratelimit import MemoryLoginLimiter


def test_failures_lock_out_the_user_from_that_address_until_the_window_passes() -> None:
    now = [1000.0]
    limiter = MemoryLoginLimiter(LoginSettings(max_failures=3, max_failures_per_address=10, window=60), lambda: now[0])

    async def go() -> None:
        for _ in range(3):
            attempt = await limiter.start("192.0.2.1", "Admin@example.test")
            assert attempt is not None
            await limiter.failed(attempt)
        assert not await limiter.allows("192.0.2.1", "admin@example.test")
        assert await limiter.start("192.0.2.1", "admin@example.test") is None
        assert await limiter.allows("192.0.2.2", "admin@example.test")  # from elsewhere, still allowed
        ok = await limiter.start("192.0.2.2", "admin@example.test")
        assert ok is not None
        await limiter.succeeded(ok)
        now[0] += 61
        assert await limiter.allows("192.0.2.1", "admin@example.test")

    asyncio.run(go())
