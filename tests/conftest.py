"""Shared test machinery: free ports, a local DNS server (dnslib), and a real `jitaku serve` process."""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import itertools
import json
import os
import pwd
import random
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from dnslib import QTYPE, RR, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from jitaku.ports import SECTIONS

JITAKU = [sys.executable, "-m", "jitaku"]


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
        self._enter(f"/run/netns/{self.name}")

    def _enter(self, path: str | int) -> None:
        fd = os.open(path, os.O_RDONLY) if isinstance(path, str) else path
        try:
            if ctypes.CDLL(None, use_errno=True).setns(fd, self.CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {path}")
        finally:
            if isinstance(path, str):
                os.close(fd)

    def ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True)

    def close(self) -> None:
        self._enter(self._home)
        os.close(self._home)
        subprocess.run(["ip", "netns", "delete", self.name], check=True)


@pytest.fixture
def network_namespace() -> Iterator[NetworkNamespace]:
    """Ask for it first among a test's fixtures, so that theirs open their sockets inside it."""
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root (CI runs as root)")
    namespace = NetworkNamespace()
    yield namespace
    namespace.close()


class MountNamespace:
    """A mount namespace of our own, which this test's main thread enters, where each directory that only root
    may enter (pyenv's /root, here) is a tmpfs showing everyone just the children of it that Python and jitaku
    live in: a jitaku that dropped root must still import what it imports late (the web server, the checks).

    An installed jitaku lives where every user may read it; nothing outside this test sees the change.
    """

    CLONE_NEWNS = 0x00020000

    def __init__(self, shown: dict[Path, set[str]]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._home = os.open("/proc/thread-self/ns/mnt", os.O_RDONLY)
        self._cwd = os.getcwd()  # entering a mount namespace again moves this thread to its root
        if self._libc.unshare(self.CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
        subprocess.run(["mount", "--make-rprivate", "/"], check=True)
        for hidden, children in shown.items():
            staging = Path(tempfile.mkdtemp(prefix="jitaku-shown-"))
            for child in children:
                (staging / child).mkdir()
                subprocess.run(["mount", "--bind", str(hidden / child), str(staging / child)], check=True)
            subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(hidden)], check=True)
            for child in children:
                (hidden / child).mkdir()
                subprocess.run(["mount", "--move", str(staging / child), str(hidden / child)], check=True)
            shutil.rmtree(staging)

    def close(self) -> None:
        if self._libc.setns(self._home, self.CLONE_NEWNS) != 0:
            raise OSError(ctypes.get_errno(), "setns back to our mount namespace")
        os.close(self._home)
        os.chdir(self._cwd)


def hidden_from_others(paths: list[Path]) -> dict[Path, set[str]]:
    """For each of PATHS below a directory others may not enter: that directory, and its child on the way."""
    hidden: dict[Path, set[str]] = {}
    for path in paths:
        path = path.resolve()
        ancestors = list(reversed(path.parents))
        for ancestor, child in zip(ancestors, [*ancestors[1:], path], strict=True):
            if not ancestor.stat().st_mode & 0o001:
                hidden.setdefault(ancestor, set()).add(child.name)
                break
    return hidden


@pytest.fixture
def readable_install() -> Iterator[None]:
    """Python and jitaku readable by every user, as they are once installed (see MountNamespace)."""
    if os.geteuid() != 0:
        pytest.skip("dropping root needs root (CI runs as root)")
    import jitaku

    installed = [Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).parent, Path(jitaku.__file__).parent]
    installed += [Path(entry) for entry in sys.path if entry and Path(entry).exists()]
    hidden = hidden_from_others(installed)
    if not hidden:
        yield
        return
    namespace = MountNamespace(hidden)
    yield
    namespace.close()


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory every user may enter (pytest's tmp_path is root's alone), for a data directory that a
    jitaku which dropped root must reach."""
    directory = Path(tempfile.mkdtemp(prefix="jitaku-shared-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def root_owned(directory: Path) -> list[str]:
    """What in DIRECTORY (itself included) is root's, by path relative to it."""
    found = [] if directory.stat().st_uid else ["."]
    for path in sorted(directory.rglob("*")):
        if path.lstat().st_uid == 0:
            found.append(str(path.relative_to(directory)))
    return found


def serve(server: socketserver.BaseServer) -> None:
    """Serve in a daemon thread that notices shutdown within 50 ms (socketserver's default is 500 ms,
    paid at every test's teardown)."""
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()


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


@pytest.fixture
def dns_zone() -> Iterator[tuple[Zone, int]]:
    zone = Zone()
    port = free_port()
    servers = [
        DNSServer(zone, address="127.0.0.1", port=port),
        DNSServer(zone, address="127.0.0.1", port=port, tcp=True),
    ]
    for server in servers:
        serve(server.server)
    yield zone, port
    for server in servers:
        stop_serving(server.server)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_config(path: Path, settings: dict[str, Any]) -> None:
    """SETTINGS as PATH, 0600 as `jitaku init` leaves a config (it may hold secrets): a more open one makes
    `serve` tighten it and say so on stderr, which a test of serve's own words would read."""
    path.write_text("\n".join(_toml_table(settings, [])) + "\n")
    path.chmod(0o600)


def _toml_table(values: dict[str, Any], section: list[str]) -> list[str]:
    """VALUES as TOML: its plain keys first, then each dict as a [section.sub] table of its own."""
    lines = [f"\n[{'.'.join(section)}]"] if section else []
    lines.extend(f"{k} = {toml_value(v)}" for k, v in values.items() if not isinstance(v, dict))
    for key, table in values.items():
        if isinstance(table, dict):
            lines.extend(_toml_table(table, [*section, key]))
    return lines


def port_of(address: str) -> int:
    """The port of "host:port" or "[v6]:port"."""
    return int(address.rpartition(":")[2])


class Jitaku:
    """One jitaku data directory and, while started, its `jitaku serve` process.

    Its listeners bind port 0; `start` reads the ports they got from DIR/ports.json, and `smtp_port`,
    `imap_port` and the rest say them from then on. A test that must name a port before the start (in
    another server's config, say) asks `fixed_port` for one.
    """

    def __init__(self, data_dir: Path, dns_port: int | None, prepared: Path | None = None) -> None:
        self.dir = data_dir
        self.prepared = prepared
        self.settings: dict[str, Any] = {
            "hostname": "mail.example.test",
            "domains": ["example.test", "example.org"],
            "smtp": {"listen": ["127.0.0.1:0"]},
            "submission": {"listen": ["127.0.0.1:0"]},
            "web": {"listen": ["127.0.0.1:0"]},
            "pop3": {"listen": ["127.0.0.1:0"]},
            "imap": {"listen": ["127.0.0.1:0"]},
            "queue": {"retry_min": 1, "retry_max": 2},
        }
        if dns_port:
            self.settings["dns"] = {"nameservers": [f"127.0.0.1:{dns_port}"]}
        self.listening: dict[str, list[str]] = {}  # ports.json of the last start: listener name -> "host:port"s
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "serve.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.write_config()

    def write_config(self) -> None:
        write_config(self.dir / "jitaku.toml", self.settings)

    def run_as(self, user: str) -> None:
        """`[run] user = USER`, and the data directory made theirs (`chown -R USER:`), as `jitaku init --service`
        leaves the service's; the daemon's log goes beside it, so nothing in it is root's. The directory must be
        one USER can reach (`jitaku_factory(where=shared_dir)`)."""
        self.settings["run"] = {"user": user}
        self.write_config()
        self.log_path = self.dir.with_name(self.dir.name + ".log")
        subprocess.run(["chown", "-R", f"{user}:", str(self.dir)], check=True)

    def port(self, listener: str) -> int:
        """The port of LISTENER's first address ("mx", "imap", "pop3s", ...): where the daemon last started got
        it, else as the config fixes it."""
        if self.listening.get(listener):
            return port_of(self.listening[listener][0])
        configured = self.settings.get(SECTIONS[listener], {}).get("listen") or ["?:0"]
        fixed = port_of(configured[0])
        assert fixed, f"{listener} listens on a port the daemon picks when it starts: ask fixed_port() before"
        return fixed

    def fixed_port(self, listener: str) -> int:
        """A port chosen now for LISTENER (on 127.0.0.1) and written to the config, for a test that must name it
        before the start."""
        port = free_port()
        self.settings.setdefault(SECTIONS[listener], {})["listen"] = [f"127.0.0.1:{port}"]
        self.write_config()
        return port

    @property
    def smtp_port(self) -> int:
        return self.port("mx")

    @property
    def submission_port(self) -> int:
        return self.port("submission")

    @property
    def web_port(self) -> int:
        return self.port("web")

    @property
    def pop3_port(self) -> int:
        return self.port("pop3")

    @property
    def imap_port(self) -> int:
        return self.port("imap")

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*JITAKU, *args, "--dir", str(self.dir)], input=input, capture_output=True, text=True, timeout=60
        )
        if check and result.returncode != 0:
            raise AssertionError(f"jitaku {' '.join(args)} failed: {result.stderr}")
        return result

    def init(self, *users: str) -> None:
        """`jitaku init` and `jitaku user add` for USERS. What they leave in the data dir (database, DKIM
        keys, certificate) is kept for the session and copied into the next test's dir that asks for the
        same domains and users: the same files, without seconds of key generation and hashing per test."""
        if self.prepared is None:
            self.cli("init")
            for user in users:
                self.add_user(user)
            return
        key = json.dumps([self.settings["hostname"], self.settings["domains"], self.settings.get("dkim"), users])
        template = self.prepared / hashlib.sha256(key.encode()).hexdigest()[:16]
        if not template.exists():
            self.cli("init")
            for user in users:
                self.add_user(user)
            staging = template.with_name(template.name + ".part")
            shutil.copytree(self.dir, staging, ignore=shutil.ignore_patterns("jitaku.toml", "serve.log"))
            staging.rename(template)
        else:
            shutil.copytree(template, self.dir, dirs_exist_ok=True)

    def add_user(self, address: str, password: str = "secret-password") -> None:
        self.cli("user", "add", address, "--password-stdin", input=password + "\n")

    def start(self, user: str | None = None) -> None:
        """Start `jitaku serve`, as root, or as USER (with its groups alone), as systemd's `User=` would."""
        ports = self.dir / "ports.json"
        ports.unlink(missing_ok=True)  # the daemon removes it too, but this test could read it before then
        log = open(self.log_path, "ab")
        as_user: dict[str, Any] = {}
        if user is not None:
            as_user = {"user": user, "group": pwd.getpwnam(user).pw_gid, "extra_groups": []}
        self.process = subprocess.Popen([*JITAKU, "serve", "--dir", str(self.dir)], stdout=log, stderr=log, **as_user)
        process = self.process
        try:
            # written once every listener is bound and listening: a client may connect from then on
            wait_until(lambda: ports.exists() or process.poll() is not None, timeout=30, interval=0.05)
            self.listening = json.loads(ports.read_text())
        except (AssertionError, OSError):
            self.stop()
            raise AssertionError("jitaku serve did not start:\n" + self.log()) from None

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill9(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def mailbox(self, address: str) -> list[dict[str, Any]]:
        return json.loads(self.cli("mailbox", "list", address, "--json").stdout)

    def message(self, address: str, uid: int) -> bytes:
        result = subprocess.run(
            [*JITAKU, "mailbox", "show", address, str(uid), "--dir", str(self.dir)], capture_output=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    def stored_bodies(self, address: str) -> list[bytes]:
        """Every stored message of ADDRESS's INBOX, read from the database file itself (fast, for bulk checks)."""
        import sqlite3

        with sqlite3.connect(f"file:{self.dir / 'jitaku.db'}?mode=ro", uri=True) as connection:
            rows = connection.execute(
                "SELECT m.body FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id JOIN users u ON u.id = b.user_id"
                " WHERE u.address = ? AND b.name = 'INBOX' ORDER BY m.uid",
                (address,),
            ).fetchall()
        return [bytes(row[0]) for row in rows]

    def queue(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("queue", "list", "--json").stdout)


@pytest.fixture(scope="session")
def prepared_dirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("prepared")


@pytest.fixture
def jitaku_factory(tmp_path: Path, prepared_dirs: Path) -> Iterator[Any]:
    made: list[Jitaku] = []

    def make(dns_port: int | None = None, name: str = "jitaku", where: Path | None = None) -> Jitaku:
        """WHERE: the data directory's parent, tmp_path unless given (pytest's is root's alone, 0700)."""
        instance = Jitaku((where or tmp_path) / name, dns_port, prepared_dirs)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        instance.stop()


READER = "alice@example.test"  # the mailbox the IMAP and POP3 tests read, password "secret-password"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs, for a data dir that fills up for real."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:  # root in a container without CAP_SYS_ADMIN
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.decode(errors='replace').strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def on_disk(jitaku_factory: Any, disk: Path) -> Jitaku:
    """A running jitaku with users alice and bob whose data directory is on DISK (small_disk)."""
    server: Jitaku = jitaku_factory()
    server.dir = disk / "jitaku"  # before anything is written there
    server.log_path = server.dir / "serve.log"
    server.dir.mkdir()
    server.write_config()
    server.init(READER, "bob@example.org")
    server.start()
    return server


def fill(disk: Path) -> Path:
    """A file that takes the room left on DISK; unlink it to make room again."""
    filler = disk / "filler"
    # unbuffered: a buffered file kept the part of its last write the disk had no room for, and its close raised
    # ENOSPC past the suppress, whenever the room left was not a multiple of 64 KiB
    with open(filler, "wb", buffering=0) as writing, contextlib.suppress(OSError):
        while True:
            writing.write(b"\0" * (64 * 1024))
    return filler


@pytest.fixture
def mailhost(jitaku_factory: Any) -> Jitaku:
    """A running jitaku whose IMAP and POP3 listeners answer, with users alice and bob."""
    instance: Jitaku = jitaku_factory()
    instance.init(READER, "bob@example.org")
    instance.start()
    wait_for_port(instance.imap_port)
    wait_for_port(instance.pop3_port)
    return instance


def deliver(server: Jitaku, *bodies: str, subject: str | None = None) -> None:
    """Each of BODIES to alice through the MX, by swaks."""
    header = ["--header", f"Subject: {subject}"] if subject is not None else []
    for body in bodies:
        sent = swaks(
            "--server", f"127.0.0.1:{server.smtp_port}", "--to", READER, "--from", "x@x.test", *header, "--body", body
        )
        assert sent.returncode == 0, sent.stdout


@pytest.fixture
def server(jitaku_factory: Any, dns_zone: tuple[Zone, int]) -> Jitaku:
    """A running jitaku for example.test/example.org with users alice and bob, DNS pointed at `dns_zone`."""
    instance: Jitaku = jitaku_factory(dns_zone[1])
    instance.init("alice@example.test", "bob@example.org")
    instance.start()
    return instance


class RawSession:
    """A hand-driven SMTP conversation, for what swaks will not send (bare LF, dribbled bytes, raw 8-bit)."""

    def __init__(self, port: int, timeout: float = 10) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.stream = self.sock.makefile("rb")
        self.greeting = self.reply()

    def __enter__(self) -> RawSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()
        self.sock.close()

    def reply(self) -> bytes:
        """The last line of the next (possibly multi-line) reply."""
        line = self.stream.readline()
        while line[3:4] == b"-":
            line = self.stream.readline()
        return line

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def start_data(self, sender: str = "carol@remote.test", recipient: str = "alice@example.test") -> bytes:
        """EHLO, MAIL, RCPT, DATA; the reply to DATA."""
        self.command(b"EHLO client.test")
        self.command(f"MAIL FROM:<{sender}>".encode())
        self.command(f"RCPT TO:<{recipient}>".encode())
        return self.command(b"DATA")


def swaks(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run swaks; the transcript is in stdout, the exit code says whether the transaction succeeded."""
    return subprocess.run(["swaks", "--suppress-data", *args], capture_output=True, text=True, timeout=timeout)


def rejection(transcript: str) -> str:
    """The server line swaks marks as an unexpected reply ('<** ...')."""
    for line in transcript.splitlines():
        if line.startswith("<**"):
            return line[3:].strip()
    return ""


def read_config(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


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


@pytest.fixture
def sink_factory() -> Iterator[Any]:
    sinks: list[Sink] = []

    def make(*options: str, **where: Any) -> Sink:
        sink = Sink(*options, **where)
        sinks.append(sink)
        return sink

    yield make
    for sink in sinks:
        sink.stop()


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

            do_GET = do_PUT = do_POST = _serve

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        serve(self.server)

    def close(self) -> None:
        stop_serving(self.server)


@pytest.fixture
def stand_in() -> Iterator[Any]:
    made: list[StandIn] = []

    def make(handle: Any) -> StandIn:
        made.append(StandIn(handle))
        return made[-1]

    yield make
    for item in made:
        item.close()


class Dovecot:
    """Debian's Dovecot IMAP server in a directory of its own on a loopback port: the reference the IMAP
    tests compare jitaku with. One user, alice, password "secret-password", Maildir."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jitaku-dovecot-"))
        self.dir.chmod(0o755)
        self.port = free_port()
        mail = self.dir / "mail"
        mail.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(mail, nobody.pw_uid, nobody.pw_gid)
        (self.dir / "passwd").write_text("alice:{PLAIN}secret-password:::\n")
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


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if os.geteuid() != 0:
        pytest.skip("Dovecot runs its mail processes as nobody, which needs root (CI runs as root)")
    server = Dovecot()
    yield server
    server.close()
