"""The daemon's part in a failover (issue 24): a standby whose cluster is promoted takes mail without a restart of
its process; a fenced box (DIR/ha/fenced) serves no mail and says why, across restarts; a primary fenced by its
peer stops serving as one at once; a primary fenced for a switchover re-joins the new primary as its standby by
itself; an old primary that starts after a failover finds the newer primary and fences itself.

The pair is two data directories on this machine, each with its managed cluster on a loopback port of its own
(tests/integration/test_standby.py's pair())."""

from __future__ import annotations

import imaplib
import json
import os
import re
import shlex
import smtplib
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from jitaku.ha import peer
from jitaku.ha.standby import slot_name
from tests.integration.harness import READER, Jitaku, deliver
from tests.integration.test_standby import no_cluster_left, pair, status  # noqa: F401 - a fixture, used by name
from tests.peers import wait_until

FENCED = "is fenced: the other box of the pair is the primary"


def greeting(port: int) -> bytes:
    """The listener's first line; none (b"") while the daemon changes modes and leaves the connection waiting
    in the listener's backlog for longer than a client would."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            return connection.makefile("rb").readline()
    except OSError:
        return b""


def started(server: Jitaku) -> list[dict[str, str]]:
    """The `started` events of the daemon's main process, in order, as {key: value}."""
    found = []
    for line in server.log().splitlines():
        if " event=started " in line:
            fields = dict(part.split("=", 1) for part in shlex.split(line.split(" INFO ", 1)[1]) if "=" in part)
            if fields.get("role") == "main":
                found.append(fields)
    return found


def health_page(server: Jitaku) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{server.web_port}/api/health", timeout=10) as page:
        return str(page.read().decode())


def accepts_mail(server: Jitaku) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
            refused = smtp.sendmail("x@x.test", [READER], b"Subject: after\r\n\r\nwritten after the promotion\r\n")
    except (smtplib.SMTPException, OSError):
        return False
    return refused == {}


def fence_file(server: Jitaku) -> Path:
    return server.dir / "ha" / "fenced"


def write_secret(server: Jitaku, secret: str = "a-test-secret-of-the-pair") -> str:
    (server.dir / "ha").mkdir(mode=0o700, exist_ok=True)
    path = server.dir / "ha" / "replication.secret"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def test_a_fenced_box_serves_no_mail_says_why_and_stays_fenced(jitaku_factory: Any) -> None:
    server = jitaku_factory()
    server.init(READER)
    (server.dir / "ha").mkdir(mode=0o700, exist_ok=True)
    fence_file(server).write_text(json.dumps({"purpose": "failover", "by": "http://192.0.2.1:8080", "at": 1.0}))
    server.start()
    wait_until(lambda: bool(started(server)), timeout=30)
    assert greeting(server.smtp_port) == b"421 4.3.2 mail.example.test " + FENCED.encode() + b"\r\n"
    assert greeting(server.pop3_port).startswith(b"-ERR [SYS/TEMP] mail.example.test " + FENCED.encode())
    with pytest.raises(imaplib.IMAP4.error, match=r"BYE \[UNAVAILABLE\] mail.example.test is fenced"):
        imaplib.IMAP4("127.0.0.1", server.imap_port)
    post = urllib.request.Request(f"http://127.0.0.1:{server.web_port}/admin/users", data=b"x=1", method="POST")
    with pytest.raises(urllib.error.HTTPError) as written:
        urllib.request.urlopen(post, timeout=10)
    assert written.value.code == 503  # read-only, as a standby's
    assert json.loads(server.cli("ha", "status", "--json").stdout)["fenced"] is True
    refused = server.cli("alias", "add", "sales@example.test", READER, check=False)
    assert refused.returncode == 1, refused.stderr
    assert refused.stderr == (
        "jitaku: this box's database is read-only: it is a standby, or fenced (`jitaku ha status` says which); "
        "run this on the primary\n"
    )

    # a damaged fence still fences (fail safe), across a restart
    fence_file(server).write_text("{half a fen")
    server.restart()
    wait_until(lambda: len(started(server)) == 2, timeout=30)
    assert FENCED.encode() in greeting(server.smtp_port)
    assert started(server)[-1]["mode"] == "fenced"

    fence_file(server).unlink()
    server.restart()
    wait_until(lambda: len(started(server)) == 3, timeout=30)
    assert greeting(server.smtp_port).startswith(b"220 ")
    assert json.loads(server.cli("ha", "status", "--json").stdout)["fenced"] is False
    server.cli("alias", "add", "sales@example.test", READER)
    assert "sales@example.test" in server.cli("alias", "list").stdout


def test_a_primary_fenced_by_its_peer_stops_taking_mail_in_the_same_process(jitaku_factory: Any) -> None:
    server = jitaku_factory()
    server.init(READER)
    secret = write_secret(server)
    server.start()
    assert server.process is not None
    wait_until(lambda: bool(started(server)), timeout=30)
    assert greeting(server.smtp_port).startswith(b"220 ")
    url = f"http://127.0.0.1:{server.web_port}"
    assert peer.fence(url, secret, "failover", "the-other-box", None, 10.0)
    wait_until(lambda: FENCED.encode() in greeting(server.smtp_port), timeout=30)
    assert [event["pid"] for event in started(server)] == [str(server.process.pid)] * 2
    assert [event["mode"] for event in started(server)] == ["primary", "fenced"]
    fenced = json.loads(fence_file(server).read_text())
    assert (fenced["purpose"], fenced["by"]) == ("failover", "the-other-box")
    assert peer.fence(url, secret, "failover", "the-other-box", None, 10.0)  # fenced twice alike: fine
    server.stop()
    assert not (server.dir / "ports.json").exists()  # it ended as a daemon ends


def _query(server: Jitaku, port: int, query: str) -> list[Any]:
    import psycopg

    passfile = server.dir / "postgres" / "jitaku.pgpass"
    url = f"postgresql://jitaku@127.0.0.1:{port}/jitaku"
    with psycopg.connect(url, passfile=str(passfile), connect_timeout=10, autocommit=True) as connection:
        return [row[0] for row in connection.execute(query).fetchall()]


def _stopped(state: dict[str, Any] | None) -> dict[str, Any] | None:
    return state if state is not None and state["cluster"] == "stopped" else None


def _standby_pair(jitaku_factory: Any, shared_dir: Path) -> tuple[Jitaku, int, Jitaku, int]:
    """A primary and its standby, both daemons running, the standby streaming; their clusters' ports."""
    primary, port, standby, copy = pair(jitaku_factory, shared_dir)
    standby_port = int(standby.settings["database"]["listen"][0].rsplit(":", 1)[1])
    primary.start()
    standby.cli("standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(copy), "--name", "two")
    standby.start()
    wait_until(lambda: bool(started(standby)), timeout=30)
    assert greeting(standby.smtp_port).startswith(b"421 4.3.2 two.example.test is a standby")
    return primary, port, standby, standby_port


def test_a_promoted_standby_takes_mail_without_a_restart_and_the_old_primary_fences_itself(
    jitaku_factory: Any, shared_dir: Path
) -> None:
    primary, port, standby, standby_port = _standby_pair(jitaku_factory, shared_dir)
    assert standby.process is not None
    assert _query(standby, standby_port, "SELECT pg_promote()") == [True]  # by hand, as a person might
    promoted = time.monotonic()
    wait_until(lambda: accepts_mail(standby), timeout=30)
    assert time.monotonic() - promoted < 30
    assert [event["pid"] for event in started(standby)] == [str(standby.process.pid)] * 2  # the same process
    assert [event["mode"] for event in started(standby)] == ["standby", "primary"]
    assert " event=ha_promoted " in standby.log()
    # the new primary's monitor said so, through the alerts (recorded: no [alerts] urls here)
    wait_until(lambda: "became the primary" in health_page(standby), timeout=30)

    # the old primary, restarted, learns from its peer that a newer primary serves: it fences itself
    config = primary.dir / "jitaku.toml"  # as `init --database postgresql` left it: [database] managed
    config.write_text(config.read_text() + f'\n[ha]\npeer = "http://127.0.0.1:{standby.web_port}"\n')
    primary.restart()
    wait_until(lambda: fence_file(primary).exists() or "event=started" in primary.log().rsplit("event=stopped", 1)[-1])
    assert fence_file(primary).exists(), primary.log()[-3000:]
    assert json.loads(fence_file(primary).read_text())["purpose"] == "split-brain"
    wait_until(lambda: FENCED.encode() in greeting(primary.smtp_port), timeout=30)
    assert status(primary)["fenced"] is True and status(standby)["fenced"] is False


def test_a_primary_fenced_for_a_switchover_rejoins_as_the_new_primarys_standby(
    jitaku_factory: Any, shared_dir: Path
) -> None:
    primary, port, standby, standby_port = _standby_pair(jitaku_factory, shared_dir)
    assert primary.process is not None
    secret = (standby.dir / "ha" / "replication.secret").read_text().strip()
    deliver(primary, "before the switchover")
    # what `jitaku switchover` does on the standby, by hand: fence the primary, asking it to re-join us
    url = f"http://127.0.0.1:{primary.web_port}"
    assert peer.fence(url, secret, "switchover", "two", f"127.0.0.1:{standby_port}", 10.0)
    wait_until(lambda: FENCED.encode() in greeting(primary.smtp_port), timeout=30)
    # its cluster stopped cleanly, it says where, and stays stopped until we are promoted: we have that WAL
    stopped = wait_until(lambda: _stopped(peer.state(url, secret, 10.0)), timeout=60)
    assert re.fullmatch(r"[0-9A-F]+/[0-9A-F]+", stopped["checkpoint"]) and stopped["fenced"] is True
    replayed = f"SELECT pg_last_wal_replay_lsn() >= '{stopped['checkpoint']}'::pg_lsn"
    assert _query(standby, standby_port, replayed) == [True]
    name = slot_name(None)
    _query(standby, standby_port, f"SELECT 1 FROM pg_create_physical_replication_slot('{name}')")
    _query(standby, standby_port, "SELECT pg_promote()")
    wait_until(lambda: accepts_mail(standby), timeout=30)
    # the old primary: its cluster a standby of the new one, the fence gone, serving as a standby
    wait_until(lambda: not fence_file(primary).exists(), timeout=90)
    wait_until(lambda: b"is a standby" in greeting(primary.smtp_port), timeout=30)
    assert [event["mode"] for event in started(primary)] == ["primary", "fenced", "standby"]
    assert {event["pid"] for event in started(primary)} == {str(primary.process.pid)}
    assert " event=ha_rejoined " in primary.log()
    ours = status(primary)
    assert (ours["role"], ours["fenced"]) == ("standby", False)
    # what the new primary takes, the old one replays: mail written after the switchover is on both
    deliver(standby, "after the switchover")
    wait_until(lambda: len(primary.mailbox(READER)) == 3, timeout=60)  # "after" above, this, and "before"
    assert _query(standby, standby_port, f"SELECT active FROM pg_replication_slots WHERE slot_name = '{name}'") == [
        True
    ]
    assert "ha_rejoin_failed" not in primary.log()


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user: needs root (CI is)")
