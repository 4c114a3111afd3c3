"""jitaku.mail.lineserver without a socket: a stop that comes with a client's line still stops the session."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from jitaku.mail.lineserver import Connection


def test_a_cancel_that_comes_with_a_line_is_not_lost() -> None:
    """The daemon's stop cancels each session and waits for it: in 3.11, asyncio.wait_for returned the line and
    dropped the cancel, and the session served on while the stop waited."""

    async def scene() -> bytes:
        reader = asyncio.StreamReader()
        connection = Connection(reader, cast(asyncio.StreamWriter, None), 1.0, "imap", b"* BYE")
        session = asyncio.create_task(connection.line(timeout=60))
        await asyncio.sleep(0)  # waiting for a line
        reader.feed_data(b"a1 NOOP\r\n")
        session.cancel()  # in the same turn of the event loop
        return await session

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scene())
