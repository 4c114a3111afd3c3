"""SQLAlchemy's engine over the connections of store/driver.py: for the CLI's Core transactions and Alembic's
migrations. The daemon, whose own work is prepared SQL (issue 20), loads this module only when its schema is
to be migrated: SQLAlchemy is 14 MB of its idle memory, Alembic 10 more.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection

from jitaku.store.dialect import LARGE_VALUE
from jitaku.store.driver import READ_ONLY_OPTIONS, Driver
from jitaku.store.revision import MIGRATIONS

if TYPE_CHECKING:
    from alembic.config import Config


def open_engine(driver: Driver) -> Engine:
    """An engine whose pool opens DRIVER's connections, tuned as the daemon's own."""
    if driver.dialect.name != "sqlite":
        # psycopg 3, the driver jitaku depends on: SQLAlchemy 2.0 takes a bare postgresql:// for psycopg2
        scheme, _, rest = driver.url.partition("://")
        url = f"postgresql+psycopg://{rest}" if "+" not in scheme else driver.url
        options = {"options": READ_ONLY_OPTIONS} if driver.read_only else {}
        return create_engine(url, pool_pre_ping=True, connect_args=options)
    engine = create_engine(driver.url, creator=driver.connect)
    _begin(engine)
    _note_large_values(engine)

    # SQLite keeps the values last bound to each statement it has cached for as long as the connection
    # lives: every pooled connection that stored a 22 MB message kept a copy of it (issue 15). Such a
    # connection is closed when it returns to the pool, and opened afresh when next needed.
    @event.listens_for(engine, "checkin")
    def _close_if_large(_dbapi_connection: Any, record: Any) -> None:
        if record.info.pop("holds_large_value", False):
            record.invalidate()

    return engine


def migrations_config() -> Config:
    """Alembic's config of jitaku's migrations: for `migrate`, and for the tests that take a database to an
    older revision and back."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision."""
    from alembic import command

    config = migrations_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


def _begin(engine: Engine) -> None:
    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # Writers take the lock up front: a deferred transaction that later
        # wants to write can fail with SQLITE_BUSY regardless of busy_timeout.
        immediate = connection.get_execution_options().get("immediate", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _note_large_values(engine: Engine) -> None:
    @event.listens_for(engine, "after_cursor_execute")
    def _note(
        connection: Connection, _cursor: Any, _statement: str, parameters: Any, _context: Any, executemany: bool
    ) -> None:
        if not executemany and any(isinstance(v, bytes | memoryview) and len(v) >= LARGE_VALUE for v in parameters):
            connection.info["holds_large_value"] = True
