"""`jitaku filter ...`: the allow and block lists of senders (store/filters.py): for everyone, for a domain of
ours, or for one user. An allowed sender skips spam scoring, never virus scanning, and only when our checks vouch
for it (mail/filters/senders.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from jitaku.cli.common import (
    DEFAULT_DIR,
    CliError,
    DirOption,
    JsonOption,
    console,
    load_config,
    open_database,
    parse_local_address,
    print_json,
    print_table,
)
from jitaku.config import Config
from jitaku.store.filters import Scope

filter_app = typer.Typer(no_args_is_help=True, help="Senders always let through or always refused.")
UserOption = Annotated[str | None, typer.Option("--user", help="For this user's mail only.")]
DomainOption = Annotated[str | None, typer.Option("--domain", help="For the mail of this domain of ours.")]


@filter_app.command("allow")
def allow(
    pattern: str, user: UserOption = None, domain: DomainOption = None, data_dir: DirOption = DEFAULT_DIR
) -> None:
    """Let mail from PATTERN (an address, or a domain and its subdomains: example.jp, @example.jp) skip spam
    scoring when the envelope sender it names passed SPF, or the From address it names passed DMARC or aligned
    DKIM (anyone can forge a sender: an unchecked one is scored); viruses are still refused."""
    _add("allow", pattern, user, domain, data_dir)


@filter_app.command("block")
def block(
    pattern: str, user: UserOption = None, domain: DomainOption = None, data_dir: DirOption = DEFAULT_DIR
) -> None:
    """Refuse mail whose envelope sender or From address PATTERN names (an address, or a domain and its
    subdomains)."""
    _add("block", pattern, user, domain, data_dir)


def _add(action: str, pattern: str, user: str | None, domain: str | None, data_dir: Path) -> None:
    from jitaku.store import filters

    config = load_config(data_dir)
    scope, owner = _scope(config, user, domain)
    try:
        with open_database(config).transaction() as connection:
            rule = filters.add(connection, scope, owner, "allow" if action == "allow" else "block", pattern)
    except filters.RuleError as error:
        raise CliError(f"{error} (nothing changed)") from None
    console.print(f"{rule.id}: {rule.action} {rule.pattern} for {owner or 'everyone'}")


def _scope(config: Config, user: str | None, domain: str | None) -> tuple[Scope, str]:
    if user is not None and domain is not None:
        raise CliError("give --user or --domain, not both")
    if user is not None:
        from jitaku.store import accounts

        address = parse_local_address(config, user)
        if open_database(config).read_now(lambda c: accounts.find_user(c, address)) is None:
            raise CliError(f"no user {address} (see jitaku user list)")
        return "user", address
    if domain is not None:
        name = domain.strip().lower()
        if not config.settings.is_local_domain(name):
            raise CliError(f"{name} is not one of this server's domains ({', '.join(config.settings.domains)})")
        return "domain", name
    return "global", ""


@filter_app.command("list")
def list_rules(data_dir: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Every rule: its id (for `filter remove`), whose mail it is for, allow or block, the sender."""
    from jitaku.store import filters

    found = open_database(load_config(data_dir)).read_now(filters.rules)
    if as_json:
        print_json([rule.as_json() for rule in found])
        return
    print_table(
        ["id", "scope", "for", "action", "pattern"],
        [[str(r.id), r.scope, r.owner or "everyone", r.action, r.pattern] for r in found],
        whole={"id", "scope", "action"},
        empty="no rules: jitaku filter allow|block [--user ADDRESS | --domain DOMAIN] PATTERN",
    )


@filter_app.command("remove")
def remove(rule_id: int, data_dir: DirOption = DEFAULT_DIR) -> None:
    """Forget rule RULE_ID (see `filter list`)."""
    from jitaku.store import filters

    with open_database(load_config(data_dir)).transaction() as connection:
        if not filters.remove(connection, rule_id):
            raise CliError(f"no rule {rule_id} (see jitaku filter list)")
    console.print(f"removed rule {rule_id}")
