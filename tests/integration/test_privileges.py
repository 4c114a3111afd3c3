"""Running for real (issue 18): a root start with `[run] user` binds every listener, ports below 1024
included, then no jitaku process is root; commands run as root on the service's data directory become its
owner; `jitaku smart collect` reads SMART as root for a daemon that is not.

Root only (CI runs as root): the daemon drops to `nobody`, whose data directory lives in `shared_dir`
(pytest's tmp_path is root's alone) and who must read Python (`readable_install`).
"""

from __future__ import annotations

import imaplib
import json
import os
import poplib
import pwd
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from jitaku.health.services import reading_context
from tests.integration.harness import JITAKU, Jitaku, RawSession, root_owned
from tests.peers import swaks, wait_until
from tests.postgres import sqlite_only

FIXTURES = Path(__file__).parent.parent / "fixtures"
NOBODY = pwd.getpwnam("nobody")
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="dropping root needs root (CI runs as root)")
pytestmark = ROOT_ONLY

# Every listener on its own port below 1024 (the network namespace has them all free).
PRIVILEGED = {
    "smtp": 25,
    "submission": 587,
    "submissions": 465,
    "imap": 143,
    "imaps": 993,
    "pop3": 110,
    "pop3s": 995,
    "web": 80,
}


def credentials(pid: int) -> dict[str, list[int]]:
    """The Uid, Gid (real, effective, saved, filesystem) and Groups lines of /proc/PID/status."""
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {
        key: [int(value) for value in rest.split()]
        for key, _, rest in (line.partition(":") for line in lines)
        if key in ("Uid", "Gid", "Groups")
    }


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def refused(server: Jitaku, **run_as: Any) -> subprocess.CompletedProcess[str]:
    """`jitaku serve` on SERVER's directory, expected to refuse (as root, or as RUN_AS: user, group)."""
    return subprocess.run(
        [*JITAKU, "serve", "--dir", str(server.dir)], capture_output=True, text=True, timeout=60, **run_as
    )


def test_a_root_start_with_run_user_leaves_no_process_root_and_serves_every_listener(
    network_namespace: Any, readable_install: None, dns_zone: Any, jitaku_factory: Any, shared_dir: Path
) -> None:
    server: Jitaku = jitaku_factory(dns_zone[1], where=shared_dir)
    for section, port in PRIVILEGED.items():
        server.settings[section] = {"listen": [f"127.0.0.1:{port}"]}
    server.settings["smtp"]["workers"] = 2
    server.init("alice@example.test")
    server.run_as("nobody")
    server.add_user("bob@example.test")  # as root, before the daemon ever ran on it: the command becomes nobody
    assert root_owned(server.dir) == []
    server.start()
    assert server.process is not None
    main = server.process.pid
    (worker,) = wait_until(lambda: children(main), timeout=10)
    for pid in (main, worker):
        said = credentials(pid)
        assert said["Uid"] == [NOBODY.pw_uid] * 4 and said["Gid"] == [NOBODY.pw_gid] * 4, (pid, said)
        assert 0 not in said["Groups"], (pid, said)

    for port in (25, 587):
        with RawSession(port) as session:
            assert session.greeting.startswith(b"220 mail.example.test"), port
    with smtplib.SMTP_SSL("127.0.0.1", 465, context=reading_context(), timeout=10) as submissions:
        assert submissions.noop()[0] == 250
    assert imaplib.IMAP4("127.0.0.1", 143, timeout=10).welcome.startswith(b"* OK")
    assert imaplib.IMAP4_SSL("127.0.0.1", 993, ssl_context=reading_context(), timeout=10).welcome.startswith(b"* OK")
    assert poplib.POP3("127.0.0.1", 110, timeout=10).getwelcome().startswith(b"+OK")
    assert poplib.POP3_SSL("127.0.0.1", 995, context=reading_context(), timeout=10).getwelcome().startswith(b"+OK")
    assert httpx.get("http://127.0.0.1:80/", timeout=10).status_code == 200

    sent = swaks("--server", "127.0.0.1:25", "--to", "bob@example.test", "--from", "carol@example.org")
    assert sent.returncode == 0, sent.stdout
    wait_until(lambda: server.mailbox("bob@example.test"), timeout=10)  # the database is nobody's, and written

    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=15) == 0, server.log()
    server.process = None
    assert root_owned(server.dir) == []


def test_commands_run_as_root_on_another_users_data_dir_become_that_user(
    readable_install: None, jitaku_factory: Any, shared_dir: Path
) -> None:
    server: Jitaku = jitaku_factory(where=shared_dir)
    server.init()
    server.run_as("nobody")
    for made in [*(server.dir / "dkim").iterdir(), server.dir / "tls" / "cert.pem", server.dir / "tls" / "key.pem"]:
        made.unlink()  # for init to make again, as root, in nobody's directory
    server.cli("init")
    server.add_user("alice@example.test")
    server.cli("alias", "add", "info@example.test", "alice@example.test")
    assert sorted(path.name for path in (server.dir / "dkim").iterdir())  # made again
    assert root_owned(server.dir) == []


def test_started_as_run_user_already_it_just_runs(
    readable_install: None, jitaku_factory: Any, shared_dir: Path
) -> None:
    """As systemd starts it with `User=` (and `AmbientCapabilities=CAP_NET_BIND_SERVICE` for low ports)."""
    server: Jitaku = jitaku_factory(where=shared_dir)
    server.init("alice@example.test")
    server.run_as("nobody")
    server.start(user="nobody")
    sent = swaks("--server", f"127.0.0.1:{server.smtp_port}", "--to", "alice@example.test", "--from", "c@example.org")
    assert sent.returncode == 0, sent.stdout
    wait_until(lambda: server.mailbox("alice@example.test"), timeout=10)
    server.stop()
    assert root_owned(server.dir) == []


def test_a_user_who_may_not_read_the_services_dir_is_told_so_in_one_line(
    readable_install: None, jitaku_factory: Any, shared_dir: Path
) -> None:
    """Without --dir, where the service's directory is found but cannot be looked into (0700, nobody's)."""
    server: Jitaku = jitaku_factory(where=shared_dir)
    server.init()
    server.run_as("nobody")
    found_there = (
        "import pathlib, jitaku.data_dir, jitaku.cli;"
        f" jitaku.data_dir.SERVICE_DIR = pathlib.Path({str(server.dir)!r}); jitaku.cli.main()"
    )
    result = subprocess.run(
        [sys.executable, "-c", found_there, "init"],
        cwd=shared_dir,  # no ./jitaku-data here
        capture_output=True,
        text=True,
        timeout=60,
        user="daemon",
        group="daemon",
        extra_groups=[],
    )
    assert (result.returncode, result.stderr) == (1, f"jitaku: {server.dir / 'jitaku.toml'}: Permission denied\n")


def test_serve_refuses_a_run_user_that_does_not_exist(jitaku_factory: Any) -> None:
    server: Jitaku = jitaku_factory()
    server.init()
    server.settings["run"] = {"user": "jitaku-nobody-has"}
    server.write_config()
    result = refused(server)
    assert (result.returncode, result.stderr) == (
        1,
        "jitaku: [run] user: there is no user 'jitaku-nobody-has' on this system; create it"
        " (useradd --system --no-create-home --shell /usr/sbin/nologin jitaku-nobody-has) or change [run] user\n",
    )
    assert not (server.dir / "serve.lock").exists() and not (server.dir / "ports.json").exists()


def test_serve_refuses_to_start_as_a_user_that_is_neither_root_nor_run_user(
    readable_install: None, jitaku_factory: Any, shared_dir: Path
) -> None:
    server: Jitaku = jitaku_factory(where=shared_dir)
    server.init()
    server.run_as("nobody")
    server.settings["run"] = {"user": "daemon"}
    server.write_config()
    result = refused(server, user="nobody", group="nogroup", extra_groups=[])
    assert (result.returncode, result.stderr) == (
        1,
        "jitaku: [run] user is daemon, but this runs as nobody: start it as root (it binds its ports, then becomes"
        " daemon) or as daemon\n",
    )
    assert not (server.dir / "serve.lock").exists() and not (server.dir / "ports.json").exists()


@pytest.mark.parametrize(
    "whose", ["directory", pytest.param("database", marks=sqlite_only("jitaku.db is the data directory's file"))]
)
def test_serve_refuses_a_data_dir_that_is_not_all_run_users(jitaku_factory: Any, whose: str) -> None:
    server: Jitaku = jitaku_factory()
    server.init()
    if whose == "database":
        server.run_as("nobody")
        os.chown(server.dir / "jitaku.db", 0, 0)  # `sqlite3 jitaku.db` run as root once
    else:
        server.settings["run"] = {"user": "nobody"}
        server.write_config()
    result = refused(server)
    root_s = server.dir / "jitaku.db" if whose == "database" else server.dir
    assert (result.returncode, result.stderr) == (
        1,
        f"jitaku: {root_s} belongs to root, not to nobody ([run] user); run: chown -R nobody: {server.dir}\n",
    )
    assert not (server.dir / "ports.json").exists()


def test_a_command_refuses_a_data_dir_of_a_uid_no_user_has(jitaku_factory: Any) -> None:
    server: Jitaku = jitaku_factory()
    server.init()
    uid = next(uid for uid in range(40000, 50000) if not any(user.pw_uid == uid for user in pwd.getpwall()))
    os.chown(server.dir, uid, uid)
    result = server.cli("user", "list", check=False)
    assert (result.returncode, result.stderr) == (
        1,
        f"jitaku: {server.dir} belongs to uid {uid}, which no user on this system has; give it to the user jitaku"
        f" runs as: chown -R USER: {server.dir}\n",
    )


def test_smart_collect_as_root_feeds_the_checks_of_a_daemon_that_is_not_root(
    readable_install: None, jitaku_factory: Any, shared_dir: Path
) -> None:
    server: Jitaku = jitaku_factory(where=shared_dir)
    devices = shared_dir / "devices.json"
    devices.write_text(json.dumps({"/dev/sda": "healthy", "/dev/sdb": "old"}))
    smartctl = shared_dir / "smartctl"
    smartctl.write_text(
        f'#!/bin/sh\nexec {sys.executable} {FIXTURES / "smartctl" / "fake_smartctl.py"} {devices} "$@"\n'
    )
    smartctl.chmod(0o700)  # root's alone: the collector runs it, the daemon never does
    server.settings["health"] = {"smart": {"smartctl": str(smartctl)}}
    server.init()
    server.run_as("nobody")

    def check() -> dict[str, dict[str, Any]]:  # run as root, it becomes nobody, as the daemon is
        said = server.cli("check", "smart", "diskage", "--json", check=False)
        return {result["check"]: result for result in json.loads(said.stdout)}

    for name, result in check().items():  # nothing collected yet
        assert result == {
            "check": name,
            "state": "ok",
            "sentence": "not watching: SMART is read by `jitaku smart collect` run as root, which has not written"
            " smart.json yet (`jitaku init --service` installs its timer, jitaku-smart.timer).",
            "metrics": {"watching": False},
        }

    collected = server.cli("smart", "collect")
    readings = server.dir / "smart.json"
    assert collected.stdout == f"wrote {readings}: 2 disks (sda, sdb)\n"
    owned = readings.stat()
    assert (owned.st_uid, owned.st_gid, owned.st_mode & 0o777) == (NOBODY.pw_uid, NOBODY.pw_gid, 0o640)
    fresh = check()
    assert (fresh["smart"]["state"], fresh["smart"]["sentence"]) == (
        "ok",
        "every disk passes SMART: sda at 34 °C, sdb at 36 °C.",
    )
    assert fresh["diskage"]["state"] == "warning" and fresh["diskage"]["sentence"].startswith(
        "sdb (ST2000DM008-2FR102 serial ZFL0AB12) has run 17,100 hours"
    )

    taken = json.loads(readings.read_text())
    readings.write_text(json.dumps({**taken, "taken": time.time() - 3 * 3600 - 60}))  # the timer stopped
    stale = check()["smart"]
    assert (stale["state"], stale["sentence"]) == (
        "warning",
        "the last SMART readings are 3 hours old: is jitaku-smart.timer running? (systemctl status"
        " jitaku-smart.timer); they said: every disk passes SMART: sda at 34 °C, sdb at 36 °C.",
    )
    assert root_owned(server.dir) == []
