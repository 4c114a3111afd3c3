"""`jitaku user ...` and `jitaku alias ...`: who has a mailbox here, and which addresses lead where."""

from __future__ import annotations

import dataclasses
import getpass
import sys
from typing import Annotated

import typer

from jitaku.cli.common import (
    DEFAULT_DIR,
    CliError,
    DirOption,
    JsonOption,
    confirm,
    console,
    load_config,
    open_database,
    parse_address,
    parse_local_address,
    print_json,
    print_table,
)
from jitaku.words import counted

user_app = typer.Typer(no_args_is_help=True, help="Mail users.")
alias_app = typer.Typer(no_args_is_help=True, help="Addresses that forward to users or elsewhere.")


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

    config = load_config(data_dir)
    normalized = parse_local_address(config, address)
    password_hash = hash_password(_read_password(password_stdin))
    database = open_database(config)
    with database.transaction() as connection:
        added = accounts.add_user(connection, normalized, password_hash, admin)
    console.print(f"added {normalized}" + (" (admin)" if added.admin else ""))


@user_app.command("list")
def user_list(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """List users."""
    from jitaku.store import accounts

    users = open_database(load_config(data_dir)).read_now(accounts.list_users)
    if as_json:
        print_json([{"address": u.address, "admin": u.admin} for u in users])
    else:
        print_table(
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

    with open_database(load_config(data_dir)).transaction() as connection:
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

    normalized = parse_address(address)
    database = open_database(load_config(data_dir))
    held = database.read_now(lambda connection: mailstore.messages_held(connection, normalized))
    if held and not yes:  # it deleted years of mail at one mistyped address, without a word (issue 17)
        has = f"{normalized} has {counted(held, 'message')}"
        if not sys.stdin.isatty():
            raise CliError(f"{has}; give --yes to remove the user and delete them (nothing changed)")
        if not confirm(f"{has}. Remove the user and delete them?"):
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

    config = load_config(data_dir)
    normalized = parse_address(address)
    password_hash = hash_password(_read_password(password_stdin))
    with open_database(config).transaction() as connection:
        accounts.set_password(connection, normalized, password_hash)
    console.print(f"password set for {normalized}")


@alias_app.command("add")
def alias_add(alias: str, target: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Deliver mail for ALIAS to TARGET: a user, a list or an alias here, or an address at another domain."""
    from jitaku.store import accounts

    config = load_config(data_dir)
    with open_database(config).transaction() as connection:
        accounts.add_alias(
            connection, parse_local_address(config, alias), parse_address(target), config.settings.domains
        )
    console.print(f"{parse_address(alias)} -> {parse_address(target)}")


@alias_app.command("list")
def alias_list(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """List aliases, with each domain's built-in postmaster@ and abuse@ where no alias of theirs leads."""
    from jitaku.mail.policy import ROLE_ACCOUNTS, AliasRoute, alias_routes
    from jitaku.store import accounts

    config = load_config(data_dir)
    routes = alias_routes(open_database(config).read_now(accounts.load_directory), config.settings.domains)
    if as_json:
        print_json([dataclasses.asdict(route) for route in routes])
        return

    def note(route: AliasRoute) -> str | None:
        if route.built_in:
            return "built-in"
        if not route.leads_nowhere:
            return None
        if route.alias.partition("@")[0] in ROLE_ACCOUNTS:
            return "leads nowhere: the built-in one takes its mail"
        return "leads nowhere: its mail is refused"

    print_table(
        ["alias", "target", "note"],
        [[route.alias, route.target, note(route)] for route in routes],
        empty="no aliases yet: jitaku alias add ALIAS TARGET",
    )


@alias_app.command("remove")
def alias_remove(alias: str, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Remove an alias."""
    from jitaku.store import accounts

    with open_database(load_config(data_dir)).transaction() as connection:
        accounts.remove_alias(connection, parse_address(alias))
    console.print(f"removed {parse_address(alias)}")
