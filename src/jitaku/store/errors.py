"""The store's own error: what every part of jitaku catches when the database failed a statement (a full
disk, a lost server, a broken constraint), whichever way the statement went in.

Prepared statements (store/statements.py) raise it for their driver's errors, so that the daemon tells a store
failure from a bug without importing SQLAlchemy (issue 20: 14 MB of its idle memory); a CLI read's SQLAlchemy
error is turned into it where the store hands the result back (store/database.py).
"""

from __future__ import annotations

import sqlite3
import sys

DISK_FULL = "53100"  # PostgreSQL's SQLSTATE disk_full
READ_ONLY = "25006"  # read_only_sql_transaction: a standby's, or a session's default_transaction_read_only
# PostgreSQL's SQLSTATEs serialization_failure and deadlock_detected: two transactions that wanted each other's
# rows, one of which the server undid; run again, it succeeds
CONFLICTS = frozenset({"40001", "40P01"})


class StoreError(Exception):
    """STATEMENT failed on the database; ORIG is the driver's own error. The values bound to it are left out:
    they hold message bodies and passwords, which must not reach a log line."""

    def __init__(self, statement: str, orig: BaseException) -> None:
        super().__init__(f"({type(orig).__module__}.{type(orig).__name__}) {orig} [SQL: {statement}]")
        self.statement = statement
        self.orig = orig


def out_of_space(error: BaseException) -> bool:
    """Whether ERROR, raised by a read or write, says the disk (or the database) is full: a client is told
    so, rather than of a fault of ours."""
    cause = getattr(error, "orig", error)
    if isinstance(cause, sqlite3.Error):
        return cause.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL  # the primary code under an extended one
    return getattr(cause, "sqlstate", None) == DISK_FULL or getattr(cause, "pgcode", None) == DISK_FULL


def read_only(error: BaseException) -> bool:
    """Whether ERROR is a write refused because the database is read-only: a standby's (in recovery), or one
    opened read-only for a fenced box (jitaku.store.driver)."""
    cause = getattr(error, "orig", error)
    if isinstance(cause, sqlite3.Error):
        return getattr(cause, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY
    return getattr(cause, "sqlstate", None) == READ_ONLY


def conflicted(error: BaseException) -> bool:
    """Whether ERROR is a transaction's conflict with another's (a deadlock, a serialization failure), which
    the same work run again in a new transaction gets past: never a client's fault, nor a failure to report."""
    cause = getattr(error, "orig", error)
    return getattr(cause, "sqlstate", None) in CONFLICTS


def as_store_error(error: BaseException) -> BaseException:
    """ERROR as a StoreError when it is SQLAlchemy's for a failure of the database (a Core statement's);
    any other error as it is. No error can be SQLAlchemy's unless SQLAlchemy was loaded."""
    core = sys.modules.get("sqlalchemy.exc")
    if core is None or not isinstance(error, core.DBAPIError) or error.orig is None:
        return error
    converted = StoreError(str(error.statement), error.orig)
    converted.__cause__ = error
    return converted
