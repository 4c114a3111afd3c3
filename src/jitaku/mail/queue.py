"""The durable outbound queue's worker: attempt due messages, back off on 4xx, bounce on 5xx or age.

State lives only in the database (store/queue.py), so a restart, or a change
of relay in the config, loses nothing: the next attempt simply uses the
transport the daemon was started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import replace

from jitaku import log, store
from jitaku.config import QueueSettings
from jitaku.mail import dsn
from jitaku.mail.pipeline import Arrival, Pipeline
from jitaku.mail.policy import Accepted, Policy
from jitaku.mail.transport import Outcome, Transport
from jitaku.store import Database, Tx
from jitaku.store.queue import QueuedMessage

POLL_SECONDS = 1.0  # how soon a `jitaku queue flush` from another process is noticed
BATCH = 100
NOBODY = "nobody (null sender)"


def retry_delay(attempts: int, settings: QueueSettings) -> float:
    """Exponential backoff: retry_min, twice that, ... capped at retry_max."""
    return float(min(settings.retry_max, settings.retry_min * 2 ** min(attempts, 30)))


class Queue:
    def __init__(
        self,
        settings: QueueSettings,
        database: Database,
        transport: Transport,
        policy: Policy,
        hostname: str,
        postmaster: str,
        concurrency: int,
        pipeline: Pipeline,
        wakeup: asyncio.Event,
        on_personal_delivered: Callable[[Tx, list[tuple[str, str]]], None] | None = None,
    ) -> None:
        """PIPELINE takes the bounces in; WAKEUP is set by whoever queues mail; ON_PERSONAL_DELIVERED gets
        the (VERP sender, recipient) of each personal copy delivered, in the transaction that records it
        (the list runner forgives a member's bounces on a later success)."""
        self._settings = settings
        self._database = database
        self._transport = transport
        self._policy = policy
        self._hostname = hostname
        self._postmaster = postmaster
        self._limit = asyncio.Semaphore(concurrency)
        self._pipeline = pipeline
        self._wakeup = wakeup
        self._on_personal_delivered = on_personal_delivered
        self._in_flight: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        try:
            while True:
                self._wakeup.clear()
                due = await self._database.query(lambda s: store.queue.due(s, time.time(), self._in_flight, BATCH))
                for message in due:
                    self._in_flight.add(message.id)
                    task = asyncio.create_task(self._attempt(message))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can lose a cancel
                    async with asyncio.timeout(POLL_SECONDS):
                        await self._wakeup.wait()
        finally:
            for task in self._tasks:
                task.cancel()

    async def _attempt(self, message: QueuedMessage) -> None:
        try:
            async with self._limit:
                body = await self._database.query(lambda s: store.queue.body_of(s, message.id), snapshot=False)
                if body is None:  # deleted meanwhile (`jitaku queue delete`)
                    return
                message = replace(message, body=body)
                started = time.time()
                try:
                    outcomes = await self._transport.deliver(
                        message.sender, message.recipients, message.body, message.personal, message.id
                    )
                except Exception as error:  # a bug in delivery must not take the queue down: retry later
                    log.event("delivery_crashed", queue_id=message.id, error=repr(error))
                    reply = "4.3.0 a fault in jitaku stopped the delivery (the log has it: event=delivery_crashed)"
                    outcomes = [Outcome(r, False, False, reply, detail=repr(error)) for r in message.recipients]
                await self._record(message, outcomes, time.time() - started)
        except Exception as error:
            log.event("queue_error", queue_id=message.id, error=repr(error))
        finally:
            self._in_flight.discard(message.id)

    async def _record(self, message: QueuedMessage, outcomes: list[Outcome], took: float) -> None:
        now = time.time()
        expired = now - message.created_at >= self._settings.max_age
        delivered = [o for o in outcomes if o.delivered]
        failed = [o for o in outcomes if not o.delivered and (o.permanent or expired)]
        deferred = {o.recipient: o.reply for o in outcomes if not o.delivered and not (o.permanent or expired)}
        done = [o.recipient for o in delivered + failed]
        next_attempt = now + retry_delay(message.attempts, self._settings)

        personal_delivered = [
            (message.personal[o.recipient].sender, o.recipient) for o in delivered if o.recipient in message.personal
        ]

        def record(tx: Tx) -> None:
            store.attempts.record(tx, message.id, done, deferred, next_attempt)
            minute = store.tallies.minute_of(now)
            counts = {
                store.tallies.MAIL_OUT: len(delivered),
                store.tallies.BOUNCED: len(failed),
                store.tallies.DEFERRED: len(deferred),
            }
            store.tallies.add(tx, {(minute, kind): count for kind, count in counts.items()})
            if personal_delivered and self._on_personal_delivered is not None:
                self._on_personal_delivered(tx, personal_delivered)

        bounced = [o for o in failed if self._sender_of(message, o.recipient)]
        try:
            if bounced:
                await self._bounce(message, bounced, record)
            else:
                await self._database.transact(record)
        except Exception as error:  # the attempt itself must be recorded, or the same copies go out again
            log.event("bounce_failed", queue_id=message.id, error=repr(error))
            await self._database.transact(record)
        delay = f"{now - message.created_at:.1f}"
        for outcome in delivered:
            log.event(
                "delivered",
                queue_id=message.id,
                to=outcome.recipient,
                relay=outcome.host,
                dsn=dsn.status_of(outcome),
                delay=delay,
                took=f"{took:.2f}",
                reply=outcome.reply,
            )
        for outcome in failed:
            log.event(
                "bounced",
                queue_id=message.id,
                to=outcome.recipient,
                relay=outcome.host,
                dsn=dsn.status_of(outcome),
                delay=delay,
                expired=expired or None,
                reply=outcome.reply,
                detail=outcome.detail,
                notified=f"<{sender}>" if (sender := self._sender_of(message, outcome.recipient)) else NOBODY,
            )
        for outcome in outcomes:
            if outcome.recipient in deferred:
                log.event(
                    "deferred",
                    queue_id=message.id,
                    to=outcome.recipient,
                    relay=outcome.host,
                    dsn=dsn.status_of(outcome),
                    delay=delay,
                    attempts=message.attempts + 1,
                    next_attempt=f"{next_attempt - now:.0f}s",
                    reply=outcome.reply,
                    detail=outcome.detail,
                )

    @staticmethod
    def _sender_of(message: QueuedMessage, recipient: str) -> str:
        own = message.personal.get(recipient)
        return own.sender if own is not None else message.sender

    async def _bounce(self, message: QueuedMessage, failed: list[Outcome], record: Callable[[Tx], None]) -> None:
        """Queue a DSN to each sender in the same transaction that forgets the failed recipients.

        A personal copy's bounce goes to its own (VERP) sender, so a list learns which member failed.
        """
        by_sender: dict[str, list[Outcome]] = {}
        for outcome in failed:
            by_sender.setdefault(self._sender_of(message, outcome.recipient), []).append(outcome)
        arrivals = []
        for sender, outcomes in by_sender.items():
            decision = await self._policy.recipient(sender, authenticated=True)
            if not isinstance(decision, Accepted):
                log.event("bounce_dropped", queue_id=message.id, sender=f"<{sender}>", reason=decision.reply)
                continue
            report = dsn.bounce(
                reporting_host=self._hostname,
                from_address=self._postmaster,
                to=sender,
                queue_id=message.id,
                arrival_date=message.created_at,
                failed=outcomes,
                original=message.body,
            )
            arrivals.append(Arrival("", (decision,), report, session=None))
        if not arrivals:
            await self._database.transact(record)
            return
        # every bounce but the last is committed first: a crash between them repeats a bounce, never loses one
        for arrival in arrivals[:-1]:
            await self._pipeline.accept(arrival)
        await self._pipeline.accept(arrivals[-1], also=record)
