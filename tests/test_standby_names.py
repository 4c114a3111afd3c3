"""What `jitaku standby` makes of the names and addresses it is given."""

from __future__ import annotations

import pytest

from jitaku.ha.standby import StandbyError, hba_address, parse_primary, slot_name


def test_a_slot_is_named_after_the_box_in_what_postgresql_allows() -> None:
    assert slot_name(None, "Two-Box.example.org") == "two_box"
    assert slot_name("Spare Box #5", "two.example.org") == "spare_box_5"
    with pytest.raises(StandbyError, match="--name"):
        slot_name("---", "x")


def test_the_primary_is_host_and_port() -> None:
    assert parse_primary("192.168.1.10:5433") == ("192.168.1.10", 5433)
    assert parse_primary("[fd00::1]:5433") == ("fd00::1", 5433)
    assert parse_primary("one.lan:5433") == ("one.lan", 5433)
    for wrong in ("one.lan", "fd00::1:5433", "one.lan:0", "a b:1"):
        with pytest.raises(StandbyError, match="--primary"):
            parse_primary(wrong)


def test_a_standby_is_let_in_by_its_own_address_alone() -> None:
    assert hba_address("192.168.1.11") == "192.168.1.11/32"
    assert hba_address("fd00::2") == "fd00::2/128"
    assert hba_address("Two.LAN") == "two.lan"
    for wrong in ("0.0.0.0/0", "all", "samenet", "-x"):
        with pytest.raises(StandbyError, match="neither"):
            hba_address(wrong)
