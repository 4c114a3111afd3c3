"""The learner of the main process (issue 23): it takes what IMAP commands recorded for the spam engines to
learn (store/training.py), teaches each engine that learns and is on (rspamd's controller, spamd's TELL), and
records the message learned, so that IMAP never waits on an engine. An engine that fails leaves the item for a
later try, a few times (training.RETRIES), each failure one log line naming it; then the item is given up. An
item to learn as ham only if our filter had called the message spam is checked here, against the message's
header, outside any transaction."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Sequence

from jitaku import log
from jitaku.config import FiltersSettings
from jitaku.mail.filters.scanning import spam_engines
from jitaku.mail.filters.verdict import EngineError, Learner
from jitaku.store import Database, training

POLL_SECONDS = 1.0  # IMAP may run in worker processes: nobody can wake us, so look this often


def learners(settings: FiltersSettings) -> list[Learner]:
    """The engines SETTINGS turns on that learn (ClamAV does not), each with its own connections."""
    return list(spam_engines(settings))


class Learning:
    def __init__(self, database: Database, engines: Sequence[Learner]) -> None:
        self._database = database
        self._engines = list(engines)

    async def run(self) -> None:
        try:
            while True:
                try:
                    if await self.once() >= training.BATCH:
                        continue  # more are waiting (a client marking a whole folder): on without a pause
                except Exception as error:  # the store failing must not stop the daemon's mail
                    log.event("learn_error", error=repr(error))
                await asyncio.sleep(POLL_SECONDS)
        finally:
            for engine in self._engines:
                with contextlib.suppress(Exception):
                    await engine.close()

    async def once(self) -> int:
        """Learn what is due now; how many items were handled."""
        items = await self._database.query(lambda s: training.pending(s, time.time()), snapshot=False)
        for item in items:
            await self._learn(item)
        return len(items)

    async def _learn(self, item: training.Pending) -> None:
        message, digest = await asyncio.to_thread(_read, self._database, item)
        if message is None:  # deleted before it was learned
            await self._database.transact(lambda tx: training.finish(tx, item, None))
            return
        if not digest:  # a client's NonJunk on mail we passed
            # most such items end so, one for each new message Thunderbird's filter passes: no fsync for them
            await self._database.transact(lambda tx: training.finish(tx, item, None), durable=False)
            return
        if await self._database.query(lambda s: training.learned(s, digest, item.spam), snapshot=False):
            await self._database.transact(lambda tx: training.finish(tx, item, None))
            return
        kind = "spam" if item.spam else "ham"
        done = set(item.engines)
        for engine in self._engines:
            if engine.name in done:
                continue
            try:
                new = await engine.learn(message, item.spam)
            except EngineError as error:
                gave_up = item.tries >= len(training.RETRIES)
                log.event(
                    "learn_failed",
                    engine=engine.name,
                    kind=kind,
                    digest=digest[:12],
                    error=error.what,
                    retry="no (given up)" if gave_up else f"in {training.RETRIES[item.tries]:.0f}s",
                )
                continue
            done.add(engine.name)
            log.event("learned", engine=engine.name, kind=kind, digest=digest[:12], new=new)
        if done >= {engine.name for engine in self._engines} or item.tries >= len(training.RETRIES):
            learned = digest if done >= {engine.name for engine in self._engines} else None
            await self._database.transact(lambda tx: training.finish(tx, item, learned))
        else:
            due = time.time() + training.RETRIES[item.tries]
            await self._database.transact(lambda tx: training.retry(tx, item, done, due))


def _read(database: Database, item: training.Pending) -> tuple[bytes | None, str]:
    """ITEM's message (None: deleted since) and its digest, "" when it is not to be learned (a conditional item
    whose message our filter had not called spam); in a thread, as a body of megabytes is read and hashed."""
    message = database.query_now(lambda s: training.body(s, item.message_id))
    if message is None:
        return None, ""
    if item.if_called_spam and not training.said_spam(message):
        return message, ""
    return message, hashlib.sha256(message).hexdigest()
