"""Which part this box plays in the pair, in one place: "primary" (it takes mail and writes) or "standby" (its
cluster replays the primary's WAL, read-only). The cluster says it (pg_is_in_recovery()); an SQLite store has no
standby, so it is always primary.

The daemon asks once, at start, and serves by the answer (jitaku.services): a standby's mail listeners refuse,
its writers stay idle. A promotion (failover) makes the cluster a primary; the daemon then starts again as one,
which asks here again."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from jitaku.config import Config

if TYPE_CHECKING:
    import psycopg

Role = Literal["primary", "standby"]
PRIMARY: Role = "primary"
STANDBY: Role = "standby"
CONNECT_TIMEOUT = 10  # seconds


def postgresql(config: Config) -> bool:
    return config.database_url.startswith(("postgresql", "postgres:"))


def connect(config: Config) -> psycopg.Connection[tuple[object, ...]]:
    """A connection of its own to the store's PostgreSQL (autocommit: reads of the server's state, or DDL)."""
    import psycopg

    url = config.database_url
    scheme, rest = url.split("://", 1)
    return psycopg.connect(f"{scheme.split('+', 1)[0]}://{rest}", autocommit=True, connect_timeout=CONNECT_TIMEOUT)


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
