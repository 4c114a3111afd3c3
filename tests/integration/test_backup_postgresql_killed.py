"""A `jitaku backup restore` of a managed cluster's snapshot ended by SIGTERM (`kill PID`, an ssh session
dropped) while it loads the dump: the cluster it made for the load is stopped, and the half-restored directory
beside TO is gone, so that no PostgreSQL runs on with a copy of every key (issue 26's review, #2).

Runs as root, as test_backup_postgresql.py does, whose box and leftover-cluster guard it shares."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests.integration.harness import JITAKU, Jitaku, deliver
from tests.integration.test_backup import SNAPSHOT
from tests.integration.test_backup_postgresql import box as box
from tests.integration.test_managed_postgres import no_cluster_left as no_cluster_left
from tests.peers import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user: needs root (CI is)")


def test_a_restore_ended_by_sigterm_while_it_loads_stops_its_cluster_and_leaves_nothing(
    box: tuple[Jitaku, int], shared_dir: Path
) -> None:
    server, _ = box
    server.start()
    deliver(server, *(f"message {number}" for number in range(20)))
    snapshot = server.cli("backup", "now").stdout.split(":")[0].removeprefix(SNAPSHOT)
    server.stop()

    to = shared_dir / "restored"
    command = [*JITAKU, "backup", "restore", snapshot, "--to", str(to), "--dir", str(server.dir)]
    restoring = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the cluster made for the load is up: its postmaster.pid is there from its start to its stop
        wait_until(
            lambda: list(shared_dir.glob(".restored.restoring-*/postgres/postmaster.pid")), timeout=120, interval=0.02
        )
        restoring.send_signal(signal.SIGTERM)
        _, stderr = restoring.communicate(timeout=120)
    finally:
        if restoring.poll() is None:
            restoring.kill()
            restoring.wait()
        _stop_left(shared_dir)
    assert restoring.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    assert not list(shared_dir.glob(".restored.*")), "the half-restored directory, or its cluster, was left"
    assert not to.exists()
    assert not _working_in(".restored.restoring-"), "a PostgreSQL runs on in a directory that is gone"


def _stop_left(shared_dir: Path) -> None:
    """What this test fails on, stopped (an immediate shutdown: SIGQUIT to the postmaster): no_cluster_left's
    pg_ctl, run as the cluster's user, cannot enter the restore's 0700 directory."""
    for pid_file in shared_dir.glob(".restored.restoring-*/postgres/postmaster.pid"):
        with contextlib.suppress(ValueError, OSError):
            os.kill(int(pid_file.read_text().split("\n", 1)[0]), signal.SIGQUIT)


def _working_in(name: str) -> list[int]:
    """The processes working in a directory whose path holds NAME (a postmaster works in its data directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and name in os.readlink(entry / "cwd"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found
