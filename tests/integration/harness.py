"""The jitaku harness: a data directory and its `jitaku serve` process (Jitaku), its config written as TOML, and
what the integration tests share by name (a hand-driven SMTP session, delivering to alice, filling a small disk,
a mount namespace for a jitaku that dropped root). Its fixtures (jitaku_factory, mailhost, server, small_disk,
readable_install, shared_dir) are given to every test under tests/integration/ alone."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from jitaku.ports import SECTIONS
from jitaku.store import Database, mailstore
from jitaku.store.statements import Statements
from tests.peers import free_port, swaks, wait_until
from tests.postgres import on_postgresql, server

JITAKU = [sys.executable, "-m", "jitaku"]
T = TypeVar("T")


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
        self._threads = set(threading.enumerate())
        self._hidden = list(shown)
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
        # A thread started inside shares this thread's filesystem attributes, and setns refuses (EINVAL) while
        # one lives: the DNS stub's request threads may still be finishing when its fixture has stopped it
        for thread in set(threading.enumerate()) - self._threads:
            thread.join(timeout=10)
        if self._libc.setns(self._home, self.CLONE_NEWNS) != 0:
            failure = ctypes.get_errno()
            if failure != errno.EINVAL:
                raise OSError(failure, "setns back to our mount namespace")
            # Something still shares them: take our mounts down instead, which leaves this thread in a copy of
            # the namespace it came from, showing what that one shows
            for hidden in reversed(self._hidden):
                subprocess.run(["umount", "--recursive", "--lazy", str(hidden)], check=True)
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


def root_owned(directory: Path) -> list[str]:
    """What in DIRECTORY (itself included) is root's, by path relative to it."""
    found = [] if directory.stat().st_uid else ["."]
    for path in sorted(directory.rglob("*")):
        if path.lstat().st_uid == 0:
            found.append(str(path.relative_to(directory)))
    return found


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # in a list: an array of tables, [[ddns]], as inline tables
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
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


def stop_all(servers: list[Jitaku]) -> None:
    """Stop SERVERS, the boxes whose cluster is a standby's last: a primary stopped after its synchronous standby
    waits `[ha] sync_timeout` (10 s) for it, its shutdown's last commits held until replication turns
    asynchronous."""
    for box in sorted(servers, key=lambda box: box.replays):
        box.stop()


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
        # JITAKU_TEST_DATABASE=postgresql: a new database of the tests' PostgreSQL (tests/postgres.py); else
        # DIR/jitaku.db, as `jitaku init` leaves it
        self._postgresql: str | None = None
        if on_postgresql():
            self._use(self._new_database())
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
        same domains and users: the same files, without seconds of key generation and hashing per test. On
        PostgreSQL the database is kept as a database of the server's, which the next one is copied from."""
        if self.prepared is None:
            self.cli("init")
            for user in users:
                self.add_user(user)
            return
        key = json.dumps([self.settings["hostname"], self.settings["domains"], self.settings.get("dkim"), users])
        name = hashlib.sha256(key.encode()).hexdigest()[:16]
        template = self.prepared / name
        if not template.exists():
            self.cli("init")
            for user in users:
                self.add_user(user)
            staging = template.with_name(template.name + ".part")
            shutil.copytree(self.dir, staging, ignore=shutil.ignore_patterns("jitaku.toml", "serve.log"))
            if on_postgresql():
                server().keep(self.database_url, f"prepared_{name}")
            staging.rename(template)
        else:
            shutil.copytree(template, self.dir, dirs_exist_ok=True)
            if on_postgresql():
                server().drop(self.database_url)
                self._use(self._new_database(f"prepared_{name}"))
                self.write_config()

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
        # a test that wrote a config of its own without the database's URL would run on SQLite unseen
        assert not (on_postgresql() and (self.dir / "jitaku.db").exists()), (
            "jitaku serve made jitaku.db: not on PostgreSQL"
        )

    @property
    def replays(self) -> bool:
        """Whether its managed cluster is a standby's (standby.signal, as `jitaku standby setup` and a re-join
        leave it)."""
        return (self.dir / "postgres" / "standby.signal").exists()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    @property
    def database_url(self) -> str:
        """Where the daemon keeps its data: DIR/jitaku.db, or a database of the tests' PostgreSQL."""
        return self._postgresql or f"sqlite:///{self.dir / 'jitaku.db'}"

    def _use(self, url: str) -> None:
        self._postgresql = url
        self.settings["database"] = {"url": url}

    @staticmethod
    def _new_database(template: str | None = None) -> str:
        """A new database of the tests' PostgreSQL (a copy of TEMPLATE if given), through its socket: the daemon
        may run in a network namespace of its own (off_loopback)."""
        found = server().database(template) if template else server().database()
        return server().over_socket(found)

    def drop_database(self) -> None:
        """Drop the database of the tests' PostgreSQL this instance ran on, once it is stopped (each is a copy
        of some megabytes)."""
        if on_postgresql():
            server().drop(self.database_url)

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

    def read(self, query: Callable[[Statements], T]) -> T:
        """QUERY, one of the store's reads (`lambda s: store.mailstore.list_messages(s, ...)`), run on this data
        directory's database beside the daemon: for bulk checks the CLI would make slow, one process per item."""
        database = Database(self.database_url)
        try:
            return database.query_now(query)
        finally:
            database.close()

    def stored_bodies(self, address: str) -> list[bytes]:
        """Every stored message of ADDRESS's INBOX, read through the store (fast, for bulk checks)."""
        return [message.body for message in self.read(lambda s: mailstore.list_messages(s, address))]

    def queue(self) -> list[dict[str, Any]]:
        return json.loads(self.cli("queue", "list", "--json").stdout)


READER = "alice@example.test"  # the mailbox the IMAP and POP3 tests read, password "secret-password"


def on_disk(jitaku_factory: Any, disk: Path) -> Jitaku:
    """A running jitaku with users alice and bob whose data directory is on DISK (small_disk)."""
    if on_postgresql():  # a full disk under PostgreSQL's own data is the managed cluster's to test
        pytest.skip("SQLite only: the tests' PostgreSQL keeps its data off the small disk")
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


def deliver(server: Jitaku, *bodies: str, subject: str | None = None) -> None:
    """Each of BODIES to alice through the MX, by swaks."""
    header = ["--header", f"Subject: {subject}"] if subject is not None else []
    for body in bodies:
        sent = swaks(
            "--server", f"127.0.0.1:{server.smtp_port}", "--to", READER, "--from", "x@x.test", *header, "--body", body
        )
        assert sent.returncode == 0, sent.stdout


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
