"""Users and aliases: who has a mailbox here, and which addresses point where.

Prepared SQL on the DB-API (store/statements.py), not Core: the daemon reads a user at every login and the
directory's version at every RCPT, and need not import SQLAlchemy for it (issue 20).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from jitaku.addresses import role_of
from jitaku.store.mailstore import INBOX, SPECIAL_FOLDERS, new_uidvalidity
from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

# How many addresses a chain of aliases may pass through, the first included. Routing follows no further, so a
# loop in a database from before add_alias refused loops costs a few lookups, never a hang.
MAX_ALIAS_DEPTH = 10


class AccountError(Exception):
    """A request about accounts that cannot be done; the message is for a person."""


@dataclass(frozen=True)
class User:
    id: int
    address: str
    password_hash: str | None
    admin: bool = False
    session_generation: int = 0  # a web session opened at another value has ended


@dataclass(frozen=True)
class Directory:
    """Who is here, as of VERSION: what routing needs on every RCPT, without a query."""

    version: int
    users: frozenset[str]
    aliases: dict[str, str]
    first_user: str | None
    lists: frozenset[str] = frozenset()

    def follow(self, address: str, local_domains: Collection[str]) -> Chain:
        """Where ADDRESS's aliases lead: routing and add_alias read the same chain, so an alias accepted is one
        that delivers. It stops where mail lands (a user, a list, an address at another domain), at an address
        here that is none of these, at the first address seen twice (a loop), or after MAX_ALIAS_DEPTH."""
        passed = [address]
        while not self._lands(passed[-1], local_domains) and len(passed) < MAX_ALIAS_DEPTH:
            target = self.aliases.get(passed[-1])
            if target is None:
                break
            passed.append(target)
            if target in passed[:-1]:
                break
        return Chain(tuple(passed), self._lands(passed[-1], local_domains))

    def _lands(self, address: str, local_domains: Collection[str]) -> bool:
        return address.rpartition("@")[2] not in local_domains or address in self.users or address in self.lists


@dataclass(slots=True)
class Chain:
    """An address and the aliases it passes through; LANDS: the last one is where its mail goes."""

    addresses: tuple[str, ...]
    lands: bool

    @property
    def end(self) -> str:
        return self.addresses[-1]

    def __str__(self) -> str:
        return " -> ".join(self.addresses)


def current_version(source: Connection | Statements) -> int:
    return int(statements_of(source).run("SELECT version FROM directory_version")[0][0])


def load_directory(source: Connection | Statements) -> Directory:
    statements = statements_of(source)
    addresses = [address for (address,) in statements.run("SELECT address FROM users ORDER BY id")]
    return Directory(
        version=current_version(statements),
        users=frozenset(addresses),
        aliases=dict(list_aliases(statements)),
        first_user=addresses[0] if addresses else None,
        lists=frozenset(address for (address,) in statements.run("SELECT address FROM lists")),
    )


def changed(target: Connection | Tx) -> None:
    tx_of(target).run("UPDATE directory_version SET version = version + 1")


def add_user(target: Connection | Tx, address: str, password_hash: str | None, admin: bool = False) -> User:
    """The first user is an admin whatever ADMIN says: someone must be able to open the dashboard. The user
    starts with INBOX and the special-use folders (Sent, Trash...) that IMAP clients look for, subscribed:
    a client that shows only subscribed folders shows these."""
    tx = tx_of(target)
    address = address.lower()
    if find_user(tx, address) is not None:
        raise AccountError(f"user {address} exists already")
    if find_alias(tx, address) is not None:
        raise AccountError(f"{address} is an alias; remove the alias first")
    _refuse_list(tx, address)
    admin = admin or not tx.run("SELECT id FROM users LIMIT 1")
    user_id = int(
        tx.run(
            "INSERT INTO users (address, password_hash, created_at, admin, session_generation)"
            " VALUES (?, ?, ?, ?, 0) RETURNING id",
            (address, password_hash, time.time(), admin),
        )[0][0]
    )
    created = new_uidvalidity(tx)
    folders = [(INBOX, None), *SPECIAL_FOLDERS]
    tx.run_many(
        "INSERT INTO mailboxes (user_id, name, special_use, uidvalidity, uidnext, highestmodseq, recent_uid)"
        " VALUES (?, ?, ?, ?, 1, 1, 1)",
        [(user_id, name, use, created) for name, use in folders],
    )
    tx.run_many("INSERT INTO subscriptions (user_id, name) VALUES (?, ?)", [(user_id, name) for name, _use in folders])
    changed(tx)
    return User(user_id, address, password_hash, admin)


def _refuse_list(statements: Statements, address: str) -> None:
    """A list owns its address and its -request, -owner and -bounces addresses."""
    role = role_of(address)
    for candidate in (address, role[0] if role else None):
        if candidate and statements.run("SELECT id FROM lists WHERE address = ?", (candidate,)):
            raise AccountError(f"{address} belongs to the mailing list {candidate}")


def remove_user(target: Connection | Tx, address: str) -> None:
    tx = tx_of(target)
    if not tx.run("DELETE FROM users WHERE address = ? RETURNING id", (address.lower(),)):
        raise AccountError(f"no user {address.lower()}")
    changed(tx)


# Each change of a user, the address last; one more session_generation ends the user's web sessions
_SET_PASSWORD = (
    "UPDATE users SET password_hash = ?, session_generation = session_generation + 1 WHERE address = ? RETURNING id"
)
_GRANT_ADMIN = "UPDATE users SET admin = ? WHERE address = ? RETURNING id"
_REVOKE_ADMIN = "UPDATE users SET admin = ?, session_generation = session_generation + 1 WHERE address = ? RETURNING id"
_END_SESSIONS = "UPDATE users SET session_generation = session_generation + 1 WHERE address = ? RETURNING id"


def set_password(target: Connection | Tx, address: str, password_hash: str) -> None:
    """A new password ends every web session of the user: whoever knew the old one is logged out."""
    _change_user(target, address, _SET_PASSWORD, password_hash)


_USER = "SELECT id, address, password_hash, admin, session_generation FROM users"


def find_user(source: Connection | Statements, address: str) -> User | None:
    rows = statements_of(source).run(f"{_USER} WHERE address = ?", (address.lower(),))
    return _user(rows[0]) if rows else None


def list_users(source: Connection | Statements) -> list[User]:
    return [_user(row) for row in statements_of(source).run(f"{_USER} ORDER BY id")]


def _user(row: Any) -> User:
    user_id, address, password_hash, admin, session_generation = row
    return User(user_id, address, password_hash, bool(admin), session_generation)  # SQLite's admin is 0 or 1


def set_admin(target: Connection | Tx, address: str, admin: bool) -> None:
    """Taking the right away ends the user's web sessions at once, not when their cookies expire."""
    _change_user(target, address, _GRANT_ADMIN if admin else _REVOKE_ADMIN, admin)


def end_sessions(target: Connection | Tx, address: str) -> None:
    """Every web session of the user ends, on every browser (log out)."""
    _change_user(target, address, _END_SESSIONS)


def _change_user(target: Connection | Tx, address: str, statement: str, *values: Any) -> None:
    if not tx_of(target).run(statement, (*values, address.lower())):
        raise AccountError(f"no user {address.lower()}")


def add_alias(target: Connection | Tx, alias: str, to: str, local_domains: Collection[str]) -> None:
    """Mail for ALIAS goes to TO, which must lead to a user, a list or an address at another domain (not one of
    LOCAL_DOMAINS). `alias add postmaster@ nobody@` was accepted and left postmaster@ refusing mail; so were
    loops and an alias of itself (issue 17)."""
    tx = tx_of(target)
    alias, to = alias.lower(), to.lower()
    if find_user(tx, alias) is not None:
        raise AccountError(f"{alias} is a user; an alias cannot shadow it")
    if find_alias(tx, alias) is not None:
        raise AccountError(f"alias {alias} exists already")
    _refuse_list(tx, alias)
    directory = load_directory(tx)
    chain = replace(directory, aliases={**directory.aliases, alias: to}).follow(alias, local_domains)
    if not chain.lands:
        raise AccountError(_leads_nowhere(chain, directory))
    tx.run("INSERT INTO aliases (alias, target) VALUES (?, ?)", (alias, to))
    changed(tx)


def _leads_nowhere(chain: Chain, directory: Directory) -> str:
    if chain.end in chain.addresses[:-1]:
        return f"{chain} would be a loop"
    if chain.end in directory.aliases:
        return f"{chain} -> ... passes through more than {MAX_ALIAS_DEPTH} addresses"
    if len(chain.addresses) == 2:
        return f"{chain.end} is not a user, a list or an alias here (an address at another domain is forwarded)"
    return f"{chain}: {chain.end} is not a user, a list or an alias here"


def remove_alias(target: Connection | Tx, alias: str) -> None:
    tx = tx_of(target)
    if not tx.run("DELETE FROM aliases WHERE alias = ? RETURNING alias", (alias.lower(),)):
        raise AccountError(f"no alias {alias.lower()}")
    changed(tx)


def find_alias(source: Connection | Statements, alias: str) -> str | None:
    rows = statements_of(source).run("SELECT target FROM aliases WHERE alias = ?", (alias.lower(),))
    return str(rows[0][0]) if rows else None


def list_aliases(source: Connection | Statements) -> list[tuple[str, str]]:
    return [
        (alias, target)
        for alias, target in statements_of(source).run("SELECT alias, target FROM aliases ORDER BY alias")
    ]
