"""store/: migrations, the batched writer's isolation of failing jobs, mailbox UIDs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from jitaku.store import Database, accounts, mailstore
from jitaku.store.engine import MIGRATIONS, SCHEMA_REVISION, current_revision


def test_schema_revision_is_alembics_head(tmp_path: Path) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION
    database = Database(f"sqlite:///{tmp_path / 'j.db'}")
    assert database.read_now(current_revision) == SCHEMA_REVISION
    assert database.read_now(lambda c: c.execute(text("PRAGMA journal_mode")).scalar()) == "wal"
    assert database.read_now(lambda c: c.execute(text("PRAGMA synchronous")).scalar()) == 2  # FULL
    database.close()


def test_a_failing_job_rolls_back_alone(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'j.db'}")
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", None)

    def bad(connection: object) -> None:
        mailstore.append(connection, "alice@example.test", b"half")  # type: ignore[arg-type]
        raise RuntimeError("boom")

    async def go() -> list[object]:
        jobs = [
            database.write(lambda c: mailstore.append(c, "alice@example.test", b"one")),
            database.write(bad),
            database.write(lambda c: mailstore.append(c, "alice@example.test", b"two")),
        ]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(go())
    assert results[0] == 1 and isinstance(results[1], RuntimeError) and results[2] == 2
    bodies = [m.body for m in database.read_now(lambda c: mailstore.list_messages(c, "alice@example.test"))]
    assert bodies == [b"one", b"two"]
    database.close()


def test_unknown_mailbox_is_a_lookup_error(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'j.db'}")
    with pytest.raises(LookupError):
        database.read_now(lambda c: mailstore.list_messages(c, "nobody@example.test"))
    database.close()
