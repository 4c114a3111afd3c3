"""Users and aliases: who has a mailbox here, and which addresses point where."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Connection, Row

from jitaku.addresses import role_of
from jitaku.store.mailstore import INBOX, SPECIAL_FOLDERS, new_uidvalidity
from jitaku.store.schema import aliases, directory_version, lists, mailboxes, subscriptions, users

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


def current_version(connection: Connection) -> int:
    return int(connection.execute(select(directory_version.c.version)).scalar_one())


def load_directory(connection: Connection) -> Directory:
    addresses = [row.address for row in connection.execute(select(users.c.address).order_by(users.c.id))]
    return Directory(
        version=current_version(connection),
        users=frozenset(addresses),
        aliases=dict(list_aliases(connection)),
        first_user=addresses[0] if addresses else None,
        lists=frozenset(row.address for row in connection.execute(select(lists.c.address))),
    )


def changed(connection: Connection) -> None:
    connection.execute(update(directory_version).values(version=directory_version.c.version + 1))


def add_user(connection: Connection, address: str, password_hash: str | None, admin: bool = False) -> User:
    """The first user is an admin whatever ADMIN says: someone must be able to open the dashboard. The user
    starts with INBOX and the special-use folders (Sent, Trash...) that IMAP clients look for, subscribed:
    a client that shows only subscribed folders shows these."""
    address = address.lower()
    if find_user(connection, address) is not None:
        raise AccountError(f"user {address} exists already")
    if find_alias(connection, address) is not None:
        raise AccountError(f"{address} is an alias; remove the alias first")
    _refuse_list(connection, address)
    admin = admin or connection.execute(select(users.c.id).limit(1)).first() is None
    user_id = connection.execute(
        insert(users)
        .values(address=address, password_hash=password_hash, created_at=time.time(), admin=admin)
        .returning(users.c.id)
    ).scalar_one()
    created = new_uidvalidity(connection)
    folders = [(INBOX, None), *SPECIAL_FOLDERS]
    connection.execute(
        insert(mailboxes),
        [
            {"user_id": user_id, "name": name, "special_use": use, "uidvalidity": created, "uidnext": 1}
            for name, use in folders
        ],
    )
    connection.execute(insert(subscriptions), [{"user_id": user_id, "name": name} for name, _use in folders])
    changed(connection)
    return User(user_id, address, password_hash, admin)


def _refuse_list(connection: Connection, address: str) -> None:
    """A list owns its address and its -request, -owner and -bounces addresses."""
    role = role_of(address)
    for candidate in (address, role[0] if role else None):
        if candidate and connection.execute(select(lists.c.id).where(lists.c.address == candidate)).first():
            raise AccountError(f"{address} belongs to the mailing list {candidate}")


def remove_user(connection: Connection, address: str) -> None:
    if connection.execute(delete(users).where(users.c.address == address.lower())).rowcount == 0:
        raise AccountError(f"no user {address.lower()}")
    changed(connection)


_NEXT_GENERATION = users.c.session_generation + 1


def set_password(connection: Connection, address: str, password_hash: str) -> None:
    """A new password ends every web session of the user: whoever knew the old one is logged out."""
    _change_user(connection, address, password_hash=password_hash, session_generation=_NEXT_GENERATION)


def find_user(connection: Connection, address: str) -> User | None:
    row = connection.execute(select(users).where(users.c.address == address.lower())).first()
    return _user(row) if row else None


def list_users(connection: Connection) -> list[User]:
    return [_user(row) for row in connection.execute(select(users).order_by(users.c.id))]


def _user(row: Row[Any]) -> User:
    return User(row.id, row.address, row.password_hash, row.admin, row.session_generation)


def set_admin(connection: Connection, address: str, admin: bool) -> None:
    """Taking the right away ends the user's web sessions at once, not when their cookies expire."""
    if admin:
        _change_user(connection, address, admin=True)
    else:
        _change_user(connection, address, admin=False, session_generation=_NEXT_GENERATION)


def end_sessions(connection: Connection, address: str) -> None:
    """Every web session of the user ends, on every browser (log out)."""
    _change_user(connection, address, session_generation=_NEXT_GENERATION)


def _change_user(connection: Connection, address: str, **values: Any) -> None:
    result = connection.execute(update(users).where(users.c.address == address.lower()).values(**values))
    if result.rowcount == 0:
        raise AccountError(f"no user {address.lower()}")


def add_alias(connection: Connection, alias: str, target: str, local_domains: Collection[str]) -> None:
    """Mail for ALIAS goes to TARGET, which must lead to a user, a list or an address at another domain (not one of
    LOCAL_DOMAINS). `alias add postmaster@ nobody@` was accepted and left postmaster@ refusing mail; so were
    loops and an alias of itself (issue 17)."""
    alias, target = alias.lower(), target.lower()
    if find_user(connection, alias) is not None:
        raise AccountError(f"{alias} is a user; an alias cannot shadow it")
    if find_alias(connection, alias) is not None:
        raise AccountError(f"alias {alias} exists already")
    _refuse_list(connection, alias)
    directory = load_directory(connection)
    chain = replace(directory, aliases={**directory.aliases, alias: target}).follow(alias, local_domains)
    if not chain.lands:
        raise AccountError(_leads_nowhere(chain, directory))
    connection.execute(insert(aliases).values(alias=alias, target=target))
    changed(connection)


def _leads_nowhere(chain: Chain, directory: Directory) -> str:
    if chain.end in chain.addresses[:-1]:
        return f"{chain} would be a loop"
    if chain.end in directory.aliases:
        return f"{chain} -> ... passes through more than {MAX_ALIAS_DEPTH} addresses"
    if len(chain.addresses) == 2:
        return f"{chain.end} is not a user, a list or an alias here (an address at another domain is forwarded)"
    return f"{chain}: {chain.end} is not a user, a list or an alias here"


def remove_alias(connection: Connection, alias: str) -> None:
    if connection.execute(delete(aliases).where(aliases.c.alias == alias.lower())).rowcount == 0:
        raise AccountError(f"no alias {alias.lower()}")
    changed(connection)


def find_alias(connection: Connection, alias: str) -> str | None:
    return connection.execute(select(aliases.c.target).where(aliases.c.alias == alias.lower())).scalar()


def list_aliases(connection: Connection) -> list[tuple[str, str]]:
    rows = connection.execute(select(aliases.c.alias, aliases.c.target).order_by(aliases.c.alias))
    return [(row.alias, row.target) for row in rows]
