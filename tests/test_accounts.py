"""store/accounts: an alias is accepted only when it delivers, and routing (mail/policy) follows the same chain."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import insert

from jitaku.config import Settings
from jitaku.mail.policy import Accepted, Policy, Refused
from jitaku.store import Database, accounts, lists
from jitaku.store.accounts import MAX_ALIAS_DEPTH, AccountError
from jitaku.store.schema import aliases
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

DOMAINS = ("example.test", "example.org")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", None)  # the first user
        accounts.add_user(connection, "bob@example.org", None)
        lists.create_list(connection, "sota@example.test", "SOTA", "[sota:%05d]", "list", "auto", "")
    yield database
    database.close()


def add(database: Database, alias: str, target: str) -> None:
    with database.transaction() as connection:
        accounts.add_alias(connection, alias, target, DOMAINS)


def planted(database: Database, *pairs: tuple[str, str]) -> None:
    """Aliases as a database from before the checks may hold them, written past add_alias."""
    with database.transaction() as connection:
        connection.execute(insert(aliases), [{"alias": alias, "target": target} for alias, target in pairs])
        accounts.changed(connection)


@pytest.mark.parametrize(
    ("alias", "target"),
    [
        ("info@example.test", "alice@example.test"),  # a user
        ("club@example.test", "sota@example.test"),  # a list
        ("fwd@example.test", "dave@remote.test"),  # another server
        ("postmaster@example.org", "bob@example.org"),
    ],
)
def test_an_alias_that_delivers_is_added(database: Database, alias: str, target: str) -> None:
    add(database, alias, target)
    assert database.read_now(accounts.list_aliases) == [(alias, target)]


def test_an_alias_may_lead_through_other_aliases_to_a_user_or_elsewhere(database: Database) -> None:
    add(database, "info@example.test", "alice@example.test")
    add(database, "sales@example.org", "info@example.test")
    add(database, "away@example.test", "dave@remote.test")
    add(database, "travel@example.test", "away@example.test")
    assert len(database.read_now(accounts.list_aliases)) == 4


@pytest.mark.parametrize(
    ("alias", "target", "said"),
    [
        (
            "postmaster@example.test",
            "nobody@example.test",
            "nobody@example.test is not a user, a list or an alias here (an address at another domain is forwarded)",
        ),
        ("info@example.test", "info@example.test", "info@example.test -> info@example.test would be a loop"),
        ("club@example.test", "sota-request@example.test", "sota-request@example.test is not a user, a list or"),
    ],
    ids=["unknown-user", "itself", "list-role-address"],
)
def test_an_alias_that_leads_nowhere_is_refused_and_nothing_changes(
    database: Database, alias: str, target: str, said: str
) -> None:
    version = database.read_now(accounts.current_version)
    with pytest.raises(AccountError) as refused:
        add(database, alias, target)
    assert str(refused.value).startswith(said)
    assert database.read_now(accounts.list_aliases) == []
    assert database.read_now(accounts.current_version) == version


def test_a_loop_through_other_aliases_is_refused(database: Database) -> None:
    planted(database, ("a@example.test", "b@example.test"), ("b@example.test", "a@example.test"))  # an older jitaku's
    loop = "c@example.test -> a@example.test -> b@example.test -> a@example.test would be a loop"
    with pytest.raises(AccountError, match=f"^{loop}$"):
        add(database, "c@example.test", "a@example.test")
    assert database.read_now(accounts.list_aliases) == [
        ("a@example.test", "b@example.test"),
        ("b@example.test", "a@example.test"),
    ]


def test_a_chain_that_ends_at_nobody_or_runs_too_long_is_refused(database: Database) -> None:
    planted(database, ("old@example.test", "gone@example.test"))  # its user was removed
    with pytest.raises(AccountError, match="^new@example.test -> old@example.test -> gone@example.test: gone@"):
        add(database, "new@example.test", "old@example.test")
    # a chain of MAX_ALIAS_DEPTH addresses reaches its user; one more, and routing would stop short
    add(database, "a1@example.test", "alice@example.test")
    for n in range(2, MAX_ALIAS_DEPTH):
        add(database, f"a{n}@example.test", f"a{n - 1}@example.test")
    with pytest.raises(AccountError, match=f"passes through more than {MAX_ALIAS_DEPTH} addresses$"):
        add(database, f"a{MAX_ALIAS_DEPTH}@example.test", f"a{MAX_ALIAS_DEPTH - 1}@example.test")
    policy = Policy(Settings(domains=list(DOMAINS)), database)
    directory = database.read_now(accounts.load_directory)
    assert policy.resolve(directory, f"a{MAX_ALIAS_DEPTH - 1}@example.test") == "alice@example.test"


def test_routing_ends_on_a_loop_an_older_database_holds_and_postmaster_still_reaches_the_first_user(
    database: Database,
) -> None:
    planted(
        database,
        ("a@example.test", "b@example.test"),
        ("b@example.test", "a@example.test"),
        ("self@example.test", "self@example.test"),
        ("postmaster@example.test", "nobody@example.test"),  # the broken postmaster@
        ("abuse@example.org", "abuse@example.org"),
    )
    policy = Policy(Settings(domains=list(DOMAINS)), database)

    async def rcpt(address: str) -> Accepted | Refused:
        return await asyncio.wait_for(policy.recipient(address, authenticated=False), timeout=5)

    for address in ("a@example.test", "b@example.test", "self@example.test"):
        assert asyncio.run(rcpt(address)) == Refused(f"550 5.1.1 <{address}>: Recipient address rejected: User unknown")
    for role in ("postmaster@example.test", "abuse@example.org"):
        assert asyncio.run(rcpt(role)) == Accepted(role, "alice@example.test")
