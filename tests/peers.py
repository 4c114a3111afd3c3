"""Wrappers around the programs the tests talk to that nobody here wrote: a DNS server (dnslib), Postfix's
smtp-sink, swaks, Dovecot, a provider's HTTP API, a network namespace; and the ports and waits they need.

A plain module, so that a unit test may start a peer as well as an integration test; the fixtures that start
them for one test (dns_zone, sink_factory, stand_in, dovecot, network_namespace) are given to every test under
tests/.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import pwd
import random
import shutil
import socket
import socketserver
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from dnslib import QTYPE, RR, DNSRecord
from dnslib.server import BaseResolver

# Ports for the peers a test starts (DNS, smtp-sink, Dovecot), and for a jitaku listener a test must name before
# the daemon starts, come from below the kernel's ephemeral range (32768-60999 by default), where no client socket
# is ever given one: a port picked by binding port 0 could be taken by some test's outgoing connection (the attack
# tests open a thousand) before the peer binds it. Each xdist worker has a block of its own. Picked here and bound
# there, a port can still be taken in between (by another run of the suite): jitaku's own listeners bind port 0
# and say what they got in ports.json, which leaves no gap.
PORT_BLOCK = 2000
_next_port = itertools.count(random.randrange(PORT_BLOCK))  # two test runs at once start apart


def free_port() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    base = 12000 + PORT_BLOCK * (int(worker) if worker.isdigit() else 0) % 20000
    for _ in range(PORT_BLOCK):
        port = base + next(_next_port) % PORT_BLOCK
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {base}-{base + PORT_BLOCK - 1}")


def wait_for_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def enter_namespace(path: str | int) -> None:
    """Move this thread into the network namespace at PATH (a file under /run/netns) or open on descriptor PATH."""
    fd = os.open(path, os.O_RDONLY) if isinstance(path, str) else path
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, NetworkNamespace.CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {path}")
    finally:
        if isinstance(path, str):
            os.close(fd)


class NetworkNamespace:
    """A network namespace of our own (`ip netns`), which this test's main thread enters.

    Every socket the test opens from then on, and every process it starts, lives in it: a loopback
    that is up and an interface `home0` (one end of a veth pair inside it) whose addresses the test
    sets, as an ISP would.
    """

    CLONE_NEWNET = 0x40000000

    def __init__(self) -> None:
        self.name = f"jitaku-test-{os.getpid()}-{time.monotonic_ns()}"
        subprocess.run(["ip", "netns", "add", self.name], check=True)
        for command in (
            ["link", "set", "lo", "up"],
            ["link", "add", "home0", "type", "veth", "peer", "name", "home1"],
            ["link", "set", "home0", "up"],
        ):
            subprocess.run(["ip", "-n", self.name, *command], check=True)
        self._home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        enter_namespace(f"/run/netns/{self.name}")

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    def close(self) -> None:
        enter_namespace(self._home)
        os.close(self._home)
        subprocess.run(["ip", "netns", "delete", self.name], check=True)


def serve(server: socketserver.BaseServer) -> None:
    """Serve in a daemon thread that notices shutdown within 50 ms (socketserver's default is 500 ms,
    paid at every test's teardown)."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


@contextlib.contextmanager
def tmpfs(mount: Path, size: str, timeout: float = 60) -> Iterator[Path]:
    """A tmpfs of SIZE ("16m") mounted at MOUNT (made) while the block runs: a disk that fills up for real, or a
    second disk. The test is skipped where nothing can be mounted (not root, a container without CAP_SYS_ADMIN)."""
    import pytest  # here: bench/ imports this module and has no pytest

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)]
    mounted = subprocess.run(command, capture_output=True, timeout=timeout)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False, timeout=timeout)


def stop_process(process: subprocess.Popen[Any], timeout: float = 10) -> None:
    """PROCESS (a peer the tests started) ended: asked with SIGTERM, killed if it has not ended within TIMEOUT."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def stop_serving(server: socketserver.BaseServer) -> None:
    server.shutdown()
    server.server_close()


def wait_until(predicate: Any, timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        time.sleep(interval)


# A zone's SOA, for the negative answers a resolver may cache: for its minimum (30 s), RFC 2308
TEST_SOA = "test. 300 IN SOA ns.test. hostmaster.test. 1 3600 600 86400 30"


class Clock:
    """A cache's idea of now, moved on by the test: it stands in for the `time` module the resolver reads."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def time(self) -> float:
        return time.time() + self.ahead


class Zone(BaseResolver):
    """A tiny authoritative DNS server: records in zone-file text, answered over UDP and TCP."""

    def __init__(self) -> None:
        self.records: list[RR] = []

    def add(self, text: str) -> None:
        self.records.extend(RR.fromZone(text))

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        qname, qtype = request.q.qname, request.q.qtype
        known = False
        for record in self.records:
            if record.rname == qname:
                known = True
                if record.rtype == qtype or qtype == QTYPE.ANY:
                    reply.add_answer(record)
        if not known:
            reply.header.rcode = 3  # NXDOMAIN
        if not reply.rr:  # as an authoritative server does: the zone's SOA, whose minimum says how long "no" holds
            for record in self.records:
                if record.rtype == QTYPE.SOA and qname.matchSuffix(record.rname):
                    reply.add_auth(record)
                    break
        return reply


def swaks(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run swaks; the transcript is in stdout, the exit code says whether the transaction succeeded."""
    return subprocess.run(["swaks", "--suppress-data", *args], capture_output=True, text=True, timeout=timeout)


def rejection(transcript: str) -> str:
    """The server line swaks marks as an unexpected reply ('<** ...')."""
    for line in transcript.splitlines():
        if line.startswith("<**"):
            return line[3:].strip()
    return ""


class Sink:
    """Postfix's smtp-sink: a real SMTP server that stores what it accepts (or refuses as told)."""

    def __init__(self, *options: str, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.port = port or free_port()
        # smtp-sink writes as `nobody`, who cannot enter pytest's 0700 tmp_path
        directory = Path(tempfile.mkdtemp(prefix="jitaku-sink-"))
        directory.chmod(0o777)
        self.dir = directory
        where = f"[{host}]" if ":" in host else host
        self.process = subprocess.Popen(
            ["smtp-sink", "-u", "nobody", "-d", f"{directory}/%M.", *options, f"{where}:{self.port}", "50"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, host=host)

    def messages(self) -> list[bytes]:
        """What the sink has stored; a file smtp-sink may still be writing (touched in the last
        0.3 s) is left for the next look, so no test reads half a message."""
        settled = time.time() - 0.3
        return [path.read_bytes() for path in sorted(self.dir.iterdir()) if path.stat().st_mtime < settled]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Tap:
    """A TCP relay in front of a peer that counts the connections made through it and keeps what each
    client wrote, chunk by chunk as it arrived: how many sessions a sender opened, and what it pipelined."""

    def __init__(self, target_port: int, host: str = "127.0.0.1") -> None:
        tap = self
        self.connections = 0
        self.chunks: list[bytes] = []

        class Relay(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                with tap._lock:
                    tap.connections += 1
                upstream = socket.create_connection((host, target_port))
                threading.Thread(target=self._back, args=(upstream,), daemon=True).start()
                with contextlib.suppress(OSError):  # either side may end it at any point
                    while chunk := self.request.recv(65536):
                        with tap._lock:
                            tap.chunks.append(chunk)
                        upstream.sendall(chunk)
                    upstream.shutdown(socket.SHUT_WR)

            def _back(self, upstream: socket.socket) -> None:
                with contextlib.suppress(OSError):
                    while chunk := upstream.recv(65536):
                        self.request.sendall(chunk)
                    self.request.shutdown(socket.SHUT_WR)
                upstream.close()

        self._lock = threading.Lock()
        self._server = socketserver.ThreadingTCPServer((host, 0), Relay)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        serve(self._server)

    def close(self) -> None:
        stop_serving(self._server)


class StandIn:
    """A provider's HTTP protocol on 127.0.0.1: HANDLE(method, path, query, headers, body) -> (status, body)."""

    def __init__(self, handle: Any) -> None:
        self.requests: list[tuple[str, str, dict[str, list[str]], dict[str, str]]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                url = urlparse(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                query = parse_qs(url.query)
                stand_in.requests.append((self.command, url.path, query, dict(self.headers)))
                status, text = handle(self.command, url.path, query, self.headers, body)
                data = text.encode() if isinstance(text, str) else json.dumps(text).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve(self.server)

    def close(self) -> None:
        stop_serving(self.server)


class Dovecot:
    """Debian's Dovecot IMAP server in a directory of its own on a loopback port: the reference the IMAP
    tests compare jitaku with. One user, alice, password "secret-password", Maildir; or USERS, each with its
    passdb password field ("{PLAIN}...", "{ARGON2ID}$argon2id$...")."""

    def __init__(self, users: Mapping[str, str] | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jitaku-dovecot-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        mail = self.dir / "mail"
        mail.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        users = users or {"alice": "{PLAIN}secret-password"}
        (self.dir / "passwd").write_text("".join(f"{user}:{password}:::\n" for user, password in users.items()))
        self.config = self.dir / "dovecot.conf"
        self.config.write_text(
            f"base_dir = {self.dir}/run\nstate_dir = {self.dir}/state\nlog_path = {self.dir}/dovecot.log\n"
            "protocols = imap\nlisten = 127.0.0.1\nssl = no\ndisable_plaintext_auth = no\n"
            f"auth_mechanisms = plain\nmail_location = maildir:{mail}/%u\nfirst_valid_uid = 1\n"
            f"passdb {{\n  driver = passwd-file\n  args = {self.dir}/passwd\n}}\n"
            f"userdb {{\n  driver = static\n  args = uid=nobody gid=nogroup home={mail}/%u\n}}\n"
            f"service imap-login {{\n  chroot =\n  inet_listener imap {{\n    port = {self.port}\n  }}\n"
            "  inet_listener imaps {\n    port = 0\n  }\n}\nservice anvil {\n  chroot =\n}\n"
        )
        # the master forks and keeps its descriptors: no pipes, or run() would wait for them to close
        subprocess.run(
            ["dovecot", "-c", str(self.config)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        wait_for_port(self.port)

    def close(self) -> None:
        subprocess.run(
            ["dovecot", "-c", str(self.config), "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=30,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


class Box:
    """One machine on a Lan: a network namespace whose interface `lan0` is plugged into the router's bridge."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace

    def ip(self, *args: str) -> str:
        return subprocess.run(["ip", "-n", self.namespace, *args], check=True, capture_output=True, text=True).stdout

    def run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.namespace, *command], check=check, capture_output=True, text=True, timeout=30
        )

    def mac(self, interface: str = "lan0") -> str:
        return str(json.loads(self.ip("-json", "link", "show", "dev", interface))[0]["address"])

    def neighbour(self, address: str, interface: str = "lan0") -> str | None:
        """The MAC this box's neighbour table (ARP cache, IPv6 neighbours) gives ADDRESS, if any."""
        found = json.loads(self.ip("-json", "neigh", "show", address, "dev", interface) or "[]")
        return found[0].get("lladdr") if found else None

    @contextlib.contextmanager
    def inside(self) -> Any:
        """This thread in the box: the sockets it opens and the programs it starts are the box's."""
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        enter_namespace(f"/run/netns/{self.namespace}")
        try:
            yield self
        finally:
            enter_namespace(home)
            os.close(home)


class Lan:
    """A home LAN in network namespaces: a router, whose bridge `lan0` joins every box added, as the switch in
    a home router does. Boxes talk to each other and to the router over real Ethernet (veth) with ARP and
    IPv6 neighbour discovery; the test sets the addresses."""

    PREFIX = "jitaku-lan-"  # then the test process's pid: a namespace of a process gone is a leftover

    def __init__(self) -> None:
        _remove_leftovers(self.PREFIX)
        self._tag = f"{os.getpid()}-{time.monotonic_ns() % 10**9}"
        self._namespaces: list[Box] = []
        self._ports: dict[str, str] = {}
        self.boxes: dict[str, Box] = {}
        try:
            self.router = self._namespace("router")
            self.router.ip("link", "add", "lan0", "type", "bridge", "mcast_snooping", "0")
            self.router.ip("link", "set", "lan0", "up")
        except BaseException:
            self.close()  # the router's namespace is not left behind by a LAN half built
            raise

    def _namespace(self, name: str) -> Box:
        box = Box(f"{self.PREFIX}{self._tag}-{name}")
        subprocess.run(["ip", "netns", "add", box.namespace], check=True)
        self._namespaces.append(box)
        box.ip("link", "set", "lo", "up")
        return box

    def add(self, name: str) -> Box:
        """A box plugged into the router, its interface `lan0` up and without addresses."""
        box = self._namespace(name)
        port = f"port{len(self._namespaces)}"
        self.router.ip("link", "add", port, "type", "veth", "peer", "name", "lan0", "netns", box.namespace)
        self.router.ip("link", "set", port, "master", "lan0", "up")
        box.ip("link", "set", "lan0", "up")
        self._ports[name] = port
        self.boxes[name] = box
        return box

    def unplug(self, name: str) -> None:
        """NAME's cable pulled out of the router: its `lan0` stays up, with no carrier (NO-CARRIER)."""
        self.router.ip("link", "set", self._ports[name], "down")

    def close(self) -> None:
        for box in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "delete", box.namespace], check=False)


def _remove_leftovers(prefix: str) -> None:
    """Network namespaces named PREFIX<pid>-... whose test process has died (killed before its cleanup ran)."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    for line in listed.splitlines():
        name = line.split(" ", 1)[0]
        pid = name.removeprefix(prefix).partition("-")[0]
        if name.startswith(prefix) and pid.isdigit() and not _alive(int(pid)):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    return True
