"""The filters as the pipeline runs them: every engine `[filters]` turns on asked at once about one message, each
within `[filters] timeout`, so that the slowest engine sets the cost and not their sum; mail from an
authenticated user goes to the virus scanner alone. The virus scanner reads nothing of our checks, so it is
asked as soon as the message is in (`begin`), while SPF, DKIM and DMARC are checked; the spam engines read our
Authentication-Results and are asked once Check has written them (`Scan.finish`). An engine that gives no
verdict is a failure for decision.py's `on_error`, logged in one line naming it, never an exception."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING

from jitaku import log
from jitaku.config import FiltersSettings
from jitaku.mail.filters.verdict import EngineError, Envelope, Scanner, Verdict

if TYPE_CHECKING:
    from jitaku.mail.filters.rspamd import Rspamd
    from jitaku.mail.filters.spamassassin import SpamAssassin

VIRUS_SCANNERS = frozenset({"clamav"})  # what authenticated mail is still scanned by
# What clamd names a message too large or deep for its limits (AlertExceedsMax): not a virus found, a scan not
# finished; refusing it would refuse every large attachment
LIMITS = "Heuristics.Limits.Exceeded"


def scanners(settings: FiltersSettings) -> list[Scanner]:
    """The engines SETTINGS turns on, each with its own connections; imported only when one is on, so that a
    daemon without filters goes without their clients."""
    found: list[Scanner] = []
    if settings.clamav is not None:
        from jitaku.mail.filters.clamav import Clamav

        found.append(Clamav(settings.clamav, settings.timeout))
    return found + spam_engines(settings)


def spam_engines(settings: FiltersSettings) -> list[Rspamd | SpamAssassin]:
    """The spam engines SETTINGS turns on (they scan and learn; ClamAV only scans), each with its own
    connections, imported only when on."""
    found: list[Rspamd | SpamAssassin] = []
    if settings.rspamd is not None:
        from jitaku.mail.filters.rspamd import Rspamd

        found.append(Rspamd.from_settings(settings))
    if settings.spamassassin is not None:
        from jitaku.mail.filters.spamassassin import SpamAssassin

        found.append(SpamAssassin.from_settings(settings))
    return found


def learning_on(settings: FiltersSettings) -> bool:
    """Whether an engine that learns is on (rspamd, SpamAssassin): then moves in and out of Junk teach it."""
    return settings.rspamd is not None or settings.spamassassin is not None


class Scanning:
    def __init__(self, settings: FiltersSettings, engines: Sequence[Scanner]) -> None:
        self._timeout = settings.timeout
        self._engines = list(engines)

    @property
    def on(self) -> bool:
        return bool(self._engines)

    def begin(self, message: bytes, envelope: Envelope, authenticated: bool) -> Scan:
        """Ask the virus scanners about MESSAGE now; the spam engines wait for `Scan.finish`."""
        asked = [e for e in self._engines if not authenticated or e.name in VIRUS_SCANNERS]
        early = [asyncio.create_task(self.ask(e, message, envelope)) for e in asked if e.name in VIRUS_SCANNERS]
        return Scan(self, [e for e in asked if e.name not in VIRUS_SCANNERS], envelope, early)

    async def run(
        self, message: bytes, envelope: Envelope, authenticated: bool
    ) -> tuple[list[Verdict], list[EngineError]]:
        """The verdicts of the engines that gave one, and the failures of those that did not."""
        return await self.begin(message, envelope, authenticated).finish(message)

    async def ask(self, engine: Scanner, message: bytes, envelope: Envelope) -> Verdict | EngineError:
        try:
            async with asyncio.timeout(self._timeout + 1):  # the client's own bound, and ours should it fail
                verdict = await engine.scan(message, envelope)
            if verdict.virus is not None and verdict.virus.startswith(LIMITS):
                return Verdict(verdict.engine, reason=f"not scanned whole ({verdict.virus})", whole=False)
            return verdict
        except EngineError as error:
            return error
        except TimeoutError:
            return EngineError(engine.name, f"no answer within {self._timeout:g} s")
        except Exception as error:  # a client's bug must not cost the message: on_error decides, as for a failure
            return EngineError(engine.name, f"failed: {error!r}"[:200])

    async def close(self) -> None:
        for engine in self._engines:
            await engine.close()


class Scan:
    """One message's scan under way: the virus scanners' answers coming, the spam engines' still to ask."""

    def __init__(
        self,
        scanning: Scanning,
        later: list[Scanner],
        envelope: Envelope,
        early: list[asyncio.Task[Verdict | EngineError]],
    ) -> None:
        self._scanning = scanning
        self._later = later
        self._envelope = envelope
        self._early = early

    async def finish(self, message: bytes) -> tuple[list[Verdict], list[EngineError]]:
        """Ask the spam engines about MESSAGE (now with our Authentication-Results) and gather every answer: the
        verdicts of the engines that gave one, and the failures of those that did not."""
        envelope = self._envelope
        later = (self._scanning.ask(engine, message, envelope) for engine in self._later)
        answers = await asyncio.gather(*self._early, *later)
        verdicts = [a for a in answers if isinstance(a, Verdict)]
        failures = [a for a in answers if isinstance(a, EngineError)]
        for failure in failures:
            log.event("filter_failed", queue_id=envelope.queue_id, engine=failure.engine, error=failure.what)
        for partial in (v for v in verdicts if not v.whole):
            log.event("filter_partial", queue_id=envelope.queue_id, engine=partial.engine, why=partial.reason)
        return verdicts, failures

    def cancel(self) -> None:
        """The message went no further (refused, or its session gone): stop the scans under way."""
        for task in self._early:
            task.cancel()
