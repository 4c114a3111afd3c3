"""`jitaku db ...`: the database itself. `db copy` moves an install's data (its SQLite file, most often) into
the database this data directory's config names, new and empty: PostgreSQL, for a primary and its standby."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Annotated

import typer

from jitaku.cli.common import DEFAULT_DIR, CliError, DirOption, console, load_config, print_table
from jitaku.config import CONFIG_NAME
from jitaku.words import counted

db_app = typer.Typer(no_args_is_help=True, help="The database: move an install's data into it.")

SQLITE_NAME = "jitaku.db"  # a data directory's database when its config names none


@db_app.command("copy")
def db_copy(
    source: Annotated[
        str,
        typer.Option(
            "--from",
            help="The install to copy: its data directory, its jitaku.db, or a sqlite:/// URL.",
            show_default=False,
        ),
    ],
    data_dir: DirOption = DEFAULT_DIR,
) -> None:
    """Copy another install's data into this data directory's database, which must hold none yet.

    Every table: messages with their flags and UIDs, mailboxes with their UIDVALIDITY, lists, posts, users.

    Then the two databases are compared; where they differ, nothing is written.
    """
    from jitaku.store.copy import copy, open_source, open_target, same_database
    from jitaku.store.driver import shown
    from jitaku.store.revision import SCHEMA_REVISION

    config = load_config(data_dir)
    target_url = config.database_url
    source_url, source_dir = _source(source, target_url)
    if same_database(source_url, target_url):
        raise CliError(f"{shown(source_url)} is this data directory's own database: copy from another")
    # The target first: one out of reach, or holding data, is refused before the source's schema is changed
    with _stopped(data_dir, source_dir), ExitStack() as opened:
        target = opened.enter_context(closing(open_target(target_url)))
        database, was = open_source(source_url)
        opened.enter_context(closing(database))
        if was is not None:
            console.print(f"brought {shown(source_url)} from schema revision {was} to {SCHEMA_REVISION} first")
        with console.status(f"copying from {shown(source_url)}") as status:
            copied = copy(database, target, status.update)
    holding = sorted((item for item in copied if item.rows), key=lambda item: item.table)
    print_table(["table", "rows"], [[item.table, f"{item.rows:,}"] for item in holding], whole={"rows"}, empty="")
    total = sum(item.rows for item in copied)
    empty = len(copied) - len(holding)
    console.print(
        f"copied {counted(total, 'row')} of {counted(len(copied), 'table')} ({empty} of them empty) from"
        f" {shown(source_url)} into {shown(target_url)}; their counts agree"
    )
    if source_dir is not None and source_dir.resolve() != data_dir.resolve():
        console.print(
            f"files are not in the database: copy {source_dir}'s dkim/ and tls/ here too if this install takes its"
            " place"
        )


def _source(given: str, target_url: str) -> tuple[str, Path | None]:
    """The URL of the database GIVEN names (a URL, a data directory, a database file) and its data directory:
    the one a daemon serving it would lock, which for a database file is the directory holding it, when that
    is one (its config or its serve lock there).

    A data directory whose config now names the target (the same directory, moved to PostgreSQL by its config)
    is copied from the SQLite file it used before."""
    from jitaku.store.copy import same_database
    from jitaku.store.driver import sqlite_path

    if "://" in given:
        file = sqlite_path(given)
        return given, (None if file is None else _data_dir_of(Path(file)))
    path = Path(given)
    if path.is_dir():
        fallback = path / SQLITE_NAME
        if (path / CONFIG_NAME).exists():
            url = load_config(path).database_url
            if not same_database(url, target_url):
                return url, path
            if not fallback.exists():
                raise CliError(f"{path}'s config names this data directory's database, and {path} has no {SQLITE_NAME}")
        elif not fallback.exists():
            raise CliError(f"{path} is not a jitaku data directory: it holds neither {CONFIG_NAME} nor {SQLITE_NAME}")
        return _sqlite(fallback), path
    if not path.is_file():
        raise CliError(f"{path}: no such data directory or database file")
    return _sqlite(path), _data_dir_of(path)


def _data_dir_of(database: Path) -> Path | None:
    from jitaku.serve_lock import LOCK_NAME

    parent = database.resolve().parent
    return parent if (parent / CONFIG_NAME).exists() or (parent / LOCK_NAME).exists() else None


def _sqlite(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"


@contextmanager
def _stopped(*data_dirs: Path | None) -> Iterator[None]:
    """Each data directory's serve lock held while the copy runs: a daemon serving either is refused here, and
    none starts on them until the copy is done."""
    from jitaku.errors import ServeError
    from jitaku.serve_lock import held

    with ExitStack() as locks:
        for data_dir in dict.fromkeys(path.resolve() for path in data_dirs if path is not None):
            try:
                locks.enter_context(held(data_dir))
            except ServeError as error:
                raise CliError(f"{error}: stop it before copying") from None
        yield
