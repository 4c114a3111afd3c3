"""A standby's database is its primary's, replayed and read-only: a jitaku of another version there must refuse
in one line, not try to migrate it and crash."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from jitaku.errors import SchemaSkew
from jitaku.store import Database, database
from jitaku.store.revision import SCHEMA_REVISION


def test_a_standby_at_another_revision_is_refused_and_left_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "j.db"
    Database(f"sqlite:///{path}").close()
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0001'")
    monkeypatch.setattr(database, "in_recovery", lambda statements: True)
    with pytest.raises(SchemaSkew) as refused:
        Database(f"sqlite:///{path}")
    said = str(refused.value)
    assert "0001" in said and SCHEMA_REVISION in said and "upgrade the primary first" in said
    assert "\n" not in said
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]


def test_a_standby_at_the_same_revision_opens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "j.db"
    Database(f"sqlite:///{path}").close()
    monkeypatch.setattr(database, "in_recovery", lambda statements: True)
    Database(f"sqlite:///{path}").close()
