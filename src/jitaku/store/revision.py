"""Which revision of the schema a database is at, read with plain SQL: a database already at the newest is
opened without importing Alembic or SQLAlchemy (about 24 MB of the daemon's memory together)."""

from __future__ import annotations

from pathlib import Path

from jitaku.store.statements import Statements

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision; tests/test_store.py checks it against Alembic's own head.
SCHEMA_REVISION = "0025"


def stored_revision(statements: Statements) -> str | None:
    """The revision Alembic last recorded in the database; None for a database it never touched."""
    if not statements.run(statements.dialect.table_named, ("alembic_version",)):
        return None
    rows = statements.run("SELECT version_num FROM alembic_version")
    return str(rows[0][0]) if rows else None


def in_recovery(statements: Statements) -> bool:
    """Whether the database is a PostgreSQL standby's, replayed from its primary and read-only."""
    if statements.dialect.name != "postgresql":
        return False
    return bool(statements.run("SELECT pg_is_in_recovery()")[0][0])
