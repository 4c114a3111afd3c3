"""`jitaku init`: the data directory made whole, or with --service the system user, the data directory as
theirs and the systemd units; then the DNS records to publish."""

from __future__ import annotations

import enum
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from jitaku import config as config_module
from jitaku import dns_records, provision, service
from jitaku.cli import db
from jitaku.cli.common import DIR_HELP, CliError, console, load_config, records_to_publish
from jitaku.config import Config
from jitaku.data_dir import SERVICE_DIR
from jitaku.terminal import visible
from jitaku.words import counted


class Database(enum.StrEnum):
    sqlite = "sqlite"
    postgresql = "postgresql"


InitDirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        envvar="JITAKU_DIR",
        help=DIR_HELP.removesuffix(".") + "; with --service, /var/lib/jitaku.",
        show_default=False,
    ),
]


def init(
    data_dir: InitDirOption = None,
    domain: Annotated[str | None, typer.Option(help="The mail domain (needed only without a config).")] = None,
    hostname: Annotated[str | None, typer.Option(help="This server's name (default mail.DOMAIN).")] = None,
    public: Annotated[
        bool, typer.Option("--public", help="Listen on 0.0.0.0 and [::] (ports 25, 587, 465 ...) instead of loopback.")
    ] = False,
    database: Annotated[
        Database,
        typer.Option(
            "--database",
            help="Where the store lives: sqlite (jitaku.db here), or postgresql (a cluster of jitaku's own in"
            " DIR/postgres; added to an existing config, nothing else in it changed).",
        ),
    ] = Database.sqlite,
    as_service: Annotated[
        bool,
        typer.Option(
            "--service",
            help="Run it as a systemd service (root): the system user jitaku, units written and enabled.",
        ),
    ] = False,
) -> None:
    """Create what the data directory lacks and print the DNS records to publish."""
    if as_service:
        config = _init_service(data_dir or SERVICE_DIR, domain, hostname, public, database)
    else:
        from jitaku import privileges
        from jitaku.data_dir import find

        data_dir = data_dir or find()
        privileges.become_owner(data_dir)  # an init run as root on the service's dir leaves nothing root's
        config = _init_data_dir(data_dir, domain, hostname, public, database)
    # whole lines, never through Rich: a record cut or wrapped at the terminal's width is another record
    sys.stdout.write("\nPublish these DNS records (`jitaku dns records --check` compares them with DNS):\n")
    sys.stdout.write(dns_records.zone_text(records_to_publish(config)))


def _init_data_dir(
    data_dir: Path,
    domain: str | None,
    hostname: str | None,
    public: bool,
    database: Database,
    run_user: str | None = None,
) -> Config:
    path = data_dir / config_module.CONFIG_NAME
    postgresql = database == Database.postgresql
    if not path.exists():
        if not domain:
            raise CliError(f"{path} does not exist yet; give --domain DOMAIN")
        text = provision.config_text(path, domain.lower(), hostname, public, run_user, managed_database=postgresql)
        if postgresql:  # the cluster first: a config naming one that could not be made would stop the daemon
            provision.make_data_dir(data_dir)
            db.create_cluster(Config(config_module.parse(text, path), data_dir))
        provision.write_config(data_dir, text)
        console.print(f"wrote {path}")
        moving = False
    else:
        if domain or hostname or public:
            console.print(f"{path} exists; left as it is (edit it to change domain, hostname or listeners)")
        moving = postgresql
    config = load_config(data_dir)
    for change in provision.tighten(config):  # before the cluster's user is let through the data directory
        console.print(visible(change))  # it names what it found in dkim/, which others may have written to
    if moving and not config.settings.database.managed:
        with db.stopped(data_dir, before="moving the store"):
            config = db.switch(data_dir)
    if config.settings.database.managed:
        db.create_cluster(config)
    try:
        for made in provision.complete(config):
            console.print(f"ready: {made}")
    except OSError as error:  # a full disk, a read-only dir, a symbolic link planted where a key belongs
        raise CliError(f"cannot write {error.filename or config.data_dir}: {error.strerror or error}") from None
    from jitaku.health import smartctl

    program = config.settings.health.smart.smartctl
    if smartctl.locate(program) is None:  # `pip install` cannot install it, and without it disks go unwatched
        console.print(f"{program} is not installed, so no disk's SMART is watched ({smartctl.INSTALL})")
    return config


def _init_service(data_dir: Path, domain: str | None, hostname: str | None, public: bool, database: Database) -> Config:
    """The data directory as the system user's, then the systemd units, written and enabled.

    Everything that can refuse is asked before anything changes: root, the paths the units name, a config
    that names another user to run as.
    """
    service.need_root()
    data_dir = Path(os.path.abspath(data_dir))
    install = service.installed()
    path = data_dir / config_module.CONFIG_NAME
    settings = config_module.load(data_dir).settings if path.exists() else None
    units = service.units(install, data_dir, floating=settings is not None and settings.ha.address is not None)
    run_user = settings.run.user if settings is not None else service.USER
    if run_user not in (None, service.USER):
        raise CliError(f'{path} says [run] user = "{run_user}"; the service runs as {service.USER}: change it')
    try:
        account, added = service.ensure_user()
        if added:
            console.print(f"added the system user {account.pw_name} (home {account.pw_dir}, shell {account.pw_shell})")
        existed = data_dir.exists()
        provision.make_data_dir(data_dir)
        given = service.adopt(data_dir, account)
        if existed and given:  # a data dir made by an init run as root before
            console.print(f"gave {account.pw_name} {counted(given, 'entry', 'entries')} root owned in {data_dir}")
        service.check_reachable(install, data_dir, account)
        with service.acting_as(account):
            config = _init_data_dir(data_dir, domain, hostname, public, database, service.USER)
        if run_user is None:
            console.print(
                f"{path} has no [run] user: the service starts as {service.USER} all the same; add [run] user = "
                f'"{service.USER}" for a `jitaku serve` started by hand as root'
            )
        for written in service.write_units(units):
            differed = written.change == "rewrote"
            console.print(f"{written.change} {written.path}" + (" (it differed)" if differed else ""))
            if differed and written.path.name == service.SERVICE:
                console.print("  `systemctl restart jitaku` applies it to a running daemon (ending open sessions)")
        for line in service.enable():
            console.print(line)
    except OSError as error:
        raise CliError(f"cannot write {error.filename or data_dir}: {error.strerror or error}") from None
    console.print("see it: systemctl status jitaku; its log: journalctl -u jitaku")
    console.print(f"its data: {data_dir}; as root, jitaku commands there run as {service.USER}")
    return config
