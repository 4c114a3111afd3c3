"""The floating LAN address (issue 24, `[ha] address` and `[ha] interface`): taken and released on a home LAN
built of network namespaces, the way a failover moves it between two boxes behind one router."""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitaku.config import ConfigError, parse
from jitaku.ha.address import AddressError, FloatingAddress
from jitaku.provision import TEMPLATE
from tests.peers import Box, Lan

PATH = Path("/etc/jitaku/jitaku.toml")
FLOATING = "192.168.1.10/24"
FLOATING_V6 = "fd00:1::10/64"


def ha(text: str) -> str:
    return f'domains = ["example.org"]\n[ha]\n{text}'


def test_the_address_and_its_interface_are_optional_and_go_together() -> None:
    assert FloatingAddress.configured(parse('domains = ["example.org"]\n', PATH).ha) is None
    settings = parse(ha(f'address = "{FLOATING}"\ninterface = "eth0"\n'), PATH).ha
    assert FloatingAddress.configured(settings) == FloatingAddress(ipaddress.ip_interface(FLOATING), "eth0")
    assert parse(ha(f'address = "{FLOATING_V6}"\ninterface = "eth0"\n'), PATH).ha.address is not None
    with pytest.raises(ConfigError, match=r"jitaku.toml:2: \[ha\] interface: needed with address"):
        parse(ha(f'address = "{FLOATING}"\n'), PATH)


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("192.168.1.10", r'\[ha\] address: expected an address with its prefix like "192.168.1.10/24"'),
        ("192.168.1.300/24", r"\[ha\] address: expected an address with its prefix"),
        ("192.168.1.255/24", r"\[ha\] address: '192.168.1.255/24' is its network's own or broadcast address"),
        ("127.0.0.2/8", r"\[ha\] address: expected an address a router can forward to"),
        ("fe80::10/64", r"\[ha\] address: expected an address a router can forward to"),
    ],
)
def test_a_bad_address_is_named_with_its_line(value: str, said: str) -> None:
    with pytest.raises(ConfigError, match=rf"jitaku.toml:3: {said}"):
        parse(ha(f'address = "{value}"\ninterface = "eth0"\n'), PATH)


def test_the_ha_section_init_writes_commented_out_is_valid_once_uncommented() -> None:
    section = TEMPLATE[TEMPLATE.index("# [ha]") :].splitlines()
    text = 'domains = ["example.org"]\n' + "\n".join(line.removeprefix("# ") for line in section)
    assert parse(text, PATH).ha.interface == "eth0"


def test_an_interface_is_a_name_linux_could_give() -> None:
    with pytest.raises(ConfigError, match=r"jitaku.toml:3: \[ha\] interface: expected a network interface's name"):
        parse(ha(f'interface = "eth0/1"\naddress = "{FLOATING}"\n'), PATH)


def test_a_missing_interface_is_one_line_for_a_person() -> None:
    floating = FloatingAddress(ipaddress.ip_interface(FLOATING), "nosuch0")
    for step in (floating.holds, floating.take, floating.release):
        with pytest.raises(AddressError) as raised:
            step()
        assert str(raised.value) == "[ha] interface nosuch0: no such network interface here (see `ip link`)"


class _FakeLink:
    """`ip` and /proc/sys for one interface, without a LAN: what was run, and the address held or not."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, promote: dict[str, str]) -> None:
        self.run: list[tuple[str, ...]] = []
        self.held = False
        for name, value in promote.items():
            (tmp_path / name).mkdir()
            (tmp_path / name / "promote_secondaries").write_text(value)
        monkeypatch.setattr("jitaku.ha.address.SYSCTL", tmp_path)
        monkeypatch.setattr(
            FloatingAddress,
            "_link",
            lambda _self: {"address": "02:00:00:00:00:01", "link_type": "ether", "flags": ["UP", "LOWER_UP"]},
        )
        monkeypatch.setattr(FloatingAddress, "_held", lambda _self, _link: {"local": FLOATING} if self.held else None)
        monkeypatch.setattr(FloatingAddress, "_announce", lambda _self, _mac: None)
        monkeypatch.setattr(FloatingAddress, "_ip", self._ip)

    def _ip(self, *args: str) -> str:
        self.run.append(args)
        self.held = args[:2] == ("addr", "add") or (self.held and args[:2] != ("addr", "del"))
        return ""


def test_a_fenced_primary_lets_go_of_the_address_where_proc_sys_is_read_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    link = _FakeLink(monkeypatch, tmp_path, {"all": "0", "eth0": "0"})
    link.held = True

    def read_only(*_args: object, **_kwargs: object) -> None:
        raise OSError(30, "Read-only file system")  # EROFS: ProtectKernelTunables=yes

    monkeypatch.setattr(Path, "write_text", read_only)
    FloatingAddress(ipaddress.ip_interface(FLOATING), "eth0").release()
    assert link.run == [("addr", "del", FLOATING, "dev", "eth0")]
    assert not link.held


def test_promote_secondaries_set_for_all_is_enough(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    link = _FakeLink(monkeypatch, tmp_path, {"all": "1", "eth0": "0"})
    link.held = True
    FloatingAddress(ipaddress.ip_interface(FLOATING), "eth0").release()
    assert (tmp_path / "eth0" / "promote_secondaries").read_text() == "0"
    assert not link.held
    link.held = True
    (tmp_path / "all" / "promote_secondaries").write_text("0")
    FloatingAddress(ipaddress.ip_interface(FLOATING), "eth0").release()
    assert (tmp_path / "eth0" / "promote_secondaries").read_text() == "1\n"


def test_a_take_still_running_when_released_adds_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import threading

    link = _FakeLink(monkeypatch, tmp_path, {"all": "1", "eth0": "1"})
    probing, released = threading.Event(), threading.Event()

    def slow_probe(_self: FloatingAddress, _mac: bytes) -> None:
        probing.set()
        assert released.wait(30)

    monkeypatch.setattr(FloatingAddress, "_probe", slow_probe)
    floating = FloatingAddress(ipaddress.ip_interface(FLOATING), "eth0")
    taking = threading.Thread(target=floating.take)
    taking.start()
    assert probing.wait(30)
    floating.release()
    released.set()
    taking.join(30)
    assert not link.held
    assert link.run == []


@pytest.fixture
def lan() -> Iterator[Lan]:
    """A router (192.168.1.1, fd00:1::1) and two boxes, `old` (.21) and `new` (.22), on one LAN."""
    if os.geteuid() != 0:
        pytest.skip("a LAN of network namespaces needs root (CI runs as root)")
    lan = Lan()
    try:
        lan.router.ip("addr", "add", "192.168.1.1/24", "dev", "lan0")
        lan.router.ip("addr", "add", "fd00:1::1/64", "dev", "lan0", "nodad")
        for name, host in (("old", 21), ("new", 22)):
            box = lan.add(name)
            box.ip("addr", "add", f"192.168.1.{host}/24", "dev", "lan0")
        yield lan
    finally:
        lan.close()


def boxes(lan: Lan) -> tuple[Box, Box]:
    return lan.boxes["old"], lan.boxes["new"]


def floating(address: str = FLOATING) -> FloatingAddress:
    return FloatingAddress(ipaddress.ip_interface(address), "lan0")


def answers(box: Box, address: str) -> bool:
    """Whether ADDRESS answers BOX at all: a TCP connection to a port nobody listens on is refused by a
    machine that holds the address, and goes unanswered (or unreachable) when none does."""
    with box.inside():
        try:
            socket.create_connection((address, 9), timeout=3).close()
        except ConnectionRefusedError:
            return True
        except OSError:
            return False
    return True


def test_taken_the_router_reaches_a_listener_on_it_and_released_it_does_not(
    lan: Lan, caplog: pytest.LogCaptureFixture
) -> None:
    _, new = boxes(lan)
    with new.inside(), caplog.at_level(logging.INFO, logger="jitaku"):
        assert not floating().holds()
        floating().take()
        floating().take()  # again: nothing changes, nothing fails
        assert floating().holds()
        listener = socket.create_server(("192.168.1.10", 0))
    assert new.ip("-4", "-o", "addr", "show", "dev", "lan0").count("192.168.1.10/24") == 1
    port = listener.getsockname()[1]
    with listener, lan.router.inside(), socket.create_connection(("192.168.1.10", port), timeout=5) as client:
        accepted, (peer, _) = listener.accept()
        with accepted:
            accepted.sendall(b"220 here\r\n")
            assert client.recv(100) == b"220 here\r\n" and peer == "192.168.1.1"
    assert "event=ha_address_taken address=192.168.1.10/24 interface=lan0 held_before=False" in caplog.text
    assert "event=ha_address_taken address=192.168.1.10/24 interface=lan0 held_before=True" in caplog.text

    with new.inside(), caplog.at_level(logging.INFO, logger="jitaku"):
        floating().release()
        floating().release()
        assert not floating().holds()
    assert "192.168.1.10" not in new.ip("-4", "-o", "addr", "show", "dev", "lan0")
    assert "event=ha_address_released address=192.168.1.10/24 interface=lan0 held_before=True" in caplog.text
    assert "event=ha_address_released address=192.168.1.10/24 interface=lan0 held_before=False" in caplog.text
    assert not answers(lan.router, "192.168.1.10")


def test_released_it_leaves_the_boxs_own_address_even_when_taken_before_it(lan: Lan) -> None:
    """The box's own address added after the floating one is the subnet's secondary, which the kernel deletes
    with the primary unless it promotes secondaries: the box would lose its own address, and the standby
    its replication, at a switchover."""
    _, new = boxes(lan)
    new.ip("addr", "flush", "dev", "lan0")
    with new.inside():
        floating().take()
        new.ip("addr", "add", "192.168.1.22/24", "dev", "lan0")
        floating().release()
    assert "192.168.1.22/24" in new.ip("-4", "-o", "addr", "show", "dev", "lan0")
    assert "192.168.1.10" not in new.ip("-4", "-o", "addr", "show", "dev", "lan0")
    assert answers(lan.router, "192.168.1.22")


@pytest.mark.parametrize("address", [FLOATING, FLOATING_V6])
def test_a_failover_moves_the_routers_cache_to_the_new_box_at_once(lan: Lan, address: str) -> None:
    """The old primary held the address and the router's cache says so; the old box dies (its link goes
    down) and the new one takes the address: the router's entry points at the new box's MAC before the router
    has sent anything, so the next forwarded connection goes there, not to the dead box for minutes."""
    old, new = boxes(lan)
    ip = address.split("/")[0]
    with old.inside():
        floating(address).take()
    assert answers(lan.router, ip)
    assert lan.router.neighbour(ip) == old.mac()

    old.ip("link", "set", "lan0", "down")
    with new.inside():
        floating(address).take()
    assert lan.router.neighbour(ip) == new.mac()
    assert answers(lan.router, ip)


@pytest.mark.parametrize("address", [FLOATING, FLOATING_V6])
def test_an_address_another_box_holds_is_refused(lan: Lan, address: str) -> None:
    """The old primary is alive and still holds the address (it was not fenced): taking it too would split
    the router's connections between two boxes."""
    old, new = boxes(lan)
    ip = address.split("/")[0]
    with old.inside():
        floating(address).take()
    assert answers(lan.router, ip)
    with new.inside():
        with pytest.raises(AddressError) as raised:
            floating(address).take()
        assert not floating(address).holds()
    assert str(raised.value).startswith(f"{ip} is held by another machine on lan0")
    assert "\n" not in str(raised.value)
    assert ip not in new.ip("-o", "addr", "show", "dev", "lan0")
    assert lan.router.neighbour(ip) == old.mac()


def test_without_the_capabilities_taking_it_says_so(lan: Lan) -> None:
    """Root stripped of CAP_NET_RAW and CAP_NET_ADMIN stands for a user who is not root."""
    _, new = boxes(lan)
    program = (
        "import ipaddress\n"
        "from jitaku.ha.address import AddressError, FloatingAddress\n"
        "try:\n"
        f"    FloatingAddress(ipaddress.ip_interface({FLOATING!r}), 'lan0').take()\n"
        "except AddressError as error:\n"
        "    print(error)\n"
    )
    done = new.run(
        "setpriv", "--inh-caps=-all", "--bounding-set=-net_raw,-net_admin",
        "env", f"PYTHONPATH={Path(__file__).parents[1] / 'src'}", sys.executable, "-c", program,
    )  # fmt: skip
    assert done.stdout == "moving 192.168.1.10/24 on lan0 needs root (or CAP_NET_RAW)\n", done.stderr
    assert "192.168.1.10" not in new.ip("-4", "-o", "addr", "show", "dev", "lan0")


@pytest.mark.parametrize("address", [FLOATING, FLOATING_V6])
def test_a_box_without_a_link_does_not_take_it(lan: Lan, address: str) -> None:
    """The new box's cable is out while the old box still holds the address: its probe would hear nobody, and
    it would hold the address too once plugged back in, splitting the router's connections."""
    old, new = boxes(lan)
    ip = address.split("/")[0]
    with old.inside():
        floating(address).take()
    lan.unplug("new")
    with new.inside():
        with pytest.raises(AddressError) as raised:
            floating(address).take()
        assert not floating(address).holds()
    assert str(raised.value) == "[ha] interface lan0 has no link (cable, switch?)"
    assert ip not in new.ip("-o", "addr", "show", "dev", "lan0")


@pytest.mark.parametrize("setting", ["accept_dad", "dad_transmits"])
def test_an_ipv6_address_is_not_taken_where_duplicates_go_unchecked(lan: Lan, setting: str) -> None:
    """With duplicate address detection off on the interface, the kernel adds an address another box holds
    without a word: the only check IPv6 has."""
    old, new = boxes(lan)
    with old.inside():
        floating(FLOATING_V6).take()
    with new.inside():
        Path(f"/proc/sys/net/ipv6/conf/lan0/{setting}").write_text("0\n")
        with pytest.raises(AddressError) as raised:
            floating(FLOATING_V6).take()
    assert str(raised.value) == (
        "fd00:1::10/64 on lan0: the interface does not run IPv6 duplicate address detection, which is how another"
        " box holding the address is found (sysctl net.ipv6.conf.lan0.accept_dad and dad_transmits must be 1 or"
        " more)"
    )
    assert "fd00:1::10" not in new.ip("-6", "-o", "addr", "show", "dev", "lan0")


def test_a_lan_left_by_a_test_process_that_died_is_removed(lan: Lan) -> None:
    """A run killed before its cleanup leaves its namespaces behind: the next LAN removes them, and leaves a
    living process's alone."""
    child = subprocess.Popen(["true"])
    child.wait()  # its pid names no process now
    leftover, living = f"jitaku-lan-{child.pid}-1-router", f"jitaku-lan-{os.getpid()}-2-router"
    for name in (leftover, living):
        subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        Lan().close()
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
        assert leftover not in listed and living in listed
    finally:
        for name in (leftover, living):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def test_whether_another_box_holds_the_address_is_probed_without_taking_it(lan: Lan) -> None:
    """What a primary whose peer refuses it asks at start (jitaku.ha.mode.decide): held elsewhere, it fences."""
    old, new = boxes(lan)
    with new.inside():
        assert floating().held_elsewhere() is False
        assert not floating().holds()
    with old.inside():
        floating().take()
        assert floating().held_elsewhere() is False  # held here
    with new.inside():
        assert floating().held_elsewhere() is True
        assert not floating().holds()
