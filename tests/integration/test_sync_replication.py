"""Replication synchronous while the standby keeps up, asynchronous when it is gone (jitaku.ha.sync, issue 24
point 7): a message's 250 waits for the standby's flush, so it is on both machines; a standby stopped or hung
makes the primary wait `[ha] sync_timeout` seconds, then accept again and say RPO is no longer 0; back, it is
synchronous again.

The primary is a data dir made by `jitaku init --database postgresql`; the standby, a cluster the test makes
itself with pg_basebackup -R -C -S over loopback (as `jitaku standby setup` will), with application_name the
slot's name. Root runs the tests (CI does); the clusters run as `postgres`, hence shared_dir."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import smtplib
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import READER, Jitaku
from tests.integration.test_managed_postgres import managed
from tests.peers import free_port, wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user: needs root (CI is)")

NAME = "standby1"
SYNC_TIMEOUT = 3
# with its group: the data dir lets postgres's group, not root's, through to DIR/postgres
AS_POSTGRES: dict[str, Any] = {"user": "postgres", "group": "postgres", "extra_groups": []}
BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]


class Standby:
    """A streaming replica of SERVER's cluster in DIRECTORY, on a port of its own."""

    def __init__(self, server: Jitaku, directory: Path, primary_port: int) -> None:
        self.dir = directory
        directory.mkdir(mode=0o700)
        shutil.chown(directory, "postgres", "postgres")
        self.port = free_port()
        passfile = server.dir / "postgres" / "jitaku.pgpass"
        conninfo = f"host=127.0.0.1 port={primary_port} user=jitaku passfile={passfile}"
        self._run(
            "pg_basebackup",
            "-D",
            str(directory),
            "-R",
            "-C",
            "-S",
            NAME,
            "-X",
            "stream",
            "-c",
            "fast",
            "-w",
            "-d",
            conninfo,
        )
        with open(directory / "postgresql.auto.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nunix_socket_directories = ''\nlisten_addresses = '127.0.0.1'\n"
                f"primary_conninfo = '{conninfo} application_name={NAME}'\n"
            )

    def _run(self, program: str, *args: str) -> None:
        result = subprocess.run([str(BIN / program), *args], capture_output=True, text=True, timeout=60, **AS_POSTGRES)
        assert result.returncode == 0, result.stderr

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-l", str(self.dir / "standby.log"), "-w", "start")

    def stop_immediately(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir), "-m", "immediate", "-w", "stop")

    def processes(self) -> list[int]:
        """The postmaster and every process it started (the WAL receiver among them)."""
        postmaster = int((self.dir / "postmaster.pid").read_text().split("\n", 1)[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
            except (OSError, IndexError, ValueError):
                continue
        return [postmaster, *children]

    def signal(self, signum: int) -> None:
        for pid in self.processes():
            os.kill(pid, signum)

    def query(self, sql: str, *args: Any) -> Any:
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="jitaku", dbname="jitaku", passfile=str(self.passfile)
        ) as connection:
            return connection.execute(sql, args).fetchone()

    @property
    def passfile(self) -> Path:
        return self.dir / "jitaku.pgpass"  # the primary's, copied with its cluster


@pytest.fixture
def pair(jitaku_factory: Any, shared_dir: Path) -> Iterator[tuple[Jitaku, Standby, int]]:
    yield from _pair(jitaku_factory, shared_dir, {})


@pytest.fixture
def automatic_pair(jitaku_factory: Any, shared_dir: Path) -> Iterator[tuple[Jitaku, Standby, int]]:
    """The pair with automatic failover on, and a witness that cannot be asked (nothing listens there)."""
    automatic = {
        "auto_after": 60,
        "witness": f"http://127.0.0.1:{free_port()}",
        "witness_token": "0123456789abcdef",
        "witness_targets": ["127.0.0.1:25"],
    }
    yield from _pair(jitaku_factory, shared_dir, automatic)


def _pair(jitaku_factory: Any, shared_dir: Path, ha: dict[str, Any]) -> Iterator[tuple[Jitaku, Standby, int]]:
    server, port = managed(jitaku_factory, shared_dir)
    server.settings["ha"] = {"sync_timeout": SYNC_TIMEOUT, **ha}
    server.write_config()
    server.cli("init", "--database", "postgresql")
    server.add_user(READER)
    hba = server.dir / "postgres" / "pg_hba.conf"
    with open(hba, "a") as lines:  # outside jitaku's block, which each start rewrites
        lines.write("# the test's standby\nhost replication jitaku 127.0.0.1/32 scram-sha-256\n")
    server.start()
    standby = Standby(server, shared_dir / "standby", port)
    standby.start()
    try:
        yield server, standby, port
    finally:
        # the standby first: the daemon's last commits, waiting for it, are let go by the daemon itself
        _stop_cluster(standby.dir)
        server.stop()
        _stop_cluster(server.dir / "postgres")  # left by a daemon that did not stop


def _stop_cluster(data: Path) -> None:
    if (data / "postmaster.pid").exists():
        subprocess.run([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], check=False, **AS_POSTGRES)


def primary(server: Jitaku, port: int, sql: str, *args: Any) -> Any:
    import psycopg

    passfile = server.dir / "postgres" / "jitaku.pgpass"
    url = f"postgresql://jitaku@127.0.0.1:{port}/jitaku"
    with psycopg.connect(url, passfile=str(passfile), connect_timeout=10, autocommit=True) as connection:
        cursor = connection.execute(sql, args)
        return cursor.fetchone() if cursor.description else None


def synchronous(server: Jitaku, port: int) -> bool:
    names = primary(server, port, "SHOW synchronous_standby_names")[0]
    state = primary(server, port, "SELECT sync_state FROM pg_stat_replication WHERE application_name = %s", NAME)
    return names == f'FIRST 1 ("{NAME}")' and state == ("sync",)


def replication_check(server: Jitaku) -> dict[str, Any]:
    result = server.cli("check", "replication", "--json", check=False)
    assert result.returncode in (0, 1, 2), result.stderr
    [found] = json.loads(result.stdout)
    return dict(found)


def send(server: Jitaku, body: str) -> float:
    """BODY to alice through the MX; the seconds until its 250."""
    started = time.monotonic()
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=120) as smtp:
        refused = smtp.sendmail("x@x.test", [READER], f"Subject: {body}\r\n\r\n{body}\r\n")
    assert refused == {}
    return time.monotonic() - started


def on_standby(standby: Standby, body: str) -> bool:
    found = standby.query("SELECT count(*) FROM messages WHERE position(%s in body) > 0", body.encode())
    return bool(found[0])


def alerts(server: Jitaku, port: int, check: str = "replication") -> list[tuple[str, str]]:
    import psycopg

    passfile = server.dir / "postgres" / "jitaku.pgpass"
    url = f"postgresql://jitaku@127.0.0.1:{port}/jitaku"
    with psycopg.connect(url, passfile=str(passfile), connect_timeout=10) as connection:
        rows = connection.execute(
            "SELECT kind, body FROM health_alerts WHERE check_name = %s ORDER BY at", (check,)
        ).fetchall()
    return [(str(kind), str(body)) for kind, body in rows]


def _replayed(standby: Standby, position: str) -> bool:
    return bool(standby.query("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", position)[0])


def _said_unreachable(server: Jitaku) -> dict[str, Any] | None:
    said = replication_check(server)
    return said if said["sentence"].startswith(f"standby {NAME} unreachable for ") else None


def test_a_caught_up_standby_is_made_synchronous_and_a_250_means_the_message_is_on_it(
    pair: tuple[Jitaku, Standby, int],
) -> None:
    server, standby, port = pair
    wait_until(lambda: synchronous(server, port), timeout=60)
    said = replication_check(server)
    assert said["state"] == "ok" and f"replication to {NAME} is synchronous" in said["sentence"], said

    for number in range(5):
        body = f"on both machines {number}"
        send(server, body)
        # What the standby had flushed the moment the 250 came: the message must be in it (replayed a moment
        # later, for a query to see it; nothing more can arrive that the 250 waited for).
        received = standby.query("SELECT pg_last_wal_receive_lsn()::text")[0]
        wait_until(functools.partial(_replayed, standby, received), timeout=10)
        assert on_standby(standby, body)


def test_the_primary_waits_for_a_silent_standby_only_sync_timeout_then_alerts_and_resynchronises(
    pair: tuple[Jitaku, Standby, int],
) -> None:
    server, standby, port = pair
    wait_until(lambda: synchronous(server, port), timeout=60)

    # A hung standby (its connection open, nothing answered): the commit waits for it, then no longer
    standby.signal(signal.SIGSTOP)
    try:
        waited = send(server, "while the standby hangs")
        assert SYNC_TIMEOUT - 1 <= waited <= SYNC_TIMEOUT + 30, waited
        assert primary(server, port, "SHOW synchronous_standby_names") == ("",)
        # the daemon's result, once recorded, tells `jitaku check` since when
        said = wait_until(lambda: _said_unreachable(server), timeout=30)
        assert said["state"] == "critical", said
        assert "replication is asynchronous, writes since then exist only here (RPO > 0)" in said["sentence"]
        assert send(server, "asynchronous, so at once") < SYNC_TIMEOUT + 30
    finally:
        standby.signal(signal.SIGCONT)
    wait_until(lambda: synchronous(server, port), timeout=60)
    assert replication_check(server)["state"] == "ok"
    wait_until(lambda: on_standby(standby, "asynchronous, so at once"), timeout=30)  # it caught up first

    # A standby stopped: the same, and the health monitor alerts, then says it is over
    standby.stop_immediately()
    waited = send(server, "while the standby is down")
    assert waited <= SYNC_TIMEOUT + 30, waited
    said = replication_check(server)
    assert said["state"] == "critical" and "(RPO > 0)" in said["sentence"], said
    wait_until(lambda: any(kind == "problem" and "RPO > 0" in body for kind, body in alerts(server, port)), timeout=30)
    standby.start()
    wait_until(lambda: synchronous(server, port), timeout=60)
    said = replication_check(server)
    assert said["state"] == "ok" and "RPO 0" in said["sentence"], said
    wait_until(lambda: alerts(server, port)[-1][0] == "recovery", timeout=30)
    assert on_standby(standby, "while the standby is down")

    # Both going down, the standby first: the daemon's last commits wait for it no longer than sync_timeout
    standby.stop_immediately()
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=SYNC_TIMEOUT + 30) == 0


def test_with_automatic_failover_a_primary_the_witness_cannot_see_keeps_waiting_for_its_standby(
    automatic_pair: tuple[Jitaku, Standby, int],
) -> None:
    """Its standby may be promoting itself: a 250 now would be a message the new primary lacks."""
    server, standby, port = automatic_pair
    wait_until(lambda: synchronous(server, port), timeout=60)
    standby.stop_immediately()
    with ThreadPoolExecutor(1) as pool:
        sent = pool.submit(send, server, "while cut off from both")
        wait_until(lambda: "event=replication_held" in server.log(), timeout=SYNC_TIMEOUT + 30)
        assert not sent.done()
        assert primary(server, port, "SHOW synchronous_standby_names") == (f'FIRST 1 ("{NAME}")',)
        standby.start()
        sent.result(timeout=60)
    assert on_standby(standby, "while cut off from both")
    # alerted once, and over (recorded once commits go through again)
    wait_until(lambda: [kind for kind, _ in alerts(server, port, "ha")] == ["problem", "recovery"], timeout=30)
    [(_, held), (_, over)] = alerts(server, port, "ha")
    assert held.startswith("this primary cannot see its standby standby1 (silent for "), held
    assert "it keeps replication synchronous, and mail waits, since the standby may promote itself" in held, held
    assert over.startswith("standby standby1 keeps up again"), over
    server.stop()  # before the standby, which the fixture stops first: its last commits would wait for it
    said = server.log()
    assert "event=replication_asynchronous" not in said and "Traceback" not in said


def test_without_a_standby_the_check_is_not_watching_and_no_commit_waits_for_one(
    jitaku_factory: Any, shared_dir: Path
) -> None:
    server, port = managed(jitaku_factory, shared_dir)
    server.settings["ha"] = {"sync_timeout": 600}
    server.write_config()
    server.cli("init", "--database", "postgresql")  # the check's own run starts the cluster, and stops it after
    said = replication_check(server)
    assert said["state"] == "ok" and said["metrics"]["watching"] is False, said
    assert "no standby is set up" in said["sentence"]

    # A standby named with no slot here (what a promoted standby's base backup brings along): let go at once,
    # not after sync_timeout
    server.add_user(READER)
    server.start()
    try:
        primary(server, port, """ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 ("gone")'""")
        primary(server, port, "SELECT pg_reload_conf()")
        assert send(server, "nobody to wait for") < 60
        assert primary(server, port, "SHOW synchronous_standby_names") == ("",)
    finally:
        server.stop()


def test_a_standby_made_by_jitaku_standby_setup_is_made_synchronous_and_let_go_when_it_stops(
    jitaku_factory: Any, shared_dir: Path
) -> None:
    """The product's own path: `standby allow`, `standby setup`, both daemons; the standby's daemon stopped
    (its cluster with it) and started again."""
    from tests.integration.test_standby import pair as standby_pair

    server, port, standby, copy = standby_pair(jitaku_factory, shared_dir)
    with open(server.dir / "jitaku.toml", "a") as config:  # not write_config: it would drop what init added
        config.write(f"\n[ha]\nsync_timeout = {SYNC_TIMEOUT}\n")
    server.start()
    try:
        standby.cli("standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(copy), "--name", "two")
        standby.start()
        wait_until(lambda: primary(server, port, "SHOW synchronous_standby_names") == ('FIRST 1 ("two")',), timeout=60)
        said = replication_check(server)
        assert said["state"] == "ok" and "replication to two is synchronous" in said["sentence"], said

        standby.stop()
        assert send(server, "the standby's daemon stopped") <= SYNC_TIMEOUT + 30
        said = wait_until(lambda: _state(server, "critical"), timeout=30)
        assert said["sentence"].startswith("standby two unreachable for ") and "(RPO > 0)" in said["sentence"]

        standby.start()
        wait_until(lambda: primary(server, port, "SHOW synchronous_standby_names") == ('FIRST 1 ("two")',), timeout=60)
        wait_until(lambda: _state(server, "ok"), timeout=30)
        wait_until(lambda: len(standby.mailbox(READER)) == 1, timeout=30)
    finally:
        standby.stop()
        server.stop()


def _state(server: Jitaku, state: str) -> dict[str, Any] | None:
    said = replication_check(server)
    return said if said["state"] == state else None
