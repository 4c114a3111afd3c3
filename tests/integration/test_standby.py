"""A streaming-replication standby (`jitaku standby allow` on the primary, `jitaku standby setup` on the standby,
`jitaku ha status` on both): two data directories on one machine, each with its managed cluster on a port of its
own, replicating over loopback. Mail delivered to the primary is read on the standby; the standby's daemon
refuses mail and writes nothing, its web pages and `jitaku check` answer.

The tests run as root (CI does): the clusters run as `postgres`, hence shared_dir."""

from __future__ import annotations

import imaplib
import json
import os
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jitaku.ha.standby import replication_password, slot_name
from tests.integration.harness import READER, Jitaku, deliver
from tests.integration.test_logins import web_login
from tests.integration.test_managed_postgres import managed
from tests.peers import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user: needs root (CI is)")


@pytest.fixture(autouse=True)
def no_cluster_left(shared_dir: Path) -> Iterator[None]:
    """No PostgreSQL left running in a directory about to be removed, the replaced clusters' included."""
    yield
    pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
    for pid_file in shared_dir.glob("*/postgres*/postmaster.pid"):
        data = pid_file.parent
        subprocess.run([str(pg_ctl), "-D", str(data), "-m", "immediate", "stop"], user=data.stat().st_uid, check=False)


def status(server: Jitaku) -> dict[str, Any]:
    return dict(json.loads(server.cli("ha", "status", "--json").stdout))


def pair(jitaku_factory: Any, shared_dir: Path) -> tuple[Jitaku, int, Jitaku, Path]:
    """A primary with READER and a standby set up from it (both daemons stopped); the secret's copy."""
    primary, port = managed(jitaku_factory, shared_dir)
    primary.settings["hostname"] = "one.example.test"
    primary.write_config()
    primary.cli("init", "--database", "postgresql")
    primary.add_user(READER)
    allowed = primary.cli("standby", "allow", "127.0.0.1")
    secret = primary.dir / "ha" / "replication.secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    assert secret.read_text().strip() not in allowed.stdout + allowed.stderr
    assert str(secret) in allowed.stdout
    assert "[database] listen is loopback only" in allowed.stdout  # a standby on another box could not connect

    standby = jitaku_factory(name="standby", where=shared_dir)
    standby_port = managed_port(standby)
    standby.settings["hostname"] = "two.example.test"
    standby.write_config()
    standby.cli("init", "--database", "postgresql")
    copy = shared_dir / "secret-copy"
    copy.write_text(secret.read_text())
    copy.chmod(0o600)
    assert standby_port != port
    return primary, port, standby, copy


def _primary_query(primary: Jitaku, port: int, query: str) -> list[str]:
    import psycopg

    passfile = primary.dir / "postgres" / "jitaku.pgpass"
    url = f"postgresql://jitaku@127.0.0.1:{port}/jitaku"
    with psycopg.connect(url, passfile=str(passfile), connect_timeout=10, autocommit=True) as connection:
        return [str(row[0]) for row in connection.execute(query).fetchall()]


def _primary_setting(primary: Jitaku, port: int, name: str) -> str:
    return _primary_query(primary, port, f"SHOW {name}")[0]


def _primary_slots(primary: Jitaku, port: int) -> list[str]:
    return _primary_query(primary, port, "SELECT slot_name FROM pg_replication_slots ORDER BY 1")


def managed_port(server: Jitaku) -> int:
    from tests.peers import free_port

    port = free_port()
    server.settings["database"] = {"listen": [f"127.0.0.1:{port}"]}
    server.write_config()
    return port


def test_a_standby_replays_the_primarys_mail_and_serves_no_mail_itself(jitaku_factory: Any, shared_dir: Path) -> None:
    primary, port, standby, copy = pair(jitaku_factory, shared_dir)
    secret = copy.read_text().strip()
    again = primary.cli("standby", "allow", "127.0.0.1")
    assert "already allowed" in again.stdout
    primary.cli("standby", "allow", "::1")  # several standbys may be allowed
    lines = (primary.dir / "postgres" / "pg_hba.conf").read_text()
    assert lines.count("host replication replicator 127.0.0.1/32 scram-sha-256") == 1
    assert "host replication replicator ::1/128 scram-sha-256" in lines
    primary.start()
    unreachable = standby.cli("standby", "setup", "--primary", "127.0.0.1:1", "--secret-file", str(copy), check=False)
    assert unreachable.returncode == 1 and "Connection refused" in unreachable.stderr

    loose = shared_dir / "secret-loose"
    loose.write_text(secret)
    loose.chmod(0o644)
    refused = standby.cli(
        "standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(loose), check=False
    )
    assert refused.returncode == 1 and str(loose) in refused.stderr and len(refused.stderr.splitlines()) == 1

    wrong = shared_dir / "secret-wrong"
    wrong.write_text("not-the-secret\n")
    wrong.chmod(0o600)
    failed = standby.cli("standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(wrong), check=False)
    assert failed.returncode == 1, failed.stdout
    assert len(failed.stderr.splitlines()) == 1 and "password authentication failed" in failed.stderr
    assert standby.cli("user", "list").returncode == 0  # its own cluster, started again by the command
    assert not (standby.dir / "postgres.part").exists() and not list(standby.dir.glob("postgres.replaced-*"))

    # the allow line is what lets the standby in: without it (and with initdb's own replication lines gone from
    # the cluster jitaku made), the right secret is refused by pg_hba.conf
    hba = primary.dir / "postgres" / "pg_hba.conf"
    allowed = hba.read_text()
    assert "replication all" not in " ".join(allowed.split())
    hba.write_text(allowed.replace("host replication replicator 127.0.0.1/32 scram-sha-256\n", ""))
    _primary_query(primary, port, "SELECT pg_reload_conf()")
    setup = ("standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(copy), "--name", "two")
    unlisted = standby.cli(*setup, check=False)
    assert unlisted.returncode == 1 and "no pg_hba.conf entry for replication connection" in unlisted.stderr
    hba.write_text(allowed)
    _primary_query(primary, port, "SELECT pg_reload_conf()")

    set_up = standby.cli(*setup)
    assert "streaming" in set_up.stdout and secret not in set_up.stdout + set_up.stderr
    assert f"delete {copy}" in set_up.stdout
    auto = (standby.dir / "postgres" / "postgresql.auto.conf").read_text()
    assert "passfile=" in auto and secret not in auto and "application_name=two" in auto
    # the password file, readable by the cluster's user and in every base backup, holds a password derived from
    # the secret (which seals the pair's secret files), never the secret
    passfile = (standby.dir / "postgres" / "replication.pgpass").read_text()
    assert secret not in passfile and passfile.endswith(":replicator:" + replication_password(secret) + "\n")
    kept = standby.dir / "ha" / "replication.secret"
    assert kept.stat().st_mode & 0o777 == 0o600 and kept.read_text().strip() == secret
    assert len(list(standby.dir.glob("postgres.replaced-*"))) == 1
    assert _primary_setting(primary, port, "max_slot_wal_keep_size") == "8GB"

    # a slot named as this box is by default (its hostname's) is there: without --name or --replace, a setup
    # leaves it alone (it may be another standby's), and changes nothing here
    mine = slot_name(None)
    _primary_query(primary, port, f"SELECT 1 FROM pg_create_physical_replication_slot('{mine}')")
    taken = standby.cli("standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(copy), check=False)
    assert taken.returncode == 1 and "--replace" in taken.stderr and len(taken.stderr.splitlines()) == 1
    assert _primary_slots(primary, port) == sorted([mine, "two"])
    assert "application_name=two" in (standby.dir / "postgres" / "postgresql.auto.conf").read_text()
    _primary_query(primary, port, f"SELECT 1 FROM pg_drop_replication_slot('{mine}')")
    # run again with the name: the old slot dropped, a new one made; only the newest moved-aside cluster kept
    again = standby.cli(*setup)
    assert "removed an older moved-aside cluster" in again.stdout
    assert len(list(standby.dir.glob("postgres.replaced-*"))) == 1
    assert _primary_slots(primary, port) == ["two"]
    on_standby = standby.cli("standby", "allow", "127.0.0.2", check=False)
    assert on_standby.returncode == 1 and "this box is a standby" in on_standby.stderr

    standby.start()
    deliver(primary, "written on the primary")
    wait_until(lambda: len(standby.mailbox(READER)) == 1, timeout=20)
    ps = subprocess.run(["ps", "axww", "-o", "args"], capture_output=True, text=True).stdout
    assert secret not in ps

    with socket.create_connection(("127.0.0.1", standby.smtp_port), timeout=10) as smtp:
        assert smtp.makefile("rb").readline().startswith(b"421 4.3.2 "), standby.log()[-3000:]
    with urllib.request.urlopen(f"http://127.0.0.1:{standby.web_port}/admin/status.json", timeout=10) as page:
        assert page.status == 200 and READER in page.read().decode()
    post = urllib.request.Request(f"http://127.0.0.1:{standby.web_port}/admin/users", data=b"x=1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as written:
        urllib.request.urlopen(post, timeout=10)
    assert written.value.code == 503
    # the POSTs that write nothing pass: the admin's login (failures counted in memory), the buddy's probe
    assert web_login(standby, READER, "wrong") == 401
    assert web_login(standby, READER, "secret-password") == 303  # the first user, an admin, logs in there
    probe = urllib.request.Request(f"http://127.0.0.1:{standby.web_port}/api/buddy/probe", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as probed:
        urllib.request.urlopen(probe, timeout=10)
    assert probed.value.code == 401
    with socket.create_connection(("127.0.0.1", standby.pop3_port), timeout=10) as pop3:
        assert pop3.makefile("rb").readline().startswith(b"-ERR [SYS/TEMP] two.example.test is a standby")
    with pytest.raises(imaplib.IMAP4.error, match=r"BYE \[UNAVAILABLE\] two.example.test is a standby"):
        imaplib.IMAP4("127.0.0.1", standby.imap_port)

    checked = standby.cli("check", "--json", check=False)
    results = {result["check"]: result for result in json.loads(checked.stdout)}
    assert checked.returncode == 0, checked.stdout
    assert "streaming" in results["replication"]["sentence"]

    wait_until(lambda: status(primary)["lag_bytes"] == 0 and status(standby)["lag_bytes"] == 0, timeout=30)
    ours, theirs = status(primary), status(standby)
    assert (ours["role"], theirs["role"]) == ("primary", "standby")
    assert ours["sync_state"] in ("async", "sync") and ours["peer"] == "two"
    assert theirs["sync_state"] == "streaming" and theirs["peer"] == f"127.0.0.1:{port}"
    assert theirs["timeline"] == ours["timeline"] == 1 and theirs["holds_address"] is None
    assert secret not in standby.log() + primary.log()
    assert standby.cli("ha", "status").stdout.splitlines()[:3] == [
        "role           standby",
        f"peer           127.0.0.1:{port}",
        "sync state     streaming",
    ]

    # the daemon's health monitor keeps its results in a file of its own, not in the read-only database
    health = standby.dir / "ha" / "health.json"
    wait_until(lambda: health.exists() and "replication" in json.loads(health.read_text())["results"], timeout=20)
    # and its dashboard shows them, not the primary's (replayed into its database)
    with urllib.request.urlopen(f"http://127.0.0.1:{standby.web_port}/api/health", timeout=10) as page:
        shown = {check["check"]: check for check in json.loads(page.read())["checks"]}
    assert "streaming from" in shown["replication"]["sentence"], shown
    again = standby.cli("standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(copy), check=False)
    assert (
        again.returncode == 1 and again.stderr == f"jitaku: jitaku serve is running on {standby.dir}: stop it first\n"
    )
    # nothing on the standby tried to write to the read-only database
    assert "monitor_error" not in standby.log() and "read-only transaction" not in standby.log()
