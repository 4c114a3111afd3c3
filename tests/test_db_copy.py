"""`jitaku db copy`'s copying (store/copy.py), between SQLite and the tests' own PostgreSQL: every row of every
table arrives as it was, ids and all; later rows take ids past the copied ones; a target holding data, or a
source written to during the copy, is refused and the target left as it was."""

from __future__ import annotations

import re
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from jitaku.store import Database, accounts, schema
from jitaku.store import copy as store_copy
from jitaku.store.copy import CopyRefused, copy, open_source, open_target, same_database
from jitaku.store.driver import shown
from jitaku.store.engine import migrations_config
from jitaku.store.revision import SCHEMA_REVISION
from tests import postgres
from tests.peers import free_port

ROWS = 3  # rows made in each table: the second leaves every column it may empty (NULL)
SEARCH_TABLES = {"search_posts", "search_list_posts"}  # migration 0021's, which schema.metadata cannot describe


@pytest.fixture
def postgresql_url() -> str:
    """A new, empty database of the tests' PostgreSQL at the newest schema: these tests run on it always."""
    try:
        postgres.binaries()
    except RuntimeError as error:
        pytest.skip(f"PostgreSQL is needed to copy into: {error}")
    return postgres.server().database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jitaku.db'}"
    Database(url).close()
    return url


@pytest.fixture
def opened() -> Iterator[list[Database]]:
    databases: list[Database] = []
    yield databases
    for database in databases:
        database.close()


def test_every_row_of_every_table_reaches_postgresql_as_it_was(
    sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    source, target = _open(opened, sqlite_url, postgresql_url)
    filled = fill(source)
    assert filled >= set(schema.metadata.tables) | SEARCH_TABLES  # a table left out of the fill fails here

    copied = copy(source, target)

    assert {item.table for item in copied} == filled
    for item in copied:
        rows = rows_of(source, item.table)
        assert item.rows == len(rows) >= 1, item.table
        assert rows_of(target, item.table) == rows, item.table


def test_every_row_comes_back_from_postgresql_to_sqlite(
    tmp_path: Path, postgresql_url: str, opened: list[Database]
) -> None:
    source, target = _open(opened, postgresql_url, f"sqlite:///{tmp_path / 'back.db'}")
    filled = fill(source)

    copy(source, target)

    for table in filled:
        assert rows_of(target, table) == rows_of(source, table), table
    found = target.engine.connect().execute(sa.text("SELECT rowid FROM search_posts WHERE search_posts MATCH 'tle'"))
    assert sorted(rowid for (rowid,) in found) == [1000, 1007, 1014]  # FTS5 indexed what it was given


def test_rows_added_after_the_copy_take_ids_past_the_copied_ones(
    sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    copy(source, target)

    with target.transaction() as connection:
        added = accounts.add_user(connection, "new@example.test", None)
    assert added.id == 1000 + 7 * (ROWS - 1) + 1
    serials = target.read_now(
        lambda c: c.execute(
            sa.text(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                " AND pg_get_serial_sequence(quote_ident(table_name), column_name) IS NOT NULL"
            )
        ).all()
    )
    assert len(serials) >= 20  # every table keyed by an integer id
    with target.transaction() as connection:
        for table, column in serials:
            highest = connection.execute(sa.text(f'SELECT MAX("{column}") FROM "{table}"')).scalar_one()
            following = connection.execute(
                sa.text("SELECT nextval(pg_get_serial_sequence(:t, :c))"), {"t": table, "c": column}
            ).scalar_one()
            assert following > (highest or 0), table


def test_a_target_holding_a_user_is_refused_and_left_as_it_was(
    sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    with target.transaction() as connection:
        accounts.add_user(connection, "already@example.test", None)
    before = {table: rows_of(target, table) for table in _tables(target)}

    with pytest.raises(CopyRefused) as refused:
        copy(source, target)

    assert str(refused.value) == (
        "the target database already holds data (in users, mailboxes, subscriptions): jitaku db copy fills only a new, empty one,"
        " and wrote nothing"
    )
    assert {table: rows_of(target, table) for table in _tables(target)} == before


def test_what_a_first_start_wrote_is_replaced_by_the_sources(
    sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    with target.transaction() as connection:
        connection.execute(sa.text("UPDATE directory_version SET version = 41"))
        connection.execute(
            sa.text(
                "INSERT INTO health_results (check_name, at, state, sentence, metrics, detail)"
                " VALUES ('disk', 1, 0, 'fine', '{}', '')"
            )
        )

    copy(source, target)

    for table in ("directory_version", "health_results"):
        assert rows_of(target, table) == rows_of(source, table)


def test_a_source_written_during_the_copy_is_reported_and_nothing_is_written(
    tmp_path: Path, sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    writer = sqlite3.connect(tmp_path / "jitaku.db", isolation_level=None)

    def meanwhile(doing: str) -> None:  # a jitaku still serving the source takes a mail
        if doing.startswith("copying users:"):
            writer.execute("UPDATE messages SET size = size + 1 WHERE id = 1000")
            writer.execute(
                "INSERT INTO messages (id, mailbox_id, uid, flags, received_at, size, body, modseq)"
                " SELECT 5000, mailbox_id, 9999, '', 0, 1, x'00', 1 FROM messages WHERE id = 1000"
            )

    with pytest.raises(CopyRefused) as refused:
        copy(source, target, meanwhile)
    writer.close()

    message = str(refused.value)
    assert message.startswith("the source changed during the copy (is a jitaku still serving it?), so nothing")
    assert "messages: 4 in the source, 3 copied" in message
    assert "messages.size total" in message
    assert rows_of(target, "messages") == rows_of(target, "users") == []


def test_the_comparison_names_what_differs() -> None:
    with pytest.raises(CopyRefused) as refused:
        store_copy._compare(
            {"users": 2, "messages": 10, "mailbox 4 highest UID": 12},
            {"users": 2, "messages": 9, "mailbox 4 highest UID": 11},
            "the copy differs from the source",
        )
    assert str(refused.value) == (
        "the copy differs from the source, so nothing was written (mailbox 4 highest UID: 12 in the source, 11"
        " copied; messages: 10 in the source, 9 copied)"
    )
    store_copy._compare({"users": 2}, {"users": 2}, "never said")


def test_large_tables_go_in_batches_bounded_in_rows_and_bytes(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    with source.transaction() as connection:
        mailbox = connection.execute(sa.text("SELECT mailbox_id FROM messages WHERE id = 1000")).scalar_one()
        connection.execute(
            sa.text(
                "INSERT INTO messages (mailbox_id, uid, flags, received_at, size, body, modseq)"
                " VALUES (:m, :uid, '\\Seen', 1.5, :size, :body, 7)"
            ),
            [{"m": mailbox, "uid": uid, "size": uid, "body": bytes([uid % 256]) * uid} for uid in range(1, 200)],
        )
    monkeypatch.setattr(store_copy, "BATCH_ROWS", 50)
    monkeypatch.setattr(store_copy, "BATCH_BYTES", 4000)
    said: list[str] = []

    copy(source, target, said.append)

    assert rows_of(target, "messages") == rows_of(source, "messages")
    seen = [int(n.replace(",", "")) for n in re.findall(r"^copying messages: ([\d,]+) rows$", "\n".join(said), re.M)]
    assert said[-1] == "comparing the copy with the source"
    assert seen == sorted(seen) and seen[-1] == 202
    assert len(seen) > 202 // 50 + 1  # the byte bound ended batches the row bound would not have
    assert all(later - earlier <= 50 for earlier, later in zip(seen, seen[1:], strict=False))


def test_batches_are_bounded_by_text_too(
    monkeypatch: pytest.MonkeyPatch, sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    """Large text (a post's body, a message's flags) fills a batch as bytes do."""
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    with source.transaction() as connection:
        mailbox = connection.execute(sa.text("SELECT mailbox_id FROM messages WHERE id = 1000")).scalar_one()
        connection.execute(
            sa.text(
                "INSERT INTO messages (mailbox_id, uid, flags, received_at, size, body, modseq)"
                " VALUES (:m, :uid, :flags, 1.5, 0, x'', 7)"
            ),
            [{"m": mailbox, "uid": uid, "flags": "$Label" * uid} for uid in range(1, 200)],
        )
    monkeypatch.setattr(store_copy, "BATCH_ROWS", 50)
    monkeypatch.setattr(store_copy, "BATCH_BYTES", 4000)
    said: list[str] = []

    copy(source, target, said.append)

    seen = re.findall(r"^copying messages: ([\d,]+) rows$", "\n".join(said), re.M)
    assert len(seen) > 202 // 50 + 1  # the byte bound ended batches the row bound would not have


def test_an_older_source_is_migrated_first(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = migrations_config()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0022")
    engine.dispose()

    database, was = open_source(url)
    with database.engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == SCHEMA_REVISION
    database.close()
    assert was == "0022"


def test_a_database_not_jitakus_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE notes (text TEXT)")
    with pytest.raises(CopyRefused) as refused:
        open_source(f"sqlite:///{path}")
    assert str(refused.value) == f"sqlite:///{path} is not a jitaku database (it has no schema revision)"
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT name FROM sqlite_master").fetchall() == [("notes",)]


def test_a_source_newer_than_this_jitaku_is_refused(tmp_path: Path, sqlite_url: str) -> None:
    with sqlite3.connect(tmp_path / "jitaku.db") as newer:
        newer.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(CopyRefused) as refused:
        open_source(sqlite_url)
    assert str(refused.value) == f"{sqlite_url} is at schema revision 9999, newer than this jitaku's {SCHEMA_REVISION}"


def fill(database: Database) -> set[str]:
    """ROWS rows in every table the database has (one in those the migrations made one in), made from its columns' types alone, so that a table a later
    migration adds is filled too: ids far apart and past 1000, the widest integers, text beyond ASCII, bytes of
    every value, booleans both ways, and NULL wherever a column takes it. The tables filled."""
    with database.transaction() as connection:
        shapes = store_copy._shapes(connection)
        made: dict[str, list[dict[str, Any]]] = {}
        metadata = sa.MetaData()
        metadata.reflect(connection, only=[shape.name for shape in shapes])
        for shape in shapes:
            table = metadata.tables[shape.name]
            clause = store_copy._table(shape)
            # a table of one row the migrations made (directory_version ...) keeps one, which the store reads
            seeded = connection.execute(sa.select(sa.func.count()).select_from(clause)).scalar_one()
            rows = [_row(table, shape, made, n) for n in range(1 if seeded else ROWS)]
            made[shape.name] = rows
            connection.execute(sa.delete(clause))
            connection.execute(sa.insert(clause), rows)
    return set(made)


def _row(table: sa.Table, shape: store_copy.Shape, made: dict[str, list[dict[str, Any]]], n: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    virtual = store_copy.ROWID in shape.columns and store_copy.ROWID not in table.columns
    for name in shape.columns:
        column = table.columns.get(name)
        if column is None:  # a SQLite virtual table's rowid
            row[name] = 1000 + 7 * n
            continue
        references = list(column.foreign_keys)
        if references:
            parent = references[0].column
            if parent.table.name == table.name:  # a reply answers the row before it
                row[name] = None if n == 0 else 1000 + 7 * (n - 1)
            else:
                row[name] = made[parent.table.name][n][parent.name]
        elif n == 1 and column.nullable and not column.primary_key and not virtual:
            row[name] = None
        else:
            row[name] = _value(column, n)
    return row


def _value(column: sa.Column[Any], n: int) -> Any:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return n % 2 == 0
    if isinstance(kind, sa.Integer):
        return 1000 + 7 * n if column.primary_key else 2_147_483_000 + n
    if isinstance(kind, sa.Float):
        return 1_712_345_678.123456 + n
    if isinstance(kind, sa.LargeBinary):
        return bytes(range(256)) * (n + 1) + b"\x00"
    text = f"{n} 自宅サーバー title {column.name}"
    length = getattr(kind, "length", None)
    return text[:length] if length else text


def rows_of(database: Database, table: str) -> list[tuple[Any, ...]]:
    """TABLE's rows in the order of its key, as Python values (SQLite's 0 and 1 as booleans where the column
    is one)."""
    with database.engine.connect() as connection:
        shape = next(shape for shape in store_copy._shapes(connection) if shape.name == table)
        columns = sorted(shape.columns)
        clause = store_copy._table(shape)
        found = connection.execute(
            sa.select(*(clause.c[c] for c in columns)).order_by(*(clause.c[k] for k in shape.key))
        ).all()
    return [
        tuple(
            bool(value) if name in shape.booleans and value is not None else value
            for name, value in zip(columns, row, strict=True)
        )
        for row in found
    ]


def _tables(database: Database) -> list[str]:
    with database.engine.connect() as connection:
        return [shape.name for shape in store_copy._shapes(connection)]


def _open(opened: list[Database], source_url: str, target_url: str) -> tuple[Database, Database]:
    source, _ = open_source(source_url)
    target = Database(target_url)
    opened.extend((source, target))
    return source, target


def test_a_target_out_of_reach_is_refused_without_its_password() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(CopyRefused) as refused:
        open_target(f"postgresql://jitaku:hunter2@127.0.0.1:{port}/jitaku")
    said = str(refused.value)
    assert said.startswith(f"cannot open postgresql://jitaku:***@127.0.0.1:{port}/jitaku: ") and "hunter2" not in said


def test_a_missing_sqlite_file_is_refused_and_not_made(tmp_path: Path) -> None:
    with pytest.raises(CopyRefused) as refused:
        open_source(f"sqlite:///{tmp_path / 'none.db'}")
    assert str(refused.value) == f"sqlite:///{tmp_path / 'none.db'}: no such database file"
    assert list(tmp_path.iterdir()) == []


def test_a_sender_longer_than_postgresql_takes_is_named_with_its_row(
    sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    """SQLite never held a greylist sender to VARCHAR(320); PostgreSQL refuses it: the owner is told which
    row, not "internal error"."""
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    with source.transaction() as connection:
        connection.execute(sa.text("DELETE FROM greylist"))
        connection.execute(
            sa.text(
                "INSERT INTO greylist (client, sender, recipient, first_seen, last_seen, passed)"
                " VALUES ('192.0.2.7', :sender, 'bob@example.org', 1, 2, 0)"
            ),
            {"sender": "x" * 400 + "@spam.test"},
        )

    with pytest.raises(CopyRefused) as refused:
        copy(source, target)

    assert str(refused.value) == (
        f"greylist row (client='192.0.2.7', sender='{'x' * 400}@spam.test', recipient='bob@example.org'): its sender"
        " is 410 characters long, and PostgreSQL's column takes at most 320; shorten or delete it in the source,"
        " and copy again"
    )
    assert rows_of(target, "users") == rows_of(target, "greylist") == []


def test_a_nul_in_text_is_named_with_its_row(sqlite_url: str, postgresql_url: str, opened: list[Database]) -> None:
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    with source.transaction() as connection:
        connection.execute(sa.text("UPDATE messages SET flags = :flags WHERE id = 1007"), {"flags": "\\Seen\x00"})

    with pytest.raises(CopyRefused) as refused:
        copy(source, target)

    assert str(refused.value) == (
        "messages row (id=1007): its flags holds a NUL character, which PostgreSQL's text does not take; remove it"
        " in the source, and copy again"
    )
    assert rows_of(target, "messages") == []


def test_a_value_the_target_refuses_is_named_by_its_rows_and_the_servers_words(
    sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    with source.transaction() as connection:
        connection.execute(sa.text("UPDATE messages SET size = :size WHERE id = 1007"), {"size": 1 << 40})

    with pytest.raises(CopyRefused) as refused:
        copy(source, target)

    assert str(refused.value).startswith(
        "the target refused messages rows (id=1000) to (id=1014), so nothing was written: "
    )
    assert "out of range" in str(refused.value) and "\n" not in str(refused.value)
    assert rows_of(target, "messages") == []


def test_text_kept_in_a_bytes_column_is_counted_in_bytes(
    tmp_path: Path, sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    """SQLite keeps text given for a BLOB as text, whose length() counts characters: the copy's bytes of it
    must still agree with the source's."""
    source, target = _open(opened, sqlite_url, postgresql_url)
    fill(source)
    with sqlite3.connect(tmp_path / "jitaku.db") as writer:
        writer.execute("UPDATE messages SET body = 'Subject: 自宅サーバー' WHERE id = 1000")

    copy(source, target)

    bodies = target.read_now(lambda c: c.execute(sa.text("SELECT body FROM messages WHERE id = 1000")).scalar_one())
    assert bytes(bodies) == "Subject: 自宅サーバー".encode()


def test_a_target_holding_data_is_refused_when_opened(
    sqlite_url: str, postgresql_url: str, opened: list[Database]
) -> None:
    target = Database(postgresql_url)
    opened.append(target)
    with target.transaction() as connection:
        accounts.add_user(connection, "already@example.test", None)
    with pytest.raises(CopyRefused) as refused:
        open_target(postgresql_url)
    assert str(refused.value).startswith("the target database already holds data (in users, mailboxes")


def test_a_target_its_role_may_not_create_tables_in_is_refused_in_one_line(postgresql_url: str) -> None:
    """An external server whose owner gave jitaku's role a database but no right to its schema (PostgreSQL
    15's public schema): the migrations' failure is a refusal, not "internal error"."""
    import psycopg

    server = postgres.server()
    role, name = f"r_{uuid.uuid4().hex[:12]}", f"e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.url("postgres"), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        connection.execute(f'CREATE ROLE "{role}" LOGIN')
    url = f"postgresql://{role}@127.0.0.1:{server.port}/{name}"

    with pytest.raises(CopyRefused) as refused:
        open_target(url)

    assert str(refused.value) == f"cannot open {url}: permission denied for schema public"


def test_a_password_is_never_shown_in_a_url() -> None:
    assert shown("postgresql://jitaku:hunter2@db.lan/jitaku") == "postgresql://jitaku:***@db.lan/jitaku"
    assert shown("postgresql://jitaku@db.lan/jitaku?sslmode=require&password=hunter2") == (
        "postgresql://jitaku@db.lan/jitaku?sslmode=require"
    )
    assert shown("sqlite:////var/lib/jitaku/jitaku.db") == "sqlite:////var/lib/jitaku/jitaku.db"


def test_without_psycopg_a_postgresql_url_is_refused_without_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what an import of a package not installed meets
    with pytest.raises(CopyRefused) as refused:
        open_target("postgresql://jitaku@db.lan/jitaku?password=hunter2")
    assert str(refused.value) == "postgresql://jitaku@db.lan/jitaku needs psycopg 3 (pip install 'psycopg[binary]')"


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ("postgresql://jitaku@localhost/jitaku", "postgres://jitaku:pw@127.0.0.1:5432/jitaku", True),
        ("postgresql+psycopg://jitaku@db.lan/jitaku", "postgresql://other@DB.lan:5432/jitaku", True),
        ("postgresql:///jitaku?host=/run/postgresql", "postgresql://localhost/jitaku", True),
        ("postgresql://db.lan/jitaku", "postgresql://db.lan:5433/jitaku", False),
        ("postgresql://db.lan/jitaku", "postgresql://db.lan/mail", False),
        ("postgresql://db.lan/jitaku", "postgresql://db2.lan/jitaku", False),
        ("sqlite:///jitaku.db", "sqlite:///./jitaku.db", True),
        ("sqlite:///jitaku.db", "postgresql://localhost/jitaku", False),
    ],
)
def test_urls_of_one_database_are_known_however_spelled(one: str, other: str, same: bool) -> None:
    assert same_database(one, other) is same
    assert same_database(other, one) is same
