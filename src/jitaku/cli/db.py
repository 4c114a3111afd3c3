"""`jitaku db ...`: the database itself. `db use-postgresql` turns an install over to a PostgreSQL cluster of
jitaku's own (jitaku.ha.cluster), as `jitaku init --database postgresql` does; `db copy` moves an install's data
(its SQLite file, most often) into the database this data directory's config names, new and empty: PostgreSQL,
for a primary and its standby."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Annotated

import typer

from jitaku import config as config_module
from jitaku import files
from jitaku.cli.common import DEFAULT_DIR, CliError, DirOption, console, hold_cluster, load_config, print_table
from jitaku.config import CONFIG_NAME, Config
from jitaku.words import counted

db_app = typer.Typer(
    no_args_is_help=True, help="The database: SQLite in the data directory or PostgreSQL, and moving data into it."
)

SQLITE_NAME = "jitaku.db"  # a data directory's database when its config names none


@db_app.command("use-postgresql")
def use_postgresql(data_dir: DirOption = DEFAULT_DIR) -> None:
    """Move the store to a PostgreSQL cluster of jitaku's own in DIR/postgres, jitaku.db's data with it.

    The daemon must be stopped. The cluster is made, jitaku.db copied into it, and the config changed last: a
    failure on the way leaves the install on SQLite as it was.
    """
    config = load_config(data_dir)
    if config.settings.database.managed:  # moved already: the cluster made if missing, beside a running daemon
        create_cluster(config)
    else:
        with stopped(data_dir, before="moving the store"):
            config = switch(data_dir)
    console.print(f"ready: database {config.settings.database.managed_url}; start `jitaku serve` to use it")


def switch(data_dir: Path) -> Config:
    """DIR's install moved to a managed cluster (the caller holds DIR's serve lock, so no daemon writes to the
    old store meanwhile): the cluster made and migrated, the data of the jitaku.db the config named copied into
    it, then jitaku.toml given the `[database]` keys, nothing else in it changed. The config names PostgreSQL
    only once the cluster holds the data; the copy is one transaction, so after a failure the cluster is empty
    and a second run starts again."""
    from jitaku.ha.config_text import ConfigTextError, managed_database

    path = data_dir / config_module.CONFIG_NAME
    was = load_config(data_dir)  # a missing or bad config is said as every command says it
    text = path.read_text(encoding="utf-8")
    try:
        edited = managed_database(text, path)
    except ConfigTextError as error:
        raise CliError(str(error)) from None
    config = Config(config_module.parse(edited.text, path), data_dir)
    create_cluster(config)
    sqlite = data_dir / SQLITE_NAME
    if not was.settings.database.url and not was.settings.database.managed and sqlite.exists():
        _copy_and_report(_sqlite(sqlite), config.database_url)
        console.print(f"{sqlite} is left as it was, and no longer used")
    if edited.added:
        _replace(path, edited.text)
        console.print(f"added to [database] in {path}: {'; '.join(edited.added)}")
    return config


def create_cluster(config: Config) -> None:
    """The cluster made if missing, and the store's schema in it."""
    from jitaku.ha import cluster
    from jitaku.store import Database

    for made in cluster.create(config):
        console.print(f"ready: {made}")
    hold_cluster(config)
    Database(config.database_url).close()  # the migrations


def _replace(path: Path, text: str) -> None:
    """TEXT as PATH, its mode and owner kept, through a new file renamed over it: a cut leaves the old config or
    the new, never half of one."""
    config_module.parse(text, path)  # never write what would not load
    was = path.stat()
    files.replace(path, text.encode(), was.st_mode & 0o777, (was.st_uid, was.st_gid) if os.geteuid() == 0 else None)


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
    from jitaku.store.copy import same_database
    from jitaku.store.driver import shown

    config = load_config(data_dir)
    target_url = config.database_url
    source_url, source_dir = _source(source, target_url)
    if same_database(source_url, target_url):
        raise CliError(f"{shown(source_url)} is this data directory's own database: copy from another")
    with stopped(data_dir, source_dir, before="copying"):
        hold_cluster(config)  # a managed cluster, which the stopped daemon would otherwise run
        _copy_and_report(source_url, target_url)
    if source_dir is not None and source_dir.resolve() != data_dir.resolve():
        console.print(
            f"files are not in the database: copy {source_dir}'s dkim/ and tls/ here too if this install takes its"
            " place"
        )


def _copy_and_report(source_url: str, target_url: str) -> None:
    """Every row of SOURCE_URL's database copied into TARGET_URL's, new and empty, and what was copied printed.
    The target first: one out of reach, or holding data, is refused before the source's schema is changed."""
    from jitaku.store.copy import copy, open_source, open_target
    from jitaku.store.driver import shown
    from jitaku.store.revision import SCHEMA_REVISION

    with ExitStack() as opened:
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
def stopped(*data_dirs: Path | None, before: str) -> Iterator[None]:
    """Each data directory's serve lock held while the block runs: a daemon serving any is refused here (said as
    "stop it before BEFORE"), and none starts on them until the block is done."""
    from jitaku.errors import ServeError
    from jitaku.serve_lock import held

    with ExitStack() as locks:
        for data_dir in dict.fromkeys(path.resolve() for path in data_dirs if path is not None):
            try:
                locks.enter_context(held(data_dir))
            except ServeError as error:
                raise CliError(f"{error}: stop it before {before}") from None
        yield
