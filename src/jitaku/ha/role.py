"""Which part this box plays in the pair, in one place: "primary" (it takes mail and writes) or "standby" (its
cluster replays the primary's WAL, read-only). The cluster says it (pg_is_in_recovery()); an SQLite store has no
standby, so it is always primary.

The daemon asks at each start of its services and serves by the answer (jitaku.ha.mode, jitaku.services): a
standby's mail listeners refuse, its writers stay idle. A promotion (`jitaku failover`, pg_ctl promote, a person)
makes the cluster a primary: a standby's main process looks every PROMOTION_POLL seconds (until_promoted) and its
services then start again, as a primary's, in the same process on the same sockets."""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING, Any, Literal

from jitaku import log
from jitaku.config import Config

if TYPE_CHECKING:
    import psycopg

Role = Literal["primary", "standby"]
PRIMARY: Role = "primary"
STANDBY: Role = "standby"
CONNECT_TIMEOUT = 10  # seconds
PROMOTION_POLL = 1.0  # seconds between a standby daemon's looks at its cluster


def postgresql(config: Config) -> bool:
    return config.database_url.startswith(("postgresql", "postgres:"))


def connect(
    config: Config, timeout: float = CONNECT_TIMEOUT, statement_timeout: float | None = None
) -> psycopg.Connection[tuple[object, ...]]:
    """A connection of its own to the store's PostgreSQL (autocommit: reads of the server's state, or DDL), within
    TIMEOUT seconds: whole ones, at least 2 (libpq's connect_timeout takes whole seconds, 0 for none at all, and
    counts each address it tries; one 1 s is too short for a loaded box). STATEMENT_TIMEOUT: seconds each of its
    statements may take, for a look in a thread that nothing can cancel (a stop waits for it)."""
    import psycopg

    url = config.database_url
    scheme, rest = url.split("://", 1)
    seconds = max(2, math.ceil(timeout))
    options = None if statement_timeout is None else f"-c statement_timeout={round(statement_timeout * 1000)}"
    return psycopg.connect(
        f"{scheme.split('+', 1)[0]}://{rest}", autocommit=True, connect_timeout=seconds, options=options
    )


def one(connection: psycopg.Connection[Any], query: str) -> Any:
    """QUERY's one value (None without a row): the server's state, read a value at a time."""
    row = connection.execute(query).fetchone()
    return row[0] if row is not None else None


def current(config: Config) -> Role:
    """This box's role now."""
    if not postgresql(config):
        return PRIMARY
    with connect(config) as connection:
        return STANDBY if one(connection, "SELECT pg_is_in_recovery()") else PRIMARY


async def until_promoted(config: Config) -> None:
    """Return once this box's cluster is no longer in recovery. Each look is a connection of its own in a thread
    (psycopg blocks; the event loop serves meanwhile), bounded by CONNECT_TIMEOUT: a cluster that does not answer
    is logged once per change and looked at again, never taken for a promotion."""
    failing = False
    while True:
        await asyncio.sleep(PROMOTION_POLL)
        try:
            standby = await asyncio.to_thread(current, config) == STANDBY
        except Exception as error:  # psycopg's, or the connection's; the next look may work
            if not failing:
                log.event("ha_role_unknown", error=str(error).splitlines()[0] if str(error) else repr(error))
            failing = True
            continue
        failing = False
        if not standby:
            return
