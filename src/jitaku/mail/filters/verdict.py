"""What every engine is told of a message and what it answers, so that the pipeline weighs them alike: a score
(spam engines), an engine's own action (rspamd's "reject" for GTUBE counts whatever the score), the rules that
fired, a virus's signature. An engine that cannot answer raises EngineError, which `[filters] on_error` decides."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Envelope:
    """What an engine weighs besides the message, as the MX saw it."""

    client: str  # the client's IP address
    helo: str
    sender: str  # MAIL FROM, "" for the null sender
    recipients: tuple[str, ...]
    queue_id: str  # for the engines' logs and ours
    user: str | None = None  # the authenticated user (submission): scanned for viruses only
    hostname: str = ""  # the client's name as DNS gives it, "" for none


@dataclass(frozen=True)
class Verdict:
    engine: str  # "rspamd", "spamassassin", "clamav"
    score: float | None = None  # None: the engine scores nothing (clamav)
    action: str = ""  # the engine's own decision where it has one (rspamd: "reject", "add header", "no action")
    symbols: tuple[str, ...] = field(default=())  # the rules that fired, as the engine names them
    virus: str | None = None  # the signature's name
    reason: str = ""  # short, for an SMTP reply or a header: why the engine thinks so
    whole: bool = True  # False: the engine saw only part of the message (clamd's limits, `[filters.clamav] max_size`)


class EngineError(Exception):
    """An engine down, slow, or answering what its protocol does not allow: one line naming the engine."""

    def __init__(self, engine: str, what: str) -> None:
        super().__init__(f"{engine}: {what}")
        self.engine = engine
        self.what = what


def reason(error: OSError) -> str:
    """ERROR in a few words ("Connection refused"): asyncio's connect errors carry "Connect call failed (...)"
    as their text, which says less than their errno."""
    return os.strerror(error.errno) if error.errno else str(error) or type(error).__name__


class Scanner(Protocol):
    name: str

    async def scan(self, message: bytes, envelope: Envelope) -> Verdict:
        """The engine's verdict on MESSAGE; EngineError when it gives none within `[filters] timeout`."""
        ...

    async def close(self) -> None: ...


class Learner(Protocol):
    name: str

    async def learn(self, message: bytes, spam: bool) -> bool:
        """Teach the engine MESSAGE as spam (or ham); False when it knew it already. EngineError as scan."""
        ...

    async def close(self) -> None: ...
