"""What differs between the databases under the statements jitaku runs on the DB-API directly.

The hot write path (store/intake.py) skips SQLAlchemy: building, caching and executing a Core statement cost
about 50 times SQLite's own work per accepted message (issue 20). Its statements are written once, in SQL
both SQLite and PostgreSQL take, with `?` for each value; a Dialect turns them into its driver's paramstyle.
Allocating a UID is one `UPDATE ... RETURNING` in both: SQLite has one writer, and PostgreSQL's UPDATE takes
the row lock that a `SELECT ... FOR UPDATE` would, so two deliveries to one mailbox never share a UID. A row
read in order to be changed from what was read is locked as it is read on PostgreSQL (`lock`: a mailbox's row
before its messages' flags change or they move), where several workers' writers run at once; a list runner
passes over the inbox items another is taking (`skip_locked`: store/lists.py's take_inbox).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

LARGE_VALUE = 1 << 20  # bytes: a bound value this large closes its SQLite connection once it is back in the pool
BUSY_TIMEOUT = 30_000  # ms a connection waits for another's write lock


class Cursor(Protocol):
    """The part of a DB-API cursor (PEP 249) the hot path uses."""

    def execute(self, statement: str, parameters: Sequence[Any] = ..., /) -> Any: ...

    def executemany(self, statement: str, parameters: Any, /) -> Any: ...

    @property
    def description(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str  # what the driver's paramstyle writes for each `?`
    # Starts a write transaction. The driver's own transaction handling is off (SQLite: isolation_level None,
    # store/driver.py), so what the writer begins on the DB-API is the one transaction
    begin: str
    # Starts a read whose statements all see one snapshot (a session's view of a mailbox must not mix two)
    begin_read: str
    # SQLite keeps the values last bound to each statement it cached for as long as the connection lives
    # (issue 15: a 22 MB message per pooled connection); such a connection is dropped after its transaction
    keeps_bound_values: bool
    # One row when the table named by its one value exists
    table_named: str
    # Run before BEGIN when a batch's commit must reach the disk (the default) or need not (`durable=False`:
    # store/writer.py); a process crash loses neither, a power cut may lose the latter until the next
    # durable commit
    synced: str
    unsynced: str
    # Make the writer's connection fit for a light job run at once on the event loop (store/writer.py), and
    # back for the writer's batches. Empty: every job waits for the writer (a database server, where each
    # statement is a round trip the event loop must not wait for)
    at_once: tuple[str, ...] = ()
    batched: tuple[str, ...] = ()
    # Ends a SELECT that picks a row for the caller alone: the rows others' transactions are taking are passed
    # over rather than waited for. Empty where one writer at a time is all there is (SQLite)
    skip_locked: str = ""
    # Whether two write transactions run at once, so that a row read to be changed must be locked as it is read
    # (lock): SQLite's writer holds the one write lock from BEGIN IMMEDIATE on
    row_locks: bool = False
    # The database's time, in seconds since 1970, as SQL: list inbox leases are timed by it (store/lists.py), so
    # that two boxes sharing a PostgreSQL server agree on when one ran out whatever their own clocks say
    clock: str = "(julianday('now') - 2440587.5) * 86400.0"
    _texts: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def lock(self, table: str) -> str:
        """What ends a SELECT whose rows of TABLE the transaction is about to change from what it read: another
        transaction wanting them waits for the commit, and then reads what this one left. NO KEY: a delivery's
        message row naming the locked mailbox (its foreign key's check) does not wait."""
        return f" FOR NO KEY UPDATE OF {table}" if self.row_locks else ""

    def sql(self, statement: str) -> str:
        """STATEMENT in this driver's paramstyle; the same string each time, so the driver's cache of
        prepared statements finds it."""
        text = self._texts.get(statement)
        if text is None:
            if self.placeholder == "%s":  # a format paramstyle: a % of the SQL's own (LIKE '%x%') is written %%
                statement_text = statement.replace("%", "%%")
            else:
                statement_text = statement
            text = self._texts[statement] = statement_text.replace("?", self.placeholder)
        return text


# IMMEDIATE: a transaction that takes the write lock later can fail with SQLITE_BUSY whatever busy_timeout says
SQLITE = Dialect(
    "sqlite",
    "?",
    "BEGIN IMMEDIATE",
    "BEGIN",
    keeps_bound_values=True,
    table_named="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    # in WAL mode NORMAL writes the commit to the log without an fsync; the next FULL commit's fsync (or a
    # checkpoint's) takes it to the disk, in order, so the database is never left inconsistent
    synced="PRAGMA synchronous = FULL",
    unsynced="PRAGMA synchronous = NORMAL",
    # At once: no fsync; never a wait for another process's write lock (busy: the job goes to the writer,
    # which waits); no checkpoint, whose fsyncs the writer's next batch makes instead
    at_once=("PRAGMA synchronous = NORMAL", "PRAGMA busy_timeout = 0", "PRAGMA wal_autocheckpoint = 0"),
    batched=(f"PRAGMA busy_timeout = {BUSY_TIMEOUT}", "PRAGMA wal_autocheckpoint = 1000"),
)
# Through psycopg 3, in autocommit mode, so that the BEGIN is the writer's own (store/driver.py); tried by the
# store's tests and the key integration tests in scripts/test's second pass (tests/postgres.py)
POSTGRESQL = Dialect(
    "postgresql",
    "%s",
    "BEGIN",
    "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    keeps_bound_values=False,
    table_named="SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?",
    synced="SET synchronous_commit TO ON",
    # not OFF: PostgreSQL keeps such a commit in its shared memory for up to three wal_writer_delay, which a crash
    # of the server loses, and sends it to no standby before answering; a flag set over IMAP, once acknowledged,
    # must be on both boxes of a pair (issue 24) and survive a failover, as a message's 250 does
    unsynced="SET synchronous_commit TO ON",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    row_locks=True,
    clock="CAST(extract(epoch FROM clock_timestamp()) AS double precision)",
)

_DIALECTS = {dialect.name: dialect for dialect in (SQLITE, POSTGRESQL)}


def dialect_named(name: str) -> Dialect:
    """The dialect of SQLAlchemy's dialect NAME ("sqlite", "postgresql")."""
    try:
        return _DIALECTS[name]
    except KeyError:
        raise ValueError(f"jitaku stores its data in SQLite or PostgreSQL, not {name}") from None
