"""mail/policy without a daemon: who may relay, which local addresses exist, which senders a user may use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitaku.config import Settings
from jitaku.mail.policy import DIRECTORY_CHECK_SECONDS, Accepted, Policy, Refused
from jitaku.store import Database, accounts, lists
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

DOMAINS = ("example.test", "example.org")
ALICE = "alice@example.test"
BOB = "bob@example.org"
LIST = "sota@example.test"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, ALICE, None)  # the first user
        accounts.add_user(connection, BOB, None)
        lists.create_list(connection, LIST, "SOTA", "[sota:%05d]", "list", "auto", "")
        accounts.add_alias(connection, "info@example.test", ALICE, DOMAINS)
        accounts.add_alias(connection, "club@example.test", LIST, DOMAINS)
        accounts.add_alias(connection, "away@example.test", "dave@remote.test", DOMAINS)
    yield database
    database.close()


@pytest.fixture
def policy(database: Database) -> Policy:
    return Policy(Settings(domains=list(DOMAINS)), database)


def rcpt(policy: Policy, address: str, authenticated: bool = False) -> Accepted | Refused:
    return asyncio.run(asyncio.wait_for(policy.recipient(address, authenticated), timeout=5))


def owns(policy: Policy, user: str, address: str) -> bool:
    return asyncio.run(asyncio.wait_for(policy.owns(user, address), timeout=5))


def test_the_mx_refuses_to_relay_to_another_domain(policy: Policy) -> None:
    for address in ("dave@remote.test", "Dave@Remote.Test", "dave@example.test.remote.test"):
        assert rcpt(policy, address) == Refused(f"554 5.7.1 <{address}>: Relay access denied")


def test_after_auth_a_remote_recipient_is_accepted_to_leave(policy: Policy) -> None:
    assert rcpt(policy, "Dave@Remote.Test", authenticated=True) == Accepted("dave@remote.test", None)


@pytest.mark.parametrize("authenticated", [False, True])
def test_a_local_user_gets_mail_at_any_case_of_their_domain(policy: Policy, authenticated: bool) -> None:
    assert rcpt(policy, ALICE, authenticated) == Accepted(ALICE, ALICE)
    assert rcpt(policy, "bob@EXAMPLE.ORG", authenticated) == Accepted(BOB, BOB)


def test_an_alias_lands_with_its_user_a_list_or_leaves_for_its_remote_target(policy: Policy) -> None:
    assert rcpt(policy, "info@example.test") == Accepted("info@example.test", ALICE)
    assert rcpt(policy, "club@example.test") == Accepted(LIST, None, (LIST, "post"))
    # the MX forwards an alias to another server even though the sender did not authenticate
    assert rcpt(policy, "away@example.test") == Accepted("dave@remote.test", None)


def test_a_list_and_its_role_addresses_are_routed_as_their_roles(policy: Policy) -> None:
    assert rcpt(policy, LIST) == Accepted(LIST, None, (LIST, "post"))
    assert rcpt(policy, "sota-request@example.test") == Accepted("sota-request@example.test", None, (LIST, "request"))
    assert rcpt(policy, "sota-owner@example.test") == Accepted("sota-owner@example.test", None, (LIST, "owner"))
    verp = "sota-bounces+dave=remote.test@example.test"
    assert rcpt(policy, verp) == Accepted(verp, None, (LIST, "bounces"))


def test_role_suffixes_of_no_list_are_unknown(policy: Policy) -> None:
    for address in ("other-request@example.test", "other-bounces+dave=remote.test@example.test"):
        assert rcpt(policy, address) == Refused(f"550 5.1.1 <{address}>: Recipient address rejected: User unknown")


@pytest.mark.parametrize("authenticated", [False, True])
def test_an_unknown_local_recipient_is_refused(policy: Policy, authenticated: bool) -> None:
    address = "nobody@example.test"
    assert rcpt(policy, address, authenticated) == Refused(
        f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    )


def test_a_user_added_after_a_refusal_gets_mail_at_once(policy: Policy, database: Database) -> None:
    address = "carol@example.test"
    assert isinstance(rcpt(policy, address), Refused)
    with database.transaction() as connection:
        accounts.add_user(connection, address, None)
    assert rcpt(policy, address) == Accepted(address, address)


def test_a_removed_user_is_refused_once_the_directory_is_checked_again(policy: Policy, database: Database) -> None:
    """RCPT decisions are remembered for as long as the directory they were made from is current."""
    for _ in range(3):
        assert rcpt(policy, BOB) == Accepted(BOB, BOB)
    with database.transaction() as connection:
        accounts.remove_user(connection, BOB)
    time.sleep(DIRECTORY_CHECK_SECONDS)
    for _ in range(3):  # the first re-reads the directory, the others are decided from the new one
        assert rcpt(policy, BOB) == Refused(f"550 5.1.1 <{BOB}>: Recipient address rejected: User unknown")


@pytest.mark.parametrize("domain", DOMAINS)
def test_postmaster_and_abuse_are_always_accepted_and_reach_the_first_user(policy: Policy, domain: str) -> None:
    for role in ("postmaster", "abuse"):
        address = f"{role}@{domain}"
        assert rcpt(policy, address) == Accepted(address, ALICE)


def test_a_bad_address_is_refused_by_its_syntax(policy: Policy) -> None:
    assert rcpt(policy, "alice") == Refused("501 5.1.3 <alice>: bad recipient address syntax")
    assert rcpt(policy, "a b@example.test", authenticated=True) == Refused(
        "553 5.1.3 <a b@example.test>: address form not accepted"
    )
    assert rcpt(policy, "a b@example.test") == Refused("554 5.7.1 <a b@example.test>: Relay access denied")


def test_a_user_may_send_as_themselves_and_their_aliases(policy: Policy) -> None:
    assert owns(policy, ALICE, ALICE)
    assert owns(policy, ALICE, "Alice@Example.Test")
    assert owns(policy, ALICE, "info@example.test")
    assert owns(policy, ALICE, "postmaster@example.test")  # a role account with no alias reaches the first user


def test_a_user_may_not_send_as_another_user_a_list_or_a_remote_address(policy: Policy) -> None:
    assert not owns(policy, BOB, ALICE)
    assert not owns(policy, BOB, "info@example.test")  # alice's alias
    assert not owns(policy, BOB, "postmaster@example.org")  # reaches alice, the first user, not bob
    assert not owns(policy, ALICE, LIST)
    assert not owns(policy, ALICE, "away@example.test")  # forwards elsewhere: no user of ours owns it
    assert not owns(policy, ALICE, "alice@remote.test")
    assert not owns(policy, ALICE, "nobody@example.test")
