"""Where a message received over SMTP waits until the pipeline takes it: in memory while it is small, in an
unlinked file once it is large; and how many bytes of waiting messages the pipeline holds at once.

Ten clients sending 22 MB each cost the daemon 895 MB, and one DATA line without CRLF grew memory without
bound (issue 15). Now DATA costs a connection at most IN_MEMORY bytes, and the process at most MEMORY_TOTAL
in all; the rest is on disk, in a file with no name (gone with the process, even after kill -9). Spooling
to disk is what lets ten clients each holding half a message all finish: nothing they send waits for
memory. The pipeline then loads one message at a time while they are large (LOADED_TOTAL), a wait that
depends on no client, so it cannot deadlock.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import tempfile
from pathlib import Path
from typing import BinaryIO

IN_MEMORY = 1 << 20  # a message up to 1 MiB (nearly all mail) is never written to disk
MEMORY_TOTAL = 16 << 20  # the process's DATA in memory, all connections together; past it, to disk
LOADED_TOTAL = 16 << 20  # bytes of messages the pipeline holds at once; a larger one is loaded alone
CHUNK = 64 << 10  # lines are counted against the bounds, and written, this many bytes at a time


class Spooler:
    """Makes each DATA command's Spool, and keeps the process's totals: one per process, shared by every
    SMTP listener in it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.in_memory = 0
        self.loaded = _Budget(LOADED_TOTAL)

    def spool(self) -> Spool:
        return Spool(self)

    def reserve(self, size: int) -> bool:
        if self.in_memory + size > MEMORY_TOTAL:
            return False
        self.in_memory += size
        return True


class Spool:
    """One message as it arrives, line by line (dot-unstuffed, with CRLF)."""

    def __init__(self, spooler: Spooler) -> None:
        self._spooler = spooler
        self._lines: list[bytes] = []
        self._unsettled = 0  # bytes of _lines not yet counted against the bounds (less than CHUNK)
        self._reserved = 0  # bytes of _lines counted in spooler.in_memory
        self._file: BinaryIO | None = None
        self.size = 0

    def add(self, line: bytes) -> None:
        """Keep LINE; OSError when the disk cannot take it."""
        self._lines.append(line)
        self._unsettled += len(line)
        if self._unsettled >= CHUNK:
            self._settle()

    def _settle(self) -> None:
        added, self._unsettled = self._unsettled, 0
        self.size += added
        if self._file is None and self.size <= IN_MEMORY and self._spooler.reserve(added):
            self._reserved += added
            return
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self._spooler.directory, prefix="spool-")
        self._file.write(b"".join(self._lines))
        self._lines.clear()
        self._release()

    def _release(self) -> None:
        self._spooler.in_memory -= self._reserved
        self._reserved = 0

    def discard(self) -> None:
        """Drop what was kept (the message is refused); later lines must not be added."""
        self._lines.clear()
        self._release()
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def total(self) -> int:
        return self.size + self._unsettled

    def loaded(self) -> Loaded:
        """The whole message in memory, for as long as the `async with` block runs, once the process's budget
        of loaded messages has room for it."""
        return Loaded(self)

    def _read(self) -> bytes:
        assert self._file is not None
        self._file.write(b"".join(self._lines))
        self._lines.clear()
        self._file.seek(0)
        return self._file.read()


class Loaded:
    """`Spool.loaded`'s context: a class rather than an asynccontextmanager, whose async generator cost the MX
    a fiftieth of a message's CPU."""

    __slots__ = ("_spool", "_size")

    def __init__(self, spool: Spool) -> None:
        self._spool = spool
        self._size = spool.total

    async def __aenter__(self) -> bytes:
        spool, size = self._spool, self._size
        budget = spool._spooler.loaded
        await budget.take(size)
        try:
            data = b"".join(spool._lines) if spool._file is None else await asyncio.to_thread(spool._read)
            spool.discard()
        except BaseException:
            budget.give(size)
            raise
        return data

    async def __aexit__(self, *exc_info: object) -> None:
        self._spool._spooler.loaded.give(self._size)


class _Budget:
    """A weighted semaphore, first come first served: bytes taken must be given back. An amount larger
    than the whole is granted when nothing else is held, so any message can go through."""

    def __init__(self, total: int) -> None:
        self._total = total
        self._used = 0
        self._waiting: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()

    def _fits(self, size: int) -> bool:
        return self._used == 0 or self._used + size <= self._total

    async def take(self, size: int) -> None:
        if not self._waiting and self._fits(size):
            self._used += size
            return
        waiter = (size, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            if waiter[1].cancelled():
                with contextlib.suppress(ValueError):  # _grant may have passed over it already
                    self._waiting.remove(waiter)
                self._grant()
            else:
                self.give(size)  # granted, but its taker is gone
            raise

    def give(self, size: int) -> None:
        self._used -= size
        self._grant()

    def _grant(self) -> None:
        while self._waiting and (self._waiting[0][1].cancelled() or self._fits(self._waiting[0][0])):
            size, future = self._waiting.popleft()
            if not future.cancelled():
                self._used += size
                future.set_result(None)
