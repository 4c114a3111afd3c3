"""`jitaku db ...`: where the store lives. `use-postgresql` turns an install over to a PostgreSQL cluster of
jitaku's own (jitaku.ha.cluster), as `jitaku init --database postgresql` does."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from jitaku import config as config_module
from jitaku.cli.common import DEFAULT_DIR, CliError, DirOption, console, hold_cluster, load_config
from jitaku.config import Config

db_app = typer.Typer(no_args_is_help=True, help="The database: SQLite in the data directory, or PostgreSQL.")


@db_app.command("use-postgresql")
def use_postgresql(data_dir: DirOption = DEFAULT_DIR) -> None:
    """Run a PostgreSQL cluster of jitaku's own in DIR/postgres and keep the store there (restart `jitaku serve`)."""
    config = switch(data_dir)
    create_cluster(config)
    console.print(f"ready: database {config.settings.database.managed_url}; restart `jitaku serve` to use it")


def switch(data_dir: Path) -> Config:
    """Add the `[database]` keys of a managed cluster to DIR's jitaku.toml, changing nothing else in it."""
    from jitaku.ha.config_text import ConfigTextError, managed_database

    path = data_dir / config_module.CONFIG_NAME
    load_config(data_dir)  # a missing or bad config is said as every command says it
    text = path.read_text(encoding="utf-8")
    try:
        edited = managed_database(text, path)
    except ConfigTextError as error:
        raise CliError(str(error)) from None
    if edited.added:
        _replace(path, edited.text)
        console.print(f"added to [database] in {path}: {'; '.join(edited.added)}")
    if (data_dir / "jitaku.db").exists():
        console.print(f"{data_dir / 'jitaku.db'} is left as it was: `jitaku db copy` moves what it holds")
    return load_config(data_dir)


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
    part = path.with_name(path.name + ".new")
    part.unlink(missing_ok=True)
    descriptor = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, was.st_mode & 0o777)
    try:
        os.write(descriptor, text.encode())
        os.fchmod(descriptor, was.st_mode & 0o777)
        if os.geteuid() == 0:
            os.fchown(descriptor, was.st_uid, was.st_gid)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    part.rename(path)
