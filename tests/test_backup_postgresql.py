"""The PostgreSQL side of `jitaku backup` that needs no server (tests/integration/test_backup_postgresql.py runs
pg_dump and pg_restore for real): a password reaches pg_dump through its environment, never its command line, and
a restore of a store on another server says how to load the dump."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jitaku.backup import postgres
from jitaku.backup.snapshot import sqlite_file
from jitaku.config import Config, parse
from jitaku.errors import BackupError

PATH = Path("/srv/jitaku/jitaku.toml")
EXTERNAL = (
    'domains = ["example.org"]\n[database]\nurl = "postgresql+psycopg://mail:s3cret@db.example.org:6543/jitaku"\n'
)


def test_a_password_in_the_url_goes_to_the_environment_and_not_the_command_line() -> None:
    conninfo, environment = postgres.libpq(
        "postgresql+psycopg://mail:s3cret@db.example.org:6543/jitaku?sslmode=require"
    )
    assert "s3cret" not in conninfo
    assert environment["PGPASSWORD"] == "s3cret"
    for part in ("host=db.example.org", "port=6543", "user=mail", "dbname=jitaku", "sslmode=require"):
        assert part in conninfo


def test_a_store_on_another_server_is_dumped_and_the_restore_says_how_to_load_it() -> None:
    config = Config(parse(EXTERNAL, PATH), Path("/srv/restored"))
    assert sqlite_file(config) is None  # backed up by pg_dump, not refused
    said = postgres.restore_command(config)
    assert said.startswith("pg_restore --exit-on-error --no-owner --no-acl '--dbname=")
    assert said.endswith(" /srv/restored/postgres.dump") and "s3cret" not in said and "db.example.org" in said


def test_a_failed_pg_dump_is_its_first_line() -> None:
    said = "pg_dump: error: connection to server failed: FATAL:  no such database\nsecond line\n"
    with pytest.raises(BackupError) as failed:
        postgres._run(["sh", "-c", f"printf '{said}' >&2; exit 1"], dict(os.environ), "pg_dump")
    assert str(failed.value) == "pg_dump failed: pg_dump: error: connection to server failed: FATAL:  no such database"
