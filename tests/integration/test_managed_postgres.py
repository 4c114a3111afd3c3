"""A PostgreSQL cluster of jitaku's own (`jitaku init --database postgresql`, jitaku.ha.cluster): made in DIR/postgres
with Debian's binaries, run as a user who is not root, started by `jitaku serve` and by the commands that need the
store, adopted after a kill -9, started again after a power cut; mail goes in by SMTP and out by IMAP as on SQLite.

The tests run as root (CI does): the cluster then runs as `postgres`, who must reach the data directory, hence
shared_dir. Every cluster listens on a port of its own (free_port), written to the config before `init`."""

from __future__ import annotations

import contextlib
import difflib
import imaplib
import json
import os
import pwd
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import JITAKU, READER, Jitaku, deliver
from tests.peers import free_port, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user: needs root (CI is)")


@pytest.fixture(autouse=True)
def no_cluster_left(shared_dir: Path) -> Iterator[None]:
    """A test that fails half way leaves no PostgreSQL running in a directory about to be removed."""
    yield
    for pid_file in shared_dir.glob("*/postgres/postmaster.pid"):
        data = pid_file.parent
        pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
        subprocess.run([str(pg_ctl), "-D", str(data), "-m", "immediate", "stop"], user=data.stat().st_uid, check=False)


def managed(jitaku_factory: Any, shared_dir: Path) -> tuple[Jitaku, int]:
    server: Jitaku = jitaku_factory(where=shared_dir)
    port = free_port()
    server.settings["database"] = {"listen": [f"127.0.0.1:{port}"]}
    server.write_config()
    return server, port


def postmaster(server: Jitaku) -> int | None:
    """The pid DIR/postgres/postmaster.pid names, if the file is there."""
    path = server.dir / "postgres" / "postmaster.pid"
    return int(path.read_text().split("\n", 1)[0]) if path.exists() else None


def owner_of(pid: int) -> str:
    uid = next(
        line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")
    )
    return pwd.getpwuid(int(uid)).pw_name


def alive(pid: int) -> bool:
    """Whether PID runs (a zombie does not: a postmaster whose pg_ctl is gone is init's child, reaped when init
    gets to it, if ever in a container)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def imap_bodies(server: Jitaku) -> list[bytes]:
    with imaplib.IMAP4("127.0.0.1", server.imap_port) as imap:
        imap.login(READER, "secret-password")
        imap.select("INBOX")
        _, found = imap.search(None, "ALL")
        bodies = []
        for number in found[0].split():
            _, data = imap.fetch(number, "(BODY.PEEK[TEXT])")
            bodies.append(bytes(data[0][1]).strip())  # type: ignore[index]
        return bodies


def test_init_makes_a_cluster_that_serves_mail_and_survives_kill_9(jitaku_factory: Any, shared_dir: Path) -> None:
    server, port = managed(jitaku_factory, shared_dir)
    config_path = server.dir / "jitaku.toml"
    before = config_path.read_text()

    assert server.cli("init", "--database", "postgresql").stderr == ""

    # the config gained the keys it needed, and nothing else changed in it
    after = config_path.read_text()
    diff = [line for line in difflib.ndiff(before.splitlines(), after.splitlines()) if line[:1] in "+-"]
    url = f"postgresql://jitaku@127.0.0.1:{port}/jitaku"
    assert [line.split("  #")[0].rstrip() for line in diff] == ["+ managed = true", f'+ url = "{url}"']
    secret = server.dir / "postgres" / "jitaku.pgpass"
    assert secret.stat().st_mode & 0o777 == 0o600
    password = secret.read_text().strip().rsplit(":", 1)[1]
    assert len(password) >= 32 and password not in after
    assert postmaster(server) is None  # init stopped the cluster it started: nothing else uses it

    server.add_user(READER)  # with the daemon down, the command starts the cluster, and stops it after
    assert postmaster(server) is None

    server.start()
    pid = postmaster(server)
    assert pid is not None and owner_of(pid) == "postgres"
    _needs_its_password(port, secret)
    deliver(server, "first over postgresql")
    wait_until(lambda: imap_bodies(server) == [b"first over postgresql"], timeout=30)

    server.kill9()
    assert postmaster(server) == pid and alive(pid)  # left running by the dead daemon
    server.start()
    assert postmaster(server) == pid  # adopted, not started twice
    assert imap_bodies(server) == [b"first over postgresql"]
    assert server.mailbox(READER)[0]["uid"] == 1  # a command beside the daemon uses its cluster

    server.stop()
    assert postmaster(server) is None and not alive(pid)


def _needs_its_password(port: int, secret: Path) -> None:
    """The cluster takes the jitaku role with the password in its file, and not without it."""
    import psycopg

    url = f"postgresql://jitaku@127.0.0.1:{port}/jitaku"
    wrong = secret.with_name("wrong.pgpass")
    wrong.write_text("*:*:*:jitaku:not-the-password\n")
    wrong.chmod(0o600)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url, passfile=str(wrong), connect_timeout=10).close()
    wrong.unlink()
    with psycopg.connect(url, passfile=str(secret), connect_timeout=10) as connection:
        assert connection.execute("SELECT current_user").fetchone() == ("jitaku",)


def test_a_power_cut_leaves_nothing_that_stops_the_next_start(jitaku_factory: Any, shared_dir: Path) -> None:
    """Daemon and cluster gone at once, and the postmaster.pid left behind naming a pid some other process of the
    postgres user has after the reboot: the next start runs, and the mail committed before is there."""
    server, _port = managed(jitaku_factory, shared_dir)
    server.cli("init", "--database", "postgresql")
    server.add_user(READER)
    server.start()
    deliver(server, "before the power cut")
    pid = postmaster(server)
    assert pid is not None
    server.kill9()
    os.killpg(pid, signal.SIGKILL)  # pg_ctl made the postmaster a session leader; its backends share its group
    wait_until(lambda: not alive(pid), timeout=10)
    stranger = subprocess.Popen(["sleep", "120"], user="postgres")
    try:
        for lock in [server.dir / "postgres" / "postmaster.pid", *(server.dir / "postgres").glob(".s.PGSQL.*.lock")]:
            lines = lock.read_text().split("\n")
            lock.write_text("\n".join([str(stranger.pid), *lines[1:]]))
        server.start()
        assert postmaster(server) not in (None, stranger.pid)
        assert imap_bodies(server) == [b"before the power cut"]
    finally:
        stranger.kill()
        stranger.wait()


def test_init_of_a_new_data_dir_writes_the_database_keys(shared_dir: Path) -> None:
    """In a network namespace of its own: a new config's cluster listens on the default port, 5433."""
    data_dir = shared_dir / "new"
    command = [*JITAKU, "init", "--domain", "example.test", "--database", "postgresql"]
    result = _in_namespace(["--net"], "ip link set lo up", command, Path("new"), cwd=shared_dir)  # a relative --dir
    assert result.returncode == 0, result.stderr
    text = (data_dir / "jitaku.toml").read_text()
    assert "\nmanaged = true" in text and '\nlisten = ["127.0.0.1:5433"]' in text
    assert (data_dir / "postgres" / "PG_VERSION").exists() and not (data_dir / "jitaku.db").exists()
    assert (data_dir / "postgres").stat().st_uid == pwd.getpwnam("postgres").pw_uid


def test_without_postgresql_installed_init_says_what_to_install(jitaku_factory: Any, shared_dir: Path) -> None:
    server, _port = managed(jitaku_factory, shared_dir)
    before = (server.dir / "jitaku.toml").read_text()
    result = _in_namespace(
        ["--mount"],
        "mount -t tmpfs tmpfs /usr/lib/postgresql",
        [*JITAKU, "init", "--database", "postgresql"],
        server.dir,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(
        "jitaku: PostgreSQL 15 or newer is not installed"
    )
    assert "apt install postgresql" in result.stderr
    assert not (server.dir / "postgres").exists()
    assert before == (server.dir / "jitaku.toml").read_text()  # unchanged: `jitaku serve` still starts on SQLite
    fresh = _in_namespace(
        ["--mount"],
        "mount -t tmpfs tmpfs /usr/lib/postgresql",
        [*JITAKU, "init", "--domain", "example.test", "--database", "postgresql"],
        shared_dir / "fresh",
    )
    assert fresh.returncode == 1 and "apt install postgresql" in fresh.stderr
    assert not (shared_dir / "fresh" / "jitaku.toml").exists()  # no config naming a cluster that is not there


def test_a_run_user_runs_the_cluster(jitaku_factory: Any, shared_dir: Path, readable_install: None) -> None:
    """With `[run] user`, root's daemon and commands run the cluster as that user, as the daemon itself runs."""
    server, _port = managed(jitaku_factory, shared_dir)
    server.run_as("nobody")
    server.cli("init", "--database", "postgresql")
    server.add_user(READER)
    server.start()
    pid = postmaster(server)
    assert pid is not None and owner_of(pid) == "nobody"
    assert (server.dir / "postgres").stat().st_uid == pwd.getpwnam("nobody").pw_uid
    deliver(server, "as nobody")
    wait_until(lambda: imap_bodies(server) == [b"as nobody"], timeout=30)
    server.stop()
    assert postmaster(server) is None


def _in_namespace(
    kind: list[str], setup: str, command: list[str], data_dir: Path, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    script = f'{setup} && exec "$@"'
    return subprocess.run(
        ["unshare", *kind, "sh", "-c", script, "sh", *command, "--dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )


def test_db_use_postgresql_moves_an_sqlite_install_with_its_mail(jitaku_factory: Any, shared_dir: Path) -> None:
    """Refused while the daemon runs (it would go on writing to SQLite); with it stopped, the cluster is made,
    jitaku.db copied into it, and only then the config changed. jitaku.db stays as it was."""
    server, port = managed(jitaku_factory, shared_dir)
    server.init(READER)
    server.start()
    deliver(server, "kept on sqlite")
    wait_until(lambda: imap_bodies(server) == [b"kept on sqlite"], timeout=30)
    config = (server.dir / "jitaku.toml").read_text()
    for command in (["db", "use-postgresql"], ["init", "--database", "postgresql"]):
        refused = server.cli(*command, check=False)
        assert refused.returncode == 1 and refused.stderr.count("\n") == 1
        assert (
            "jitaku serve is already running on" in refused.stderr
            and "stop it before moving the store" in refused.stderr
        )
        assert (server.dir / "jitaku.toml").read_text() == config and not (server.dir / "postgres").exists()
    server.stop()
    database = (server.dir / "jitaku.db").read_bytes()

    result = server.cli("db", "use-postgresql")
    assert "copied " in result.stdout and "their counts agree" in result.stdout
    assert f"ready: database postgresql://jitaku@127.0.0.1:{port}/jitaku" in result.stdout
    assert (server.dir / "jitaku.db").read_bytes() == database
    assert "managed = true" in (server.dir / "jitaku.toml").read_text()
    assert postmaster(server) is None  # started for the move, stopped after it
    again = server.cli("db", "use-postgresql")
    assert "added to [database]" not in again.stdout and "copied" not in again.stdout

    server.start()
    assert postmaster(server) is not None
    assert imap_bodies(server) == [b"kept on sqlite"]


def test_a_listen_port_changed_after_init_without_the_url_is_refused_by_name(
    jitaku_factory: Any, shared_dir: Path
) -> None:
    """init writes the url (CONTRACTS): a port moved in listen alone would leave the store dialling the old one."""
    server, _port = managed(jitaku_factory, shared_dir)
    server.cli("init", "--database", "postgresql")
    moved = free_port()
    path = server.dir / "jitaku.toml"
    text = path.read_text()
    assert text.count(f"127.0.0.1:{_port}") == 2  # [database] listen's, and the url naming it
    path.write_text(text.replace(f'"127.0.0.1:{_port}"', f'"127.0.0.1:{moved}"'))
    refused = server.cli("user", "list", check=False)
    assert refused.returncode != 0 and "url" in refused.stderr and f"127.0.0.1:{_port}" in refused.stderr
    assert str(path) in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_a_port_in_use_is_said_in_one_line(jitaku_factory: Any, shared_dir: Path) -> None:
    server, port = managed(jitaku_factory, shared_dir)
    server.cli("init", "--database", "postgresql")
    with socket.create_server(("127.0.0.1", port)):
        result = server.cli("user", "list", check=False)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("jitaku: pg_ctl start failed: could not create any TCP/IP sockets")
    assert 'could not bind IPv4 address "127.0.0.1": Address already in use' in result.stderr
    assert json.loads(server.cli("user", "list", "--json").stdout) == []  # the port free again, it starts


def stuck(pid: int) -> str:
    """Where PID and its children wait (the kernel's wchan, each one's command line): what a hang leaves to read."""
    found = []
    for child in [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]:
        with contextlib.suppress(OSError):
            line = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            found.append(f"{child} waits in {Path(f'/proc/{child}/wchan').read_text()}: {line[:200]}")
    return "; ".join(found)


def read_until(controller: int, wanted: bytes, command: subprocess.Popen[bytes], deadline: float) -> bytes:
    """What the command wrote to its terminal up to WANTED; by the deadline, an AssertionError that says where it
    waits (a read with no end would leave the worker to pytest-timeout, which ends it with no word of why)."""
    said = b""
    while wanted not in said:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {wanted!r} after {said[-300:]!r}: {stuck(command.pid)}")
        if select.select([controller], [], [], min(left, 1.0))[0]:
            try:
                said += os.read(controller, 4096)
            except OSError:  # EIO: the command is gone
                raise AssertionError(f"the command ended ({command.wait()}) after {said[-300:]!r}") from None
    return said


@pytest.mark.parametrize("number", [signal.SIGHUP, signal.SIGTERM])
@pytest.mark.timeout(240)  # its setup starts and stops the cluster twice: slow on a loaded run, bounded below
def test_a_command_ended_by_a_dropped_session_stops_the_cluster_it_started(
    jitaku_factory: Any, shared_dir: Path, number: int
) -> None:
    """`jitaku user remove` waiting at its question, the cluster started for it, when the ssh session drops
    (SIGHUP) or someone kills it: it exits, and stops the cluster, which nothing else uses."""
    server, _port = managed(jitaku_factory, shared_dir)
    server.cli("init", "--database", "postgresql")
    server.add_user(READER)
    server.start()
    deliver(server, "held by the question")
    wait_until(lambda: imap_bodies(server) == [b"held by the question"], timeout=30)
    server.stop()
    assert postmaster(server) is None
    controller, terminal = os.openpty()
    command = subprocess.Popen(
        [*JITAKU, "user", "remove", READER, "--dir", str(server.dir)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    os.close(terminal)
    try:
        said = read_until(controller, b"Remove the user", command, deadline=time.monotonic() + 60)
        pid = postmaster(server)
        assert pid is not None and alive(pid)  # started for the command
        command.send_signal(number)
        try:
            code = command.wait(timeout=60)  # a fast shutdown, then an immediate one: 30 s at most, but loaded
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the command did not end after the signal: {stuck(command.pid)}") from None
        assert code == 128 + number
        with contextlib.suppress(OSError):  # EIO once the command is gone
            said += os.read(controller, 4096)
    finally:
        command.kill()
        os.close(controller)
    assert postmaster(server) is None and not alive(pid)
    assert b"Traceback" not in said and b"Exception ignored" not in said
