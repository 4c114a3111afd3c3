"""The `jitaku` command: init, serve, user, alias, mailbox, queue, dkim, list, ddns, dns, check, alerts, smart."""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import sys
import time
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from jitaku import config as config_module
from jitaku import dns_records, log, provision, service, table
from jitaku.config import Config, ConfigError
from jitaku.data_dir import LOCAL_DIR, SERVICE_DIR
from jitaku.terminal import visible
from jitaku.words import counted

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="jitaku (自宅): a home server that keeps running.",
)
user_app = typer.Typer(no_args_is_help=True, help="Mail users.")
alias_app = typer.Typer(no_args_is_help=True, help="Addresses that forward to users or elsewhere.")
mailbox_app = typer.Typer(no_args_is_help=True, help="Read what arrived.")
queue_app = typer.Typer(no_args_is_help=True, help="The outbound queue.")
dkim_app = typer.Typer(no_args_is_help=True, help="DKIM keys.")
app.add_typer(user_app, name="user")
app.add_typer(alias_app, name="alias")
app.add_typer(mailbox_app, name="mailbox")
app.add_typer(queue_app, name="queue")
app.add_typer(dkim_app, name="dkim")

DIR_HELP = (
    "Data directory (default $JITAKU_DIR, else ./jitaku-data if it exists, else /var/lib/jitaku if it holds"
    " jitaku.toml, else ./jitaku-data)."
)


def _found(context: typer.Context, parameter: typer.CallbackParam, given: Path) -> Path:
    """Where the data directory is: as given by --dir or $JITAKU_DIR, else found (jitaku.data_dir)."""
    from jitaku.data_dir import find

    source = context.get_parameter_source(parameter.name or "")
    return find() if source is not None and source.name == "DEFAULT" else given


def _as_owner(context: typer.Context, parameter: typer.CallbackParam, given: Path) -> Path:
    """The data directory, found; run as root on one that is another user's (the service's), this process
    becomes that user before the command does anything (jitaku.privileges)."""
    from jitaku import privileges

    found = _found(context, parameter, given)
    if not context.resilient_parsing:
        privileges.become_owner(found)
    return found


DirOption = Annotated[
    Path, typer.Option("--dir", envvar="JITAKU_DIR", help=DIR_HELP, show_default=False, callback=_as_owner)
]
# For the two commands that keep root: `serve` binds its ports first and drops root by `[run] user`, and
# `smart collect` reads the disks as root.
RootDirOption = Annotated[
    Path, typer.Option("--dir", envvar="JITAKU_DIR", help=DIR_HELP, show_default=False, callback=_found)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON array.")]
DEFAULT_DIR = LOCAL_DIR  # what typer is given; the --dir callback puts the directory found in its place
USAGE = 2  # the exit code of a usage mistake, as typer (and click before it) gives it

# No markup: a subject holding `[bold]` or `[/]` prints as itself (and `[/]` alone made Rich raise); no emoji
# codes, which Rich replaces even without markup (a stranger's `:warning:` showed as a warning sign). No
# highlighting, which colours parts of a line by guesswork, and no wrapping of plain lines (a path stays whole).
console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True)


class CliError(Exception):
    """A request the CLI cannot carry out; printed as one line."""


def _config(data_dir: Path) -> Config:
    return config_module.load(data_dir)


def _database(config: Config) -> Any:
    from jitaku.store import Database

    return Database(config.database_url)


def _print_json(rows: list[dict[str, Any]]) -> None:
    sys.stdout.write(json.dumps(rows, ensure_ascii=False) + "\n")


def _table(
    columns: list[str], rows: list[list[Any]], *, empty: str, whole: Collection[str] = (), below: str | None = None
) -> None:
    """Rows for a person, nothing cut at any width (jitaku.table); EMPTY, a sentence, when there are none."""
    table.show(console, columns, rows, empty=empty, whole=whole, below=below)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        if not sys.stdin.isatty():
            raise CliError("no terminal to ask for a password; use --password-stdin")
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise CliError("the passwords differ")
    if len(password) < 8:
        raise CliError("a password needs at least 8 characters")
    return password


def _address(text: str) -> str:
    from jitaku import addresses as address

    parsed = address.parse(text)
    if parsed is None:
        raise CliError(f"not a plain mail address: {text!r}")
    return address.normalize(str(parsed))


def _local_address(config: Config, text: str) -> str:
    normalized = _address(text)
    domain = normalized.rpartition("@")[2]
    if not config.settings.is_local_domain(domain):
        raise CliError(f"{domain} is not one of this server's domains ({', '.join(config.settings.domains)})")
    return normalized


InitDirOption = Annotated[
    Path | None,
    typer.Option(
        "--dir",
        envvar="JITAKU_DIR",
        help=DIR_HELP.removesuffix(".") + "; with --service, /var/lib/jitaku.",
        show_default=False,
    ),
]


@app.command()
def init(
    data_dir: InitDirOption = None,
    domain: Annotated[str | None, typer.Option(help="The mail domain (needed only without a config).")] = None,
    hostname: Annotated[str | None, typer.Option(help="This server's name (default mail.DOMAIN).")] = None,
    public: Annotated[
        bool, typer.Option("--public", help="Listen on 0.0.0.0 and [::] (ports 25, 587, 465 ...) instead of loopback.")
    ] = False,
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
        config = _init_service(data_dir or SERVICE_DIR, domain, hostname, public)
    else:
        from jitaku import privileges
        from jitaku.data_dir import find

        data_dir = data_dir or find()
        privileges.become_owner(data_dir)  # an init run as root on the service's dir leaves nothing root's
        config = _init_data_dir(data_dir, domain, hostname, public)
    # whole lines, never through Rich: a record cut or wrapped at the terminal's width is another record
    from jitaku.cli_dns import expected  # it builds on this module's helpers

    sys.stdout.write("\nPublish these DNS records (`jitaku dns records --check` compares them with DNS):\n")
    sys.stdout.write(dns_records.zone_text(expected(config)))


def _init_data_dir(
    data_dir: Path, domain: str | None, hostname: str | None, public: bool, run_user: str | None = None
) -> Config:
    path = data_dir / config_module.CONFIG_NAME
    if not path.exists():
        if not domain:
            raise CliError(f"{path} does not exist yet; give --domain DOMAIN")
        provision.write_config(data_dir, domain.lower(), hostname, public, run_user)
        console.print(f"wrote {path}")
    elif domain or hostname or public:
        console.print(f"{path} exists; left as it is (edit it to change domain, hostname or listeners)")
    config = _config(data_dir)
    for change in provision.tighten(config):
        console.print(visible(change))  # it names what it found in dkim/, which others may have written to
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


def _init_service(data_dir: Path, domain: str | None, hostname: str | None, public: bool) -> Config:
    """The data directory as the system user's, then the systemd units, written and enabled.

    Everything that can refuse is asked before anything changes: root, the paths the units name, a config
    that names another user to run as.
    """
    service.need_root()
    data_dir = Path(os.path.abspath(data_dir))
    install = service.installed()
    units = service.units(install, data_dir)
    path = data_dir / config_module.CONFIG_NAME
    run_user = config_module.load(data_dir).settings.run.user if path.exists() else service.USER
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
            config = _init_data_dir(data_dir, domain, hostname, public, service.USER)
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


@app.command()
def serve(data_dir: RootDirOption = DEFAULT_DIR) -> None:
    """Run every listener and the queue in one process until SIGTERM; one per data directory."""
    from jitaku import app as daemon
    from jitaku import privileges, serve_lock

    config = _config(data_dir)
    user = privileges.run_user(config)  # refused before anything is touched when it cannot be done
    changes = provision.tighten(config)  # first: the lock file is made in a directory nobody else may write to
    log.setup()
    # Bound as root (ports below 1024), then root is dropped for good, before anything is written in the
    # data directory and before the SMTP workers fork: nothing there is root's, no process stays root.
    with serve_lock.held(config.data_dir, owner=user), daemon.listening(config) as sockets:
        if user is not None:
            privileges.drop(user)
            log.event("dropped_root", user=user.pw_name, uid=user.pw_uid, gid=user.pw_gid)
        provision.complete(config)
        for change in changes:
            log.event("data_dir_mode", change=change)
        daemon.run(config, sockets)


@user_app.command("add")
def user_add(
    address: str,
    data_dir: DirOption = DEFAULT_DIR,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
    admin: Annotated[bool, typer.Option("--admin", help="May open the dashboard (the first user always may).")] = False,
) -> None:
    """Add a user with a mailbox."""
    from jitaku.passwords import hash_password
    from jitaku.store import accounts

    config = _config(data_dir)
    normalized = _local_address(config, address)
    password_hash = hash_password(_read_password(password_stdin))
    database = _database(config)
    with database.transaction() as connection:
        added = accounts.add_user(connection, normalized, password_hash, admin)
    console.print(f"added {normalized}" + (" (admin)" if added.admin else ""))


@user_app.command("list")
def user_list(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """List users."""
    from jitaku.store import accounts

    users = _database(_config(data_dir)).read_now(accounts.list_users)
    if as_json:
        _print_json([{"address": u.address, "admin": u.admin} for u in users])
    else:
        _table(
            ["address", "admin"],
            [[u.address, u.admin] for u in users],
            whole={"admin"},
            empty="no users yet: jitaku user add ADDRESS",
        )


@user_app.command("admin")
def user_admin(
    address: str,
    data_dir: DirOption = DEFAULT_DIR,
    revoke: Annotated[bool, typer.Option("--revoke", help="Take the right away instead.")] = False,
) -> None:
    """Let a user open the dashboard (or no longer, with --revoke)."""
    from jitaku.store import accounts

    with _database(_config(data_dir)).transaction() as connection:
        accounts.set_admin(connection, address, not revoke)
    console.print(f"{address.lower()} {'is no longer' if revoke else 'is now'} an admin")


@user_app.command("remove")
def user_remove(
    address: str,
    data_dir: DirOption = DEFAULT_DIR,
    yes: Annotated[bool, typer.Option("--yes", help="Delete the user's mail without asking.")] = False,
) -> None:
    """Remove a user and their mail; with mail, only after a yes at the terminal, or with --yes."""
    from jitaku.store import accounts, mailstore

    normalized = _address(address)
    database = _database(_config(data_dir))
    held = database.read_now(lambda connection: mailstore.messages_held(connection, normalized))
    if held and not yes:  # it deleted years of mail at one mistyped address, without a word (issue 17)
        has = f"{normalized} has {counted(held, 'message')}"
        if not sys.stdin.isatty():
            raise CliError(f"{has}; give --yes to remove the user and delete them (nothing changed)")
        if not typer.confirm(f"{has}. Remove the user and delete them?", default=False, err=True):
            raise CliError(f"nothing changed: {normalized} and its mail are kept")
    with database.transaction() as connection:
        accounts.remove_user(connection, normalized)
    console.print(f"removed {normalized}" + (f" and {counted(held, 'message')}" if held else ""))


@user_app.command("passwd")
def user_passwd(
    address: str,
    data_dir: DirOption = DEFAULT_DIR,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from standard input.")
    ] = False,
) -> None:
    """Set a user's password."""
    from jitaku.passwords import hash_password
    from jitaku.store import accounts

    config = _config(data_dir)
    normalized = _address(address)
    password_hash = hash_password(_read_password(password_stdin))
    with _database(config).transaction() as connection:
        accounts.set_password(connection, normalized, password_hash)
    console.print(f"password set for {normalized}")


@alias_app.command("add")
def alias_add(alias: str, target: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Deliver mail for ALIAS to TARGET: a user, a list or an alias here, or an address at another domain."""
    from jitaku.store import accounts

    config = _config(data_dir)
    with _database(config).transaction() as connection:
        accounts.add_alias(connection, _local_address(config, alias), _address(target), config.settings.domains)
    console.print(f"{_address(alias)} -> {_address(target)}")


@alias_app.command("list")
def alias_list(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """List aliases, with each domain's built-in postmaster@ and abuse@ where no alias of theirs leads."""
    from jitaku.mail.policy import ROLE_ACCOUNTS, AliasRoute, alias_routes
    from jitaku.store import accounts

    config = _config(data_dir)
    routes = alias_routes(_database(config).read_now(accounts.load_directory), config.settings.domains)
    if as_json:
        _print_json([dataclasses.asdict(route) for route in routes])
        return

    def note(route: AliasRoute) -> str | None:
        if route.built_in:
            return "built-in"
        if not route.leads_nowhere:
            return None
        if route.alias.partition("@")[0] in ROLE_ACCOUNTS:
            return "leads nowhere: the built-in one takes its mail"
        return "leads nowhere: its mail is refused"

    _table(
        ["alias", "target", "note"],
        [[route.alias, route.target, note(route)] for route in routes],
        empty="no aliases yet: jitaku alias add ALIAS TARGET",
    )


@alias_app.command("remove")
def alias_remove(alias: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Remove an alias."""
    from jitaku.store import accounts

    with _database(_config(data_dir)).transaction() as connection:
        accounts.remove_alias(connection, _address(alias))
    console.print(f"removed {_address(alias)}")


@mailbox_app.command("list")
def mailbox_list(address: str, data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """One line per message: uid, date, from, subject, size."""
    from jitaku.mail import mailbox
    from jitaku.store import mailstore

    normalized = _address(address)
    try:
        stored = _database(_config(data_dir)).read_now(lambda c: mailstore.list_messages(c, normalized))
    except LookupError as error:
        raise CliError(str(error)) from None
    rows = [mailbox.summary(message) for message in stored]
    if as_json:
        _print_json([row.as_json() for row in rows])
    else:
        _table(
            ["uid", "date", "from", "subject", "size"],
            [[r.uid, r.date, r.sender, r.subject, r.size] for r in rows],
            whole={"uid", "date", "size"},
            empty=f"no mail in {normalized}'s INBOX",
        )


@mailbox_app.command("show")
def mailbox_show(address: str, uid: int, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Write the stored message to standard output, byte for byte (on a terminal, its controls spelled out)."""
    from jitaku.store import mailstore

    normalized = _address(address)
    try:
        message = _database(_config(data_dir)).read_now(lambda c: mailstore.get_message(c, normalized, uid))
    except LookupError as error:
        raise CliError(str(error)) from None
    if message is None:
        raise CliError(f"no message {uid} in {normalized}")
    if sys.stdout.isatty():  # a person reads it: a stranger's bytes must not steer the terminal
        text = message.body.decode("utf-8", "replace").replace("\r\n", "\n")
        sys.stdout.write("\n".join("\t".join(map(visible, line.split("\t"))) for line in text.split("\n")))
        sys.stdout.flush()
        return
    sys.stdout.buffer.write(message.body)
    sys.stdout.buffer.flush()


@queue_app.command("list")
def queue_list(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Messages waiting for delivery."""
    from jitaku.store import queue

    rows = [m.as_json() for m in _database(_config(data_dir)).read_now(queue.list_queue)]
    if as_json:
        _print_json(rows)
    else:
        keys = ["id", "attempts", "next_attempt", "sender", "recipients", "last_error"]
        _table(
            [key.replace("_", " ") for key in keys],
            [[row[key] for key in keys] for row in rows],
            whole={"id", "attempts", "next attempt"},
            below="last error",
            empty="the queue is empty: nothing waits to be delivered",
        )


@queue_app.command("flush")
def queue_flush(data_dir: DirOption = DEFAULT_DIR) -> None:
    """Retry every queued message now (a running daemon notices within a second or two)."""
    from jitaku.store import queue

    with _database(_config(data_dir)).transaction() as connection:
        count = queue.flush(connection, time.time())
    console.print(f"{counted(count, 'message')} due now")


@queue_app.command("delete")
def queue_delete(queue_id: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Drop a message from the queue without a bounce."""
    from jitaku.store import queue

    with _database(_config(data_dir)).transaction() as connection:
        if not queue.remove(connection, queue_id.upper()):
            raise CliError(f"no queued message {queue_id}")
    console.print(f"deleted {queue_id.upper()}")


@dkim_app.command("show")
def dkim_show(
    domain: Annotated[str | None, typer.Argument(help="One domain (default: all).")] = None,
    data_dir: DirOption = DEFAULT_DIR,
    as_json: JsonOption = False,
) -> None:
    """The DKIM TXT records to publish, as zone-file text."""
    config = _config(data_dir)
    if domain and not config.settings.is_local_domain(domain):
        raise CliError(f"{domain} is not one of this server's domains")
    records = dns_records.dkim(config, domain.lower() if domain else None)
    if as_json:
        _print_json([{"name": r.name, "value": r.value} for r in records])
    else:
        sys.stdout.write(dns_records.zone_text(records))  # whole, as init prints them: a cut key is no key


def _register_subcommands() -> None:
    from jitaku.cli_ddns import ddns_app  # they build on this module's helpers
    from jitaku.cli_dns import dns_app
    from jitaku.cli_health import alerts_app, check
    from jitaku.cli_lists import list_app
    from jitaku.cli_smart import smart_app

    app.add_typer(list_app, name="list")
    app.add_typer(smart_app, name="smart")
    app.add_typer(ddns_app, name="ddns")
    app.add_typer(dns_app, name="dns")
    app.add_typer(alerts_app, name="alerts")
    app.command("check")(check)


_register_subcommands()


def main() -> None:
    """Every outcome is an exit code, and a failure says on stderr what is wrong; a traceback only with JITAKU_DEBUG=1.

    0 done, 1 refused (the request was understood and cannot be carried out), 2 a usage mistake (the command line,
    or input ended at a prompt), 70 a bug, 130 Ctrl-C; `jitaku check` adds its own 1 and 2 (CONTRACTS).
    """
    from jitaku.errors import PrivilegeError, ServeError
    from jitaku.service import ServiceError
    from jitaku.store.accounts import AccountError

    debug = os.environ.get("JITAKU_DEBUG") == "1"
    try:
        # Not typer's standalone mode: that prints a usage mistake as a Rich panel and an end of input as
        # "Aborted." with exit 1. prog_name: the usage line says `jitaku` under `python -m jitaku` too.
        code = app(prog_name="jitaku", standalone_mode=False)  # a command's typer.Exit(N) comes back as N
    except typer.TyperException as error:
        sys.exit(_say_typer_error(error))
    except typer.Abort:  # typer's word for EOFError: Ctrl-D at the password prompt
        sys.stderr.write("jitaku: the input ended (Ctrl-D) before an answer; nothing changed\n")
        sys.exit(USAGE)
    except (ConfigError, ServeError, PrivilegeError, AccountError, CliError, ServiceError) as error:
        if debug:
            raise
        sys.stderr.write(f"jitaku: {visible(str(error))}\n")
        sys.exit(1)
    except PermissionError as error:  # another user's data directory, run as neither root nor them
        if debug:
            raise
        where = f"{error.filename}: " if error.filename else ""
        sys.stderr.write(f"jitaku: {visible(where + (error.strerror or str(error)))}\n")
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:  # a bug: one line for the person, the traceback on request
        if debug:
            raise
        sys.stderr.write(f"jitaku: internal error: {visible(repr(error))} (JITAKU_DEBUG=1 shows the traceback)\n")
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)


def _say_typer_error(error: typer.TyperException) -> int:
    """Say what typer refused, and return its exit code (2 for a usage mistake).

    Since 0.26 typer raises its own copy of click's exceptions, not click's: catching click's let every usage
    mistake through as "internal error ... exit 70" (issue 17). TyperException is their public base; UsageError
    and NoArgsIsHelpError are not re-exported, hence the private import, which pyproject's bound on typer and
    test_cli's usage tests keep honest.
    """
    from typer._click.exceptions import NoArgsIsHelpError, UsageError

    if isinstance(error, NoArgsIsHelpError):  # `jitaku` or `jitaku user` alone: Rich printed the help already
        return error.exit_code
    sys.stderr.write(f"jitaku: {visible(error.format_message())}\n")
    if isinstance(error, UsageError) and error.ctx is not None:
        sys.stderr.write(f"{error.ctx.get_usage()}  (see {error.ctx.command_path} --help)\n")
    return error.exit_code
