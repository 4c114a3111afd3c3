"""The pair on a home LAN built of network namespaces (issue 24, "Real components"): a router and two boxes on its
bridge, each box's jitaku and managed PostgreSQL in a namespace of its own, replicating over the LAN. The router
sends SMTP to the floating address, as its port forward would. Primary A dies (its jitaku and PostgreSQL killed
with -9); `jitaku failover` on B: the router's mail is accepted by B within 30 s, and the router's neighbour entry
for the floating address names B's MAC. A restarted refuses mail (fenced) and leaves the address to B: every
connection the router makes to it lands on B.

The boxes share the MX hostname, as a pair does: which box answered is told by the router's neighbour entry (the
box's MAC), by `jitaku ha status --json` (holds_address) on each box, and by whose mailbox the message is in."""

from __future__ import annotations

import contextlib
import os
import signal
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import READER, Jitaku, stop_all
from tests.integration.test_managed_postgres import postmaster
from tests.integration.test_standby import no_cluster_left, status
from tests.peers import Box, Lan, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and PostgreSQL as postgres: need root")
__all__ = ["no_cluster_left"]  # its autouse fixture stops the clusters this module's tests leave

FLOATING = "192.168.1.10"
HOSTS = {"one": "192.168.1.21", "two": "192.168.1.22"}
WEB = 8080
# Both boxes' PostgreSQL on one port, as two real boxes have it: the base backup's copy of the primary's socket
# lock file (naming its postmaster, whose pid is alive here, the boxes sharing this machine's pids) must not stop
# the standby's cluster from starting.
DATABASE = {"one": 5432, "two": 5432}


@pytest.fixture
def lan() -> Iterator[Lan]:
    """The router (192.168.1.1) and boxes `one` (.21) and `two` (.22) on its bridge."""
    try:
        lan = Lan()
    except (OSError, subprocess.CalledProcessError) as error:
        pytest.skip(f"network namespaces cannot be made here: {error}")
    try:
        lan.router.ip("addr", "add", "192.168.1.1/24", "dev", "lan0")
        for name, host in HOSTS.items():
            lan.add(name).ip("addr", "add", f"{host}/24", "dev", "lan0")
        yield lan
    finally:
        lan.close()


class Node:
    """One box of the pair: its namespace and its jitaku, whose commands and daemon run inside the box."""

    def __init__(self, box: Box, server: Jitaku) -> None:
        self.box, self.server = box, server

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        with self.box.inside():
            return self.server.cli(*args, check=check)

    def start(self) -> None:
        with self.box.inside():
            self.server.start()

    def status(self) -> dict[str, Any]:
        with self.box.inside():
            return status(self.server)

    def subjects(self) -> list[str]:
        with self.box.inside():
            return [str(row["subject"]) for row in self.server.mailbox(READER)]

    def kill9(self) -> None:
        """The daemon and its PostgreSQL killed with -9, as a crash leaves them."""
        self.server.kill9()
        cluster = postmaster(self.server)
        assert cluster is not None
        os.kill(cluster, signal.SIGKILL)
        wait_until(lambda: not Path(f"/proc/{cluster}").exists(), timeout=10)


def configure(server: Jitaku, name: str, peer: str) -> None:
    host = HOSTS[name]
    server.settings["smtp"] = {"listen": ["0.0.0.0:25"]}  # as init writes it: the floating address's port 25 too
    server.settings["web"] = {"listen": [f"{host}:{WEB}"]}
    server.settings["database"] = {"listen": [f"{host}:{DATABASE[name]}"]}
    server.settings["ha"] = {"address": f"{FLOATING}/24", "interface": "lan0", "peer": f"http://{peer}:{WEB}"}
    server.write_config()


def pair(lan: Lan, jitaku_factory: Any, shared_dir: Path) -> tuple[Node, Node]:
    """Primary `one` holding the floating address, standby `two` streaming synchronously from it over the LAN."""
    one = Node(lan.boxes["one"], jitaku_factory(name="one", where=shared_dir))
    two = Node(lan.boxes["two"], jitaku_factory(name="two", where=shared_dir))
    configure(one.server, "one", HOSTS["two"])
    configure(two.server, "two", HOSTS["one"])
    one.cli("init", "--database", "postgresql")
    with one.box.inside():
        one.server.add_user(READER)
    one.cli("standby", "allow", HOSTS["two"])
    two.cli("init", "--database", "postgresql")
    copy = shared_dir / "secret-copy"
    copy.write_bytes((one.server.dir / "ha" / "replication.secret").read_bytes())
    copy.chmod(0o600)
    for node in (one, two):
        node.server.settings["database"]["managed"] = True  # as `init --database postgresql` wrote it
        node.server.write_config()
    one.start()
    two.cli("standby", "setup", "--primary", f"{HOSTS['one']}:{DATABASE['one']}", "--secret-file", str(copy))
    two.start()
    wait_until(lambda: one.status()["sync_state"] == "sync", timeout=60)
    return one, two


def greeting(router: Box) -> bytes:
    with router.inside(), socket.create_connection((FLOATING, 25), timeout=10) as smtp:
        return smtp.makefile("rb").readline()


def send(router: Box, subject: str) -> bool:
    """Whether the router's message to the floating address got its 250."""
    message = f"From: carol@remote.test\r\nTo: {READER}\r\nSubject: {subject}\r\n\r\n{subject}\r\n"
    with router.inside(), contextlib.suppress(OSError, smtplib.SMTPException):
        with smtplib.SMTP(FLOATING, 25, timeout=10) as smtp:
            smtp.sendmail("carol@remote.test", [READER], message)
            return True
    return False


@pytest.fixture
def stopped() -> Iterator[list[Node]]:
    """The daemons a test started, stopped at its end (before its LAN goes) whatever it did."""
    nodes: list[Node] = []
    yield nodes
    stop_all([node.server for node in nodes])


def failover_reaches_the_router(lan: Lan, one: Node, two: Node) -> None:
    """`jitaku failover` on two: the router's mail to the floating address gets a 250 from two within 30 s, and
    the router's neighbour entry for it names two's MAC."""
    started = time.monotonic()
    done = two.cli("failover", check=False)
    assert done.returncode == 0, done.stderr + two.server.log()[-3000:]
    # the new primary took the address before its listeners accepted, which the command waited for
    failed = [line for line in two.server.log().splitlines() if "ha_address_failed" in line]
    assert not failed, failed
    wait_until(lambda: send(lan.router, "after-failover"), timeout=30, interval=0.2)
    seconds = time.monotonic() - started
    assert seconds <= 30, seconds
    assert lan.router.neighbour(FLOATING) == two.box.mac()
    assert two.status()["holds_address"] is True
    assert "after-failover" in two.subjects()


def old_primary_restarted_stays_fenced(lan: Lan, one: Node, two: Node) -> None:
    """One's daemon started again: it sees two's newer timeline, refuses mail, and leaves the address to two;
    every connection the router makes to the floating address lands on two."""
    before = one.subjects()
    one.start()
    with lan.router.inside(), socket.create_connection((HOSTS["one"], 25), timeout=10) as smtp:
        assert smtp.makefile("rb").readline().startswith(b"421 4.3.2 "), one.server.log()[-3000:]
    found = one.status()
    assert found["fenced"] is True and found["holds_address"] is False, found
    assert FLOATING not in one.box.ip("-4", "-o", "addr", "show", "dev", "lan0")
    for number in range(5):
        assert greeting(lan.router).startswith(b"220 ")
        assert send(lan.router, f"after-restart-{number}")
    assert lan.router.neighbour(FLOATING) == two.box.mac()
    assert [f"after-restart-{number}" for number in range(5)] == [s for s in two.subjects() if "restart" in s]
    assert one.subjects() == before
    assert "Traceback" not in one.server.log() + two.server.log()


def test_the_primary_box_dies_failover_moves_the_routers_mail_and_the_old_primary_back_stays_fenced(
    lan: Lan, jitaku_factory: Any, shared_dir: Path, stopped: list[Node]
) -> None:
    one, two = pair(lan, jitaku_factory, shared_dir)
    stopped += [one, two]
    assert one.status()["holds_address"] is True and two.status()["holds_address"] is False
    assert greeting(lan.router).startswith(b"220 ")
    assert lan.router.neighbour(FLOATING) == one.box.mac()
    assert send(lan.router, "before-failover") and "before-failover" in one.subjects()

    one.kill9()
    one.box.ip("link", "set", "lan0", "down")  # the box is gone: nothing on it answers the LAN
    failover_reaches_the_router(lan, one, two)

    # the box boots again: its kernel holds only the addresses it is configured with, and it is back on the LAN
    one.box.ip("addr", "del", f"{FLOATING}/24", "dev", "lan0")
    one.box.ip("link", "set", "lan0", "up")
    old_primary_restarted_stays_fenced(lan, one, two)


def test_the_primary_jitaku_dies_on_a_box_that_stays_up_the_address_follows_once_it_restarts_fenced(
    lan: Lan, jitaku_factory: Any, shared_dir: Path, stopped: list[Node]
) -> None:
    """jitaku killed with -9 on a box that stays up leaves the floating address on that box's interface: the new
    primary hears it held and does not take it (two boxes answering for one address is worse than none), and
    tries again every few seconds. The old box's supervisor starts its jitaku again (systemd: Restart=on-failure,
    RestartSec=5s), which sees the newer primary, serves fenced and lets the address go: the new primary takes it,
    and the router's mail reaches it within 30 s of the failover and the supervisor's 5 s."""
    one, two = pair(lan, jitaku_factory, shared_dir)
    stopped += [one, two]
    assert send(lan.router, "before-failover") and lan.router.neighbour(FLOATING) == one.box.mac()

    one.kill9()
    started = time.monotonic()
    done = two.cli("failover", check=False)
    assert done.returncode == 0, done.stderr + two.server.log()[-3000:]
    assert FLOATING in one.box.ip("-4", "-o", "addr", "show", "dev", "lan0")  # left there by the killed daemon
    wait_until(lambda: "ha_address_failed" in two.server.log(), timeout=30)
    time.sleep(5)  # the supervisor's RestartSec
    one.start()
    wait_until(lambda: send(lan.router, "after-failover"), timeout=60, interval=0.2)
    assert time.monotonic() - started <= 30 + 5, time.monotonic() - started
    assert lan.router.neighbour(FLOATING) == two.box.mac()
    assert two.status()["holds_address"] is True and "after-failover" in two.subjects()
    found = one.status()
    assert found["fenced"] is True and found["holds_address"] is False, found
    assert FLOATING not in one.box.ip("-4", "-o", "addr", "show", "dev", "lan0")
