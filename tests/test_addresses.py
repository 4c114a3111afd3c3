"""addresses.py: only plain addresses pass, so the relay policy never meets a routing trick; a list's role addresses."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jitaku.addresses import Address, parse, role_of


@pytest.mark.parametrize(
    "text",
    [
        "user%remote.test@example.test",
        "remote.test!user@example.test",
        "@a.test:user@example.test",
        '"user@remote.test"@example.test',
        "user@remote.test@example.test",
        "user@[127.0.0.1]",
        "user@[IPv6:::1]",
        "user@example.test.",
        "user@1.2.3.4",
        "user@",
        "@example.test",
        "user",
        "us er@example.test",
        "user@exa_mple.test",
        "user@-example.test",
        ".user@example.test",
        "user.@example.test",
        "a..b@example.test",
        "user@example..test",
        "x" * 65 + "@example.test",
    ],
)
def test_tricks_and_malformed_forms_are_not_addresses(text: str) -> None:
    assert parse(text) is None


def test_plain_addresses_keep_the_local_part_and_lower_the_domain() -> None:
    assert parse("Alice.Smith+tag@Example.TEST") == Address("Alice.Smith+tag", "example.test")
    assert parse("o'brien@example.test") == Address("o'brien", "example.test")


@given(st.text(max_size=80))
def test_whatever_parses_has_no_routing_characters(text: str) -> None:
    parsed = parse(text)
    if parsed is not None:
        assert not any(ch in str(parsed) for ch in '%!"[]:,\\ ') and str(parsed).count("@") == 1


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("team-request@example.test", ("team@example.test", "request")),
        ("team-owner@example.test", ("team@example.test", "owner")),
        ("team-bounces@example.test", ("team@example.test", "bounces")),
        ("team-bounces+bob=example.com@example.test", ("team@example.test", "bounces")),
        ("team-Request@example.test", ("team@example.test", "request")),
        ("my-team-owner@example.test", ("my-team@example.test", "owner")),
        ("team-bounces+bob=host-owner@example.test", ("team@example.test", "bounces")),
        ("team@example.test", None),
        ("-owner@example.test", None),
        ("team-admin@example.test", None),
        ("team-request", None),
    ],
)
def test_role_of(recipient: str, expected: tuple[str, str] | None) -> None:
    assert role_of(recipient) == expected
