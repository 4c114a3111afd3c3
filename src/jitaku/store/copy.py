"""Every row of one jitaku database copied into another, new one (`jitaku db copy`): how an install on SQLite
moves to PostgreSQL with each message, flag, UID and UIDVALIDITY, list, post, comment and user as it was.

The tables are those the target's schema has, found by reflection (the migrations made it), never listed here:
a table a later migration adds is copied too, and a table the source has that the target lacks stops the copy.
They are copied parents first (foreign keys), each in the order of its key (a reply after the comment it answers),
with the rows' own ids, all in one transaction on the target: a copy that fails leaves the target as it was.
Rows are streamed, and written in batches bounded in rows and in bytes, so that a store of many gigabytes never
sits in memory. Before the commit the two databases are compared, table by table (rows, bytes of large values,
each mailbox's highest UID), against the snapshot read and against the source as it is now: a jitaku still
writing to the source during the copy is caught there, not when a mail is missing later.

Both databases are at the newest schema first, the target opened (and found empty) before the source: an older
source is migrated in place, as any jitaku command opening it would migrate it (the migrations are one
transaction), and is otherwise only read. A database at no revision (not jitaku's) or at one newer than this
jitaku knows is refused. So is a value the target would not take (SQLite holds text to no VARCHAR's length and
takes a NUL in it; PostgreSQL does neither), named with its table and row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from jitaku.store.database import Database
from jitaku.store.driver import Driver, driver_for, shown, sqlite_path
from jitaku.store.errors import StoreError
from jitaku.store.reader import Reader
from jitaku.store.revision import SCHEMA_REVISION, stored_revision

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

BATCH_ROWS = 1000  # rows written in one statement, at most
BATCH_BYTES = 8 << 20  # and their text and bytes together, at most (a batch ends with the row that passes it)
READ_AHEAD = 16  # rows a database server sends ahead of the one read, for a table of large values (text, bytes)
READ_AHEAD_SMALL = 1000  # for a table of none
# Tables jitaku fills by itself on a new install or its first start, which the copy replaces with the source's:
# the one-row counters the migrations make, and the daemon's own records. A row in any other table is the owner's
# data, and a target holding one is refused: a table added later counts as the owner's until named here.
REPLACED = frozenset(
    {
        "directory_version",
        "uidvalidity_clock",
        "counters",
        "blog_version",
        "health_results",
        "health_status",
        "health_alerts",
        "tallies",
        "ddns_state",
        "login_attempts",
    }
)
NAMED_FIRST = ("users", "messages")  # of the tables holding data, in the refusal
ALEMBIC = "alembic_version"  # Alembic's own; both databases are at the newest revision already
# The tables SQLite's FTS5 keeps for each of its virtual tables (search_posts_data ...): its index, which it
# makes again from the rows copied into the virtual table
FTS5_SHADOWS = ("_config", "_content", "_data", "_docsize", "_idx")
ROWID = "rowid"  # a SQLite virtual table's key, which its reflection does not show


class CopyRefused(Exception):
    """The copy cannot be made, or was made wrong and rolled back; one sentence, and nothing was written."""


@dataclass(frozen=True)
class Shape:
    """One table as the copy sees it: its columns, the key its rows are read in order of, and which columns
    hold booleans (SQLite keeps them as 0 and 1, which PostgreSQL does not take), bytes, or values of any length
    (text, bytes: the rows sent ahead are fewer). LIMITS are the lengths PostgreSQL holds the target's
    VARCHAR(n) columns to, which SQLite never did: a longer value is named, row and column, before it is sent."""

    name: str
    columns: tuple[str, ...]
    key: tuple[str, ...]
    booleans: frozenset[str]
    binaries: frozenset[str]
    large: frozenset[str]
    limits: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class Copied:
    table: str
    rows: int


Progress = Callable[[str], None]  # what the copy does now, in words: "copying messages: 12,000 rows"
Counts = dict[str, int]  # "messages" -> rows, "messages.body bytes" -> ..., "mailbox 3 highest UID" -> ...


def open_source(url: str) -> tuple[Database, str | None]:
    """The database at URL, at the newest schema, and the revision it was at when older (None when current).
    Refused when it is not jitaku's (no revision: migrating it would write jitaku's tables into it) or is newer
    than this jitaku."""
    driver = _driver(url)
    path = sqlite_path(url)
    if path is not None and not Path(path).is_file():
        raise CopyRefused(f"{shown(url)}: no such database file")  # SQLite would make an empty one
    reader = Reader(driver)
    try:
        revision = reader.read_pooled(stored_revision)
    except (driver.error, StoreError) as error:
        raise CopyRefused(f"cannot read {shown(url)}: {_first_line(error)}") from None
    finally:
        reader.close()
    if revision is None:
        raise CopyRefused(f"{shown(url)} is not a jitaku database (it has no schema revision)")
    if revision > SCHEMA_REVISION:
        raise CopyRefused(f"{shown(url)} is at schema revision {revision}, newer than this jitaku's {SCHEMA_REVISION}")
    return _opened(url, driver, "migrate"), (revision if revision != SCHEMA_REVISION else None)


def open_target(url: str) -> Database:
    """The database at URL, at the newest schema (a new one is migrated here), holding none of the owner's data
    yet; refused when it cannot be reached (a server not started, a wrong password), cannot be migrated (no
    right to create tables) or holds data. Opened before the source, which it leaves as it was when refused."""
    target = _opened(url, _driver(url), "open")
    try:
        with target.engine.connect() as connection:
            _refuse_if_holding(connection, _shapes(connection))
    except BaseException:
        target.close()
        raise
    return target


def same_database(one: str, other: str) -> bool:
    """Whether two URLs name one database: one SQLite file, or one PostgreSQL server's database however its
    URL is spelled (postgres:// or postgresql+psycopg://, the default port or not, localhost or 127.0.0.1)."""
    files = [sqlite_path(url) for url in (one, other)]
    if files[0] is not None or files[1] is not None:
        return None not in files and Path(str(files[0])).resolve() == Path(str(files[1])).resolve()
    return _server_database(one) == _server_database(other)


def _server_database(url: str) -> tuple[str, int, str | None] | str:
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return url
    host = parsed.host or str(parsed.query.get("host") or "")
    local = not host or host.startswith("/") or host in ("localhost", "127.0.0.1", "::1")
    return ("localhost" if local else host.lower(), parsed.port or 5432, parsed.database)


def copy(source: Database, target: Database, progress: Progress | None = None) -> list[Copied]:
    """Every row of SOURCE into TARGET, which must hold none of the owner's data; refused (CopyRefused, TARGET
    unchanged) when it does, when the schemas differ, when the target refuses a value, or when the two disagree
    after the copy."""
    with _snapshot(source.engine) as reading, target.transaction() as writing:
        shapes = _plan(reading, writing)
        _refuse_if_holding(writing, shapes)
        for shape in reversed(shapes):  # children first: what a first start wrote (see REPLACED)
            writing.execute(sa.delete(_table(shape)))
        copied = [Copied(shape.name, _copy_table(reading, writing, shape, progress)) for shape in shapes]
        if writing.dialect.name == "postgresql":
            _advance_sequences(writing, shapes)
        if progress is not None:
            progress("comparing the copy with the source")
        written = counts(writing, shapes)
        _compare(counts(reading, shapes), written, "the copy differs from the source")
        with source.engine.connect() as now:
            _compare(counts(now, shapes), written, "the source changed during the copy (is a jitaku still serving it?)")
    return copied


def counts(connection: Connection, shapes: list[Shape]) -> Counts:
    """What the comparison of source and target looks at: each table's rows, the bytes of its large values,
    the messages' sizes and each mailbox's highest UID."""
    found: Counts = {}
    for shape in shapes:
        table = _table(shape)
        sums = [sa.func.coalesce(sa.func.sum(_bytes(connection, table.c[name])), 0) for name in sorted(shape.binaries)]
        row = connection.execute(sa.select(sa.func.count(), *sums).select_from(table)).one()
        found[shape.name] = int(row[0])
        for name, total in zip(sorted(shape.binaries), row[1:], strict=True):
            found[f"{shape.name}.{name} bytes"] = int(total)
    if "messages" in found:
        messages = sa.table("messages", sa.column("mailbox_id"), sa.column("uid"), sa.column("size"))
        found["messages.size total"] = int(
            connection.execute(sa.select(sa.func.coalesce(sa.func.sum(messages.c.size), 0))).scalar_one()
        )
        highest = sa.select(messages.c.mailbox_id, sa.func.max(messages.c.uid)).group_by(messages.c.mailbox_id)
        for mailbox, uid in connection.execute(highest):
            found[f"mailbox {mailbox} highest UID"] = int(uid)
    return found


def _bytes(connection: Connection, column: sa.ColumnClause[Any]) -> sa.ColumnElement[Any]:
    """The length of a binary column's value in bytes. SQLite keeps what it was given, text too, whose
    length() counts characters: the copy writes that text as its UTF-8 bytes, which are counted here alike."""
    if connection.dialect.name == "sqlite":
        return sa.func.length(sa.cast(column, sa.LargeBinary))
    return sa.func.length(column)


def _plan(source: Connection, target: Connection) -> list[Shape]:
    """The target's tables, parents first, each as the source has it too; refused where the two differ."""
    target_shapes = _shapes(target)
    source_shapes = {shape.name: shape for shape in _shapes(source)}
    missing = sorted(set(source_shapes) - {shape.name for shape in target_shapes})
    if missing:
        raise CopyRefused(f"the target has no table {', '.join(missing)}, which the source has")
    for shape in target_shapes:
        found = source_shapes.get(shape.name)
        if found is None:
            raise CopyRefused(f"the source has no table {shape.name}, which the target has")
        if set(found.columns) != set(shape.columns):
            raise CopyRefused(
                f"the table {shape.name} has the columns {', '.join(found.columns)} in the source and "
                f"{', '.join(shape.columns)} in the target"
            )
    return target_shapes


def _shapes(connection: Connection) -> list[Shape]:
    virtual = _virtual_tables(connection)
    shadows = {name + suffix for name in virtual for suffix in FTS5_SHADOWS}
    metadata = sa.MetaData()
    metadata.reflect(connection, only=lambda name, _metadata: name != ALEMBIC and name not in shadows)
    shapes = []
    for table in metadata.sorted_tables:
        columns = tuple(column.name for column in table.columns)
        key = tuple(column.name for column in table.primary_key.columns)
        if table.name in virtual and ROWID not in columns:
            columns, key = (ROWID, *columns), (ROWID,)
        booleans = frozenset(column.name for column in table.columns if isinstance(column.type, sa.Boolean))
        binaries = frozenset(column.name for column in table.columns if isinstance(column.type, sa.LargeBinary))
        large = frozenset(
            column.name
            for column in table.columns
            if isinstance(column.type, sa.LargeBinary | sa.Text)
            or (isinstance(column.type, sa.String) and not column.type.length)
        )
        limits = (
            tuple(
                (column.name, column.type.length)
                for column in table.columns
                if isinstance(column.type, sa.String) and column.type.length
            )
            if connection.dialect.name == "postgresql"
            else ()
        )
        shapes.append(Shape(table.name, columns, key or columns, booleans, binaries, large, limits))
    return shapes


def _virtual_tables(connection: Connection) -> set[str]:
    if connection.dialect.name != "sqlite":
        return set()
    query = "SELECT name FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%'"
    return {str(name) for (name,) in connection.exec_driver_sql(query)}


def _refuse_if_holding(target: Connection, shapes: list[Shape]) -> None:
    holding = [
        shape.name
        for shape in shapes
        if shape.name not in REPLACED
        and target.execute(sa.select(sa.literal(1)).select_from(_table(shape)).limit(1)).first() is not None
    ]
    if holding:
        holding.sort(key=lambda name: name not in NAMED_FIRST)  # what the owner knows the data by
        named = ", ".join(holding[:3]) + (f" and {len(holding) - 3} more tables" if len(holding) > 3 else "")
        raise CopyRefused(
            f"the target database already holds data (in {named}): jitaku db copy fills only a new, empty one, and"
            " wrote nothing"
        )


def _copy_table(source: Connection, target: Connection, shape: Shape, progress: Progress | None) -> int:
    table = _table(shape)
    query = sa.select(*table.columns).order_by(*(table.c[name] for name in shape.key))
    ahead = READ_AHEAD if shape.large else READ_AHEAD_SMALL
    # A server-side cursor where the source is a server: psycopg would otherwise fetch the whole table at once.
    # SQLite's driver reads a row at a time from the file as it is.
    rows = source.execution_options(stream_results=True, max_row_buffer=ahead).execute(query)
    checked = _checker(target, shape)
    batch: list[dict[str, Any]] = []
    size = done = 0
    for row in rows:
        values = dict(zip(shape.columns, row, strict=True))
        for name in shape.booleans:
            if values[name] is not None:
                values[name] = bool(values[name])
        for name in shape.binaries:
            if isinstance(values[name], str):  # SQLite keeps what it was given: PostgreSQL would read it as escapes
                values[name] = values[name].encode()
        checked(values)
        size += sum(len(value) for value in values.values() if isinstance(value, str | bytes))
        batch.append(values)
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            _write(target, shape, batch)
            done += len(batch)
            batch, size = [], 0
            if progress is not None:
                progress(f"copying {shape.name}: {done:,} rows")
    if batch:
        _write(target, shape, batch)
        done += len(batch)
    if progress is not None:
        progress(f"copying {shape.name}: {done:,} rows")
    return done


def _checker(target: Connection, shape: Shape) -> Callable[[dict[str, Any]], None]:
    """What PostgreSQL would refuse in a row, found before it is sent, and named with the row's key and its
    column: a value longer than its VARCHAR(n), a NUL character in text (both of which SQLite keeps)."""
    if target.dialect.name != "postgresql":
        return lambda values: None

    def check(values: dict[str, Any]) -> None:
        for name, limit in shape.limits:
            value = values[name]
            if isinstance(value, str) and len(value) > limit:
                raise CopyRefused(
                    f"{shape.name} row {_key(shape, values)}: its {name} is {len(value):,} characters long, and"
                    f" PostgreSQL's column takes at most {limit:,}; shorten or delete it in the source, and copy again"
                )
        for name, value in values.items():
            if isinstance(value, str) and "\x00" in value:
                raise CopyRefused(
                    f"{shape.name} row {_key(shape, values)}: its {name} holds a NUL character, which PostgreSQL's"
                    " text does not take; remove it in the source, and copy again"
                )

    return check


def _write(target: Connection, shape: Shape, batch: list[dict[str, Any]]) -> None:
    """BATCH inserted; a value the target refuses (one this copy did not foresee) is named by the batch's
    rows and the target's own words, rather than left to the CLI's "internal error"."""
    try:
        target.execute(sa.insert(_table(shape)), batch)
    except sa.exc.StatementError as error:
        said = _first_line(error.orig if error.orig is not None else error)
        rows = _key(shape, batch[0]) if len(batch) == 1 else f"{_key(shape, batch[0])} to {_key(shape, batch[-1])}"
        raise CopyRefused(f"the target refused {shape.name} rows {rows}, so nothing was written: {said}") from None


def _key(shape: Shape, values: dict[str, Any]) -> str:
    """A row named by its key, as a person finds it again in the source: id=1000, client='1.2.3.4', ..."""
    return "(" + ", ".join(f"{name}={values[name]!r}" for name in shape.key) + ")"


def _advance_sequences(target: Connection, shapes: list[Shape]) -> None:
    """Each serial (or identity) column's sequence set past the ids copied, so that the next row inserted
    without an id does not take one of theirs. setval is not undone when the copy is rolled back: a target left
    empty then gives its first row a higher id than 1, which is all it changes."""
    quote = target.dialect.identifier_preparer.quote
    for shape in shapes:
        for column in shape.columns:
            sequence = target.execute(
                sa.text("SELECT pg_get_serial_sequence(:table, :column)"),
                {"table": quote(shape.name), "column": column},
            ).scalar_one()
            if sequence is None:
                continue
            highest = target.execute(sa.text(f"SELECT MAX({quote(column)}) FROM {quote(shape.name)}")).scalar_one()
            # no row: the sequence starts at 1 again (is_called false: 1 is the next value given)
            target.execute(
                sa.text("SELECT setval(:sequence, :value, :called)"),
                {"sequence": sequence, "value": highest or 1, "called": highest is not None},
            )


def _compare(source: Counts, target: Counts, what: str) -> None:
    differing = sorted(key for key in source.keys() | target.keys() if source.get(key) != target.get(key))
    if not differing:
        return
    listed = "; ".join(
        f"{key}: {source.get(key, 0)} in the source, {target.get(key, 0)} copied" for key in differing[:5]
    )
    more = f" and {len(differing) - 5} more" if len(differing) > 5 else ""
    raise CopyRefused(f"{what}, so nothing was written ({listed}{more})")


@contextmanager
def _snapshot(engine: sa.Engine) -> Iterator[Connection]:
    """A connection whose reads all see the database as it was at the first (SQLite's read transaction in WAL
    mode; PostgreSQL's REPEATABLE READ), read-only."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        with connection.begin():
            yield connection


def _table(shape: Shape) -> sa.TableClause:
    return sa.table(shape.name, *(sa.column(name) for name in shape.columns))


def _driver(url: str) -> Driver:
    try:
        return driver_for(url)
    except ValueError as error:  # neither SQLite nor PostgreSQL
        raise CopyRefused(str(error)) from None


def _opened(url: str, driver: Driver, doing: str) -> Database:
    """The database at URL, migrated to the newest schema if older; refused in one sentence when it cannot be
    reached or migrated (no right to create tables in an external server's schema ...)."""
    try:
        return Database(url)
    except (driver.error, StoreError, sa.exc.DBAPIError) as error:
        if isinstance(error, sa.exc.DBAPIError) and error.orig is not None:
            error = error.orig
        raise CopyRefused(f"cannot {doing} {shown(url)}: {_first_line(error)}") from None


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
