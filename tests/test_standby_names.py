"""What `jitaku standby` makes of the names and addresses it is given."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from jitaku.ha.standby import StandbyError, _aside, _remove_older, hba_address, parse_primary, slot_name


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


def test_a_slot_is_named_after_this_box_not_the_mail_name(monkeypatch: pytest.MonkeyPatch) -> None:
    """[server] hostname is the MX name, the same on both boxes of a pair: the kernel's hostname tells them apart."""
    monkeypatch.setattr(socket, "gethostname", lambda: "Box-B.lan")
    assert slot_name(None) == "box_b"


def test_two_setups_in_one_second_move_the_old_cluster_to_two_places(tmp_path: Path) -> None:
    data = tmp_path / "postgres"
    first = _aside(data)
    first.mkdir()
    second = _aside(data)
    assert second != first and second.name.startswith("postgres.replaced-")
    second.mkdir()
    assert _remove_older(data, second) == [first]
    assert sorted(tmp_path.iterdir()) == [second]
