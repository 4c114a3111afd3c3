"""Engine setup: SQLite in WAL with synchronous=FULL (a commit survives a power cut), or PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import Connection

from jitaku.store.dialect import LARGE_VALUE

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest migration's revision. Kept here so that a database already at it
# is opened without importing Alembic (about 10 MB of the daemon's memory);
# tests/test_store.py checks it against Alembic's own head.
SCHEMA_REVISION = "0015"


def open_engine(url: str) -> Engine:
    """Create the engine and bring the schema to the newest revision."""
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine)
    with engine.begin() as connection:
        _migrate(connection)
    return engine


def _tune_sqlite(engine: Engine) -> None:
    # pysqlite's own transaction handling would break SAVEPOINTs, which the
    # batched writer relies on; take it over as SQLAlchemy's docs describe.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    # SQLite keeps the values last bound to each statement it has cached for as long as the connection
    # lives: every pooled connection that stored a 22 MB message kept a copy of it (issue 15). Such a
    # connection is closed when it returns to the pool, and opened afresh when next needed.
    @event.listens_for(engine, "after_cursor_execute")
    def _note_large_values(
        connection: Connection, _cursor: Any, _statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> None:
        if not executemany and any(isinstance(v, bytes | memoryview) and len(v) >= LARGE_VALUE for v in parameters):
            connection.info["holds_large_value"] = True

    @event.listens_for(engine, "checkin")
    def _close_if_large(_dbapi_connection: Any, record: Any) -> None:
        if record.info.pop("holds_large_value", False):
            record.invalidate()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        driver = connection.connection.driver_connection
        if driver is not None and driver.in_transaction:  # begun on the DB-API by the writer (store/writer.py)
            return
        # Writers take the lock up front: a deferred transaction that later
        # wants to write can fail with SQLITE_BUSY regardless of busy_timeout.
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def current_revision(connection: Connection) -> str | None:
    if "alembic_version" not in inspect(connection).get_table_names():
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _migrate(connection: Connection) -> None:
    if current_revision(connection) == SCHEMA_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
