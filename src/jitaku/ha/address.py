"""The floating LAN address: the one the home router forwards ports 25, 80 and 443 to, held by whichever box
of the pair is primary (issue 24, `[ha] address` and `[ha] interface`).

Taking it is three steps. First, make sure no other box on the link holds it: an old primary that still
answers for it would split every connection the router forwards between two machines. For IPv4 that is an
ARP probe (RFC 5227: "who has it?", asked from 0.0.0.0); for IPv6 the kernel's own duplicate address
detection, which `ip addr add` starts. Then `ip addr add`. Then tell the LAN at once: the router's ARP cache
still maps the address to the old primary's MAC, and would for minutes (until the entry goes stale and is
asked again), sending every forwarded connection to a dead box. Gratuitous ARP (IPv4: requests and replies,
since routers differ in which they heed) and an unsolicited Neighbor Advertisement with the override flag
(IPv6) move every cache that has an entry for the address.

The ARP frames go out over an AF_PACKET socket of our own rather than through `arping`: a few lines of
struct, no package to install and find on both boxes, the probe's answers read back on the same socket
(Debian ships two unrelated programs named arping, iputils' and Thomas Habets', whose options and exit codes
differ), and errors we can word for a person.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jitaku import log
from jitaku.config import HaSettings, IpInterface

ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4  # what the kernel calls a frame we sent ourselves, seen again on our own packet socket
ARP_REQUEST, ARP_REPLY = 1, 2
BROADCAST = b"\xff" * 6
ANYONE = bytes(6)
UNSPECIFIED = bytes(4)

PROBES = 3  # RFC 5227's PROBE_NUM; spaced PROBE_TIME / PROBES apart, not 1-2 s: failover is waiting
PROBE_TIME = 1.0  # seconds to hear a holder's answer, from the first probe
ANNOUNCEMENTS = 3  # rounds of gratuitous ARP (a request and a reply each) or Neighbor Advertisements
ANNOUNCE_INTERVAL = 0.1  # seconds between two rounds: one frame lost on the way does not leave a cache behind
DAD_TIME = 5.0  # seconds the kernel's IPv6 duplicate address detection may take (it needs about one)
SYSCTL = Path("/proc/sys/net/ipv4/conf")  # this network namespace's
SBIN = "/usr/sbin:/sbin:/usr/bin:/bin"  # where iproute2's ip is; a service's PATH may lack them


class AddressError(Exception):
    """The floating address cannot be taken or released; the message is one line for a person."""


class HeldElsewhere(AddressError):
    """Another machine on the link answers for the address."""


class _Released:
    """Whether release() was called: a take() still running in a thread (a primary's retries, cancelled as its
    services end) must not add the address after it. The flag is read and the address added under the lock, and
    release() sets it under the lock: an add is either over before the release looks, or never done."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done = False


@dataclass(frozen=True)
class FloatingAddress:
    address: IpInterface
    interface: str
    _released: _Released = field(default_factory=_Released, compare=False, repr=False)

    @classmethod
    def configured(cls, settings: HaSettings) -> FloatingAddress | None:
        """The `[ha]` address, or None: without one, failover moves no address."""
        if settings.address is None:
            return None
        return cls(settings.address, settings.interface)

    def __str__(self) -> str:
        return f"{self.address} on {self.interface}"

    def holds(self) -> bool:
        """Whether this box holds the address now (a tentative IPv6 address too; one that failed DAD not)."""
        return self._held(self._link()) is not None

    def held_elsewhere(self) -> bool:
        """Whether another machine on the link answers for the address: IPv4's probe (about PROBE_TIME); False
        when this box holds it, and for IPv6, whose duplicate detection only runs on adding it."""
        link = self._link()
        if self._held(link) is not None or self.address.version != 4:
            return False
        try:
            self._probe(_mac(link, self.interface))
        except HeldElsewhere:
            return True
        return False

    def take(self) -> None:
        """Hold the address and announce it; holding it already, announce it again (a failover that is
        repeated must still move the LAN's caches).

        Raises AddressError, having added nothing, when another box on the link answers for it, or when this
        box could not hear one that does: its link down, or IPv6's duplicate address detection turned off.
        """
        link = self._link()
        mac = _mac(link, self.interface)
        held = self._held(link) is not None
        if not held:
            if self.address.version == 4:
                self._probe(mac)
            else:
                self._refuse_without_dad()
            with self._released.lock:
                if self._released.done:
                    log.event("ha_address_not_taken", address=self.address, why="released meanwhile")
                    return
                brd = ["brd", "+"] if self.address.version == 4 else []
                self._ip("addr", "add", str(self.address), *brd, "dev", self.interface)
        if self.address.version == 6:
            self._await_dad()  # held already, it may still be tentative: no advertising from it before
        self._announce(mac)
        log.event("ha_address_taken", address=self.address, interface=self.interface, held_before=held)

    def release(self) -> None:
        """Stop holding the address, for good: a take() running meanwhile, or called after, adds nothing. Not
        holding it is no error (the fenced primary may have released it)."""
        with self._released.lock:
            self._released.done = True
        held = self._held(self._link()) is not None
        if held:
            if self.address.version == 4:
                self._keep_secondaries()
            self._ip("addr", "del", str(self.address), "dev", self.interface)
        log.event("ha_address_released", address=self.address, interface=self.interface, held_before=held)

    def _link(self) -> dict[str, Any]:
        """The interface as `ip -json addr show` describes it: flags (up, carrier), MAC, and the addresses with
        their DAD state, in one reading, from the program that adds and deletes them too. The interface is
        looked up by name first: a missing one is then our sentence, not `ip`'s "Device does not exist"."""
        try:
            socket.if_nametoindex(self.interface)
        except OSError:
            raise self._no_such_interface() from None
        found = json.loads(self._ip("-json", "addr", "show", "dev", self.interface) or "[]")
        if not found:
            raise self._no_such_interface()
        link: dict[str, Any] = found[0]
        return link

    def _entry(self, link: dict[str, Any]) -> dict[str, Any] | None:
        """The address among LINK's, as `ip -json` gives it (its flags: tentative, dadfailed)."""
        for entry in link.get("addr_info", []):
            if entry.get("local") == str(self.address.ip) and entry.get("prefixlen") == self.address.network.prefixlen:
                return dict(entry)
        return None

    def _held(self, link: dict[str, Any]) -> dict[str, Any] | None:
        entry = self._entry(link)
        return None if entry is None or entry.get("dadfailed") else entry

    def _keep_secondaries(self) -> None:
        """Deleting the first IPv4 address of a subnet on an interface deletes the others in that subnet with
        it, unless promote_secondaries is set for the interface or for `all` (systemd sets it; the kernel's
        default does not): a floating address taken before the box's own would take the box's own with it on
        release.

        It stays set on the interface afterwards, until a reboot: the setting systemd-networkd gives every
        interface it manages, and what any address deleted there should have had. Where /proc/sys cannot be
        written (jitaku.service's ProtectKernelTunables: read-only) the delete goes on all the same: a fenced
        primary must let go of the address, and the setting only matters when the floating address was the
        interface's first."""
        try:
            if any(
                (SYSCTL / name / "promote_secondaries").read_text().strip() == "1" for name in ("all", self.interface)
            ):
                return
            (SYSCTL / self.interface / "promote_secondaries").write_text("1\n")
            log.event("ha_promote_secondaries_set", interface=self.interface)
        except OSError as error:
            if error.errno in (errno.EROFS, errno.EACCES):
                log.event("ha_promote_secondaries_unset", interface=self.interface, error=os.strerror(error.errno))
                return
            if error.errno == errno.EPERM:  # a user not root: CAP_NET_ADMIN, not CAP_NET_RAW
                raise AddressError(f"moving {self} needs root (or CAP_NET_ADMIN)") from None
            raise self._os_error(error) from None

    def _refuse_without_dad(self) -> None:
        """For IPv6 the kernel's duplicate address detection is the check that no other box holds the address:
        on an interface that does not run it (accept_dad 0, dad_transmits 0) it would be taken unchecked."""
        conf = Path("/proc/sys/net/ipv6/conf")  # this network namespace's
        try:
            # the kernel runs DAD by the larger of the interface's accept_dad and all's
            accept = max(int((conf / name / "accept_dad").read_text()) for name in ("all", self.interface))
            transmits = int((conf / self.interface / "dad_transmits").read_text())
        except OSError as error:
            raise self._os_error(error) from None
        if accept <= 0 or transmits <= 0:
            raise AddressError(
                f"{self}: the interface does not run IPv6 duplicate address detection, which is how another box"
                f" holding the address is found (sysctl net.ipv6.conf.{self.interface}.accept_dad and dad_transmits"
                " must be 1 or more)"
            )

    def _ip(self, *args: str) -> str:
        program = shutil.which("ip") or shutil.which("ip", path=SBIN)
        if program is None:
            raise AddressError("moving [ha] address needs the ip command (apt install iproute2)")
        done = subprocess.run([program, *args], capture_output=True, text=True, check=False)
        said = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
        if done.returncode == 0 or "File exists" in said or "Cannot assign requested address" in said:
            return done.stdout  # already there (add) or already gone (del): what was asked holds
        if "Cannot find device" in said:
            raise self._no_such_interface()
        if "Operation not permitted" in said:
            raise AddressError(f"moving {self} needs root (or CAP_NET_ADMIN)")
        raise AddressError(f"ip {' '.join(args)}: {said or f'exit {done.returncode}'}")

    def _probe(self, mac: bytes) -> None:
        """RFC 5227's probe: ask for the address from 0.0.0.0, so that no cache learns anything, and refuse
        it when a box answers, announces it, or probes for it at the same time."""
        ours = self.address.ip.packed
        probe = _arp(ARP_REQUEST, mac, UNSPECIFIED, ANYONE, ours)
        with self._packet_socket() as sock:
            start = time.monotonic()
            for number in range(PROBES):
                self._send(sock, probe)
                until = start + PROBE_TIME * (number + 1) / PROBES
                while (left := until - time.monotonic()) > 0:
                    sock.settimeout(left)
                    try:
                        frame, where = sock.recvfrom(2048)
                    except TimeoutError:
                        break
                    holder = _claimant(frame, where, ours, mac)
                    if holder is not None:
                        raise HeldElsewhere(
                            f"{self.address.ip} is held by another machine on {self.interface} (MAC {holder}): "
                            "release it there first (or stop that machine)"
                        )

    def _announce(self, mac: bytes) -> None:
        if self.address.version == 4:
            ours = self.address.ip.packed
            frames = [
                _arp(ARP_REQUEST, mac, ours, ANYONE, ours),  # RFC 5227's announcement
                _arp(ARP_REPLY, mac, ours, mac, ours),  # the gratuitous reply (Linux heeds it when tha is sha)
            ]
            with self._packet_socket() as sock:
                for number in range(ANNOUNCEMENTS):
                    if number:
                        time.sleep(ANNOUNCE_INTERVAL)
                    for frame in frames:
                        self._send(sock, frame)
            return
        self._advertise(mac)

    def _advertise(self, mac: bytes) -> None:
        """An unsolicited Neighbor Advertisement to all nodes (RFC 4861 §7.2.6), override flag set, with our
        MAC as the target's link-layer address; the kernel fills in the ICMPv6 checksum."""
        index = socket.if_nametoindex(self.interface)
        advert = struct.pack("!BBHI16sBB6s", 136, 0, 0, 0x20000000, self.address.ip.packed, 2, 1, mac)
        try:
            with socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6) as sock:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)  # else dropped: RFC 4861 §7.1.2
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
                sock.bind((str(self.address.ip), 0, 0, 0))
                for number in range(ANNOUNCEMENTS):
                    if number:
                        time.sleep(ANNOUNCE_INTERVAL)
                    sock.sendto(advert, ("ff02::1", 0, 0, index))
        except OSError as error:
            raise self._os_error(error) from None

    def _await_dad(self) -> None:
        """Wait for the kernel's duplicate address detection; an address another box holds is taken back."""
        deadline = time.monotonic() + DAD_TIME
        while True:
            entry = self._entry(self._link())
            if entry is None:
                raise AddressError(f"{self} went away while it was being taken")
            if entry.get("dadfailed"):
                self._ip("addr", "del", str(self.address), "dev", self.interface)
                raise AddressError(
                    f"{self.address.ip} is held by another machine on {self.interface} (duplicate address "
                    "detection): release it there first (or stop that machine)"
                )
            if not entry.get("tentative"):
                return
            if time.monotonic() > deadline:
                self._ip("addr", "del", str(self.address), "dev", self.interface)
                raise AddressError(
                    f"{self}: duplicate address detection did not finish in {DAD_TIME:g} s; is the link up?"
                )
            time.sleep(0.05)

    def _packet_socket(self) -> socket.socket:
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
        except OSError as error:
            raise self._os_error(error) from None
        try:
            sock.bind((self.interface, ETH_P_ARP))
        except OSError as error:
            sock.close()
            raise self._os_error(error) from None
        return sock

    def _send(self, sock: socket.socket, frame: bytes) -> None:
        try:
            sock.send(frame)
        except OSError as error:
            raise self._os_error(error) from None

    def _no_such_interface(self) -> AddressError:
        return AddressError(f"[ha] interface {self.interface}: no such network interface here (see `ip link`)")

    def _os_error(self, error: OSError) -> AddressError:
        if error.errno in (errno.EPERM, errno.EACCES):
            return AddressError(f"moving {self} needs root (or CAP_NET_RAW)")
        if error.errno == errno.ENETDOWN:
            return AddressError(f"[ha] interface {self.interface} is down (ip link set {self.interface} up)")
        if error.errno == errno.ENODEV:
            return self._no_such_interface()
        return AddressError(f"{self}: {error.strerror or error}")


def _mac(link: dict[str, Any], interface: str) -> bytes:
    if link.get("link_type") != "ether" or not link.get("address"):
        raise AddressError(f"[ha] interface {interface} is not an Ethernet interface; the LAN's address needs one")
    if "UP" not in link.get("flags", []):
        raise AddressError(f"[ha] interface {interface} is down (ip link set {interface} up)")
    if "LOWER_UP" not in link.get("flags", []):  # NO-CARRIER: a probe would hear nobody, a holder included
        raise AddressError(f"[ha] interface {interface} has no link (cable, switch?)")
    return bytes.fromhex(str(link["address"]).replace(":", ""))


def _arp(op: int, mac: bytes, sender: bytes, target_mac: bytes, target: bytes) -> bytes:
    """An Ethernet broadcast frame carrying one ARP packet for IPv4 (RFC 826)."""
    return (
        BROADCAST
        + mac
        + struct.pack("!HHHBBH6s4s6s4s", ETH_P_ARP, 1, 0x0800, 6, 4, op, mac, sender, target_mac, target)
    )


def _claimant(frame: bytes, where: Any, address: bytes, mac: bytes) -> str | None:
    """The MAC of another box that says it holds ADDRESS, or probes for it too, in FRAME; else None."""
    if len(frame) < 42 or where[2] == PACKET_OUTGOING:
        return None
    _, _, _, _, op, sha, spa, _, tpa = struct.unpack("!HHBBH6s4s6s4s", frame[14:42])
    if sha == mac:
        return None
    if spa == address or (op == ARP_REQUEST and spa == UNSPECIFIED and tpa == address):
        return ":".join(f"{byte:02x}" for byte in sha)
    return None
