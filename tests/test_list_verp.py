"""lists/verp.py: signed VERP addresses, within 64 octets, and what a bounces address may be believed to say."""

from __future__ import annotations

import re

from jitaku.addresses import role_of
from jitaku.lists import verp

KEY = bytes.fromhex("00112233445566778899aabbccddeeff" * 2)
OTHER_KEY = bytes.fromhex("ff" * 32)
LIST = "sota@example.test"


def local_part(address: str) -> str:
    return address.rpartition("@")[0]


def test_a_copy_is_addressed_readably_and_signed() -> None:
    address = verp.bounce_address(LIST, "kenji+ml=x@example.jp", KEY)
    assert re.fullmatch(r"sota-bounces\+[a-z2-7]{8}=kenji\+ml=x=example\.jp@example\.test", address)
    parsed = verp.parse_bounce_address(address)
    assert parsed is not None and parsed.list_address == LIST and parsed.member == "kenji+ml=x@example.jp"
    assert verp.signed_member(parsed, KEY, []) == "kenji+ml=x@example.jp"
    assert role_of(address) == (LIST, "bounces")


def test_a_server_that_folds_the_case_of_the_address_still_bounces_to_the_member() -> None:
    folded = verp.parse_bounce_address(verp.bounce_address(LIST, "kenji@example.jp", KEY).upper())
    assert folded is not None and verp.signed_member(folded, KEY, []) == "kenji@example.jp"


def test_unsigned_guessed_or_foreign_tags_name_nobody() -> None:
    signed = verp.bounce_address(LIST, "kenji@example.jp", KEY)
    tag = local_part(signed).split("+")[1].split("=")[0]
    forged = [
        "sota-bounces+kenji=example.jp@example.test",  # as before signing
        "sota-bounces+abcdefgh=kenji=example.jp@example.test",
        f"sota-bounces+{tag}=yuki=example.jp@example.test",  # kenji's tag on another member
        "sota-bounces+abcdefghijklmnop@example.test",
        "sota-bounces@example.test",
    ]
    for address in forged:
        parsed = verp.parse_bounce_address(address)
        assert parsed is not None and parsed.list_address == LIST
        assert verp.signed_member(parsed, KEY, ["kenji@example.jp", "yuki@example.jp"]) is None, address
    parsed = verp.parse_bounce_address(signed)
    assert parsed is not None and verp.signed_member(parsed, OTHER_KEY, []) is None  # another list's key
    assert verp.parse_bounce_address("sota@example.test") is None
    assert verp.parse_bounce_address("sota-owner@example.test") is None


def test_a_long_member_address_gets_a_code_within_64_octets() -> None:
    long_member = "taro.yamada.the.third.of.his.name@mail.subdivision.example.co.jp"
    address = verp.bounce_address(LIST, long_member, KEY)
    assert len(local_part(address).encode()) <= verp.LOCAL_PART_MAX
    assert re.fullmatch(r"sota-bounces\+[a-z2-7]{16}@example\.test", address)
    parsed = verp.parse_bounce_address(address)
    assert parsed is not None and parsed.member is None
    members = ["kenji@example.jp", long_member]
    assert verp.signed_member(parsed, KEY, members) == long_member
    assert verp.signed_member(parsed, KEY, ["kenji@example.jp"]) is None  # no longer a member
    # the longest readable one still fits
    fits = "a" * (64 - len("sota-bounces+12345678=") - len("=example.jp")) + "@example.jp"
    assert "=" in local_part(verp.bounce_address(LIST, fits, KEY))
    assert len(local_part(verp.bounce_address(LIST, fits, KEY)).encode()) == 64
    assert "=" not in local_part(verp.bounce_address(LIST, "b" + fits, KEY))
