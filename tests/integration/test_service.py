"""Running it for real (issue 18): `jitaku init --public --service` makes the system user, a data dir that is
its, and systemd units that `systemd-analyze verify` accepts, and changes nothing when run again; a root start
of `jitaku serve` ends with no process running as root and every listener answering on its real port.

Each test runs on a machine of its own (tests/integration/service_host.py: new mount and network namespaces),
so the host's /etc, /var/lib and ports stay as they were.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PORTS = {25, 587, 465, 143, 993, 110, 995, 80, 443}  # what `init --public` listens on
GREETINGS = {"mx": "220 ", "submission": "220 ", "submissions": "220 ", "imap": "* OK", "imaps": "* OK"}
GREETINGS |= {"pop3": "+OK", "pop3s": "+OK", "web": "HTTP/1.1 "}
UNIT_NAMES = ("jitaku.service", "jitaku-smart.service", "jitaku-smart.timer")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("systemd-analyze"),
    reason="needs root, unshare and systemd-analyze (CI runs as root; scripts/test installs systemd)",
)


def on_own_host(scenario: str, stage: Path, *args: str) -> dict[str, Any]:
    stage.mkdir()
    result = subprocess.run(
        ["unshare", "--mount", "--net", "--propagation", "private"]
        + [sys.executable, "-m", "tests.integration.service_host", scenario, str(stage), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    seen: dict[str, Any] = json.loads(result.stdout)
    return seen


def directives(unit: str) -> dict[str, str]:
    """A unit file's settings, comments and section headers left out (each key is set once in ours)."""
    lines = [line for line in unit.splitlines() if line and line[0] not in "#["]
    return dict(line.split("=", 1) for line in lines)


def system_uid_max() -> int:
    """The highest uid of a system user, as useradd reads it from /etc/login.defs (999 unless set)."""
    defs = Path("/etc/login.defs")
    found = re.search(r"^SYS_UID_MAX\s+(\d+)", defs.read_text(), re.M) if defs.exists() else None
    return int(found.group(1)) if found else 999


def test_init_service_makes_the_user_the_data_dir_and_units_and_changes_nothing_the_second_time(
    tmp_path: Path,
) -> None:
    seen = on_own_host("init", tmp_path / "host")
    assert seen["first"]["code"] == 0, seen["first"]["stderr"]
    said = seen["first"]["stdout"]
    assert "added the system user jitaku" in said
    assert "systemctl status jitaku" in said and "journalctl -u jitaku" in said
    assert "Publish these DNS records" in said

    user = seen["user"]
    assert 0 < user["uid"] <= system_uid_max() and user["group"] == "jitaku"
    assert user["shell"] in ("/usr/sbin/nologin", "/sbin/nologin")

    files = seen["files"]
    assert files["/var/lib/jitaku"] == ["jitaku", "jitaku", "0700"]
    for secret in ("jitaku.toml", "jitaku.db", "dkim/example.org.jitaku.key", "tls/key.pem"):
        assert files[f"/var/lib/jitaku/{secret}"] == ["jitaku", "jitaku", "0600"], secret
    assert {tuple(owner[:2]) for owner in files.values()} == {("jitaku", "jitaku")}  # all of it is the daemon's
    assert re.search(r'^\[run\][^\n]*\nuser = "jitaku"', seen["config"], re.M)
    assert '"0.0.0.0:25"' in seen["config"]

    service, smart, timer = (directives(seen["units"][name]) for name in UNIT_NAMES)
    assert service["ExecStart"] == f"{seen['program']} serve --dir /var/lib/jitaku"
    assert service["User"] == service["Group"] == "jitaku"
    assert service["AmbientCapabilities"] == service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["ReadWritePaths"] == "/var/lib/jitaku" and service["ProtectSystem"] == "strict"
    assert service["NoNewPrivileges"] == service["PrivateDevices"] == "yes"
    assert "MemoryDenyWriteExecute" not in service  # ctypes (libffi) needs memory both writable and executable
    assert smart["ExecStart"] == f"{seen['program']} smart collect --dir /var/lib/jitaku"
    assert smart["Type"] == "oneshot" and "User" not in smart  # root: smartctl needs raw access to the disks
    assert "PrivateDevices" not in smart and "ProtectClock" not in smart  # either would hide them
    assert timer["OnUnitActiveSec"] == "10min" and "OnBootSec" in timer
    assert seen["wanted"] == ["multi-user.target.wants/jitaku.service", "timers.target.wants/jitaku-smart.timer"]
    assert seen["verify"]["code"] == 0, seen["verify"]["stderr"]
    assert seen["verify"]["stderr"] == "", seen["verify"]["stderr"]

    assert seen["again"]["code"] == 0, seen["again"]["stderr"]
    assert seen["changed_by_again"] == []
    assert "unchanged /etc/systemd/system/jitaku.service" in seen["again"]["stdout"]
    assert "added the system user" not in seen["again"]["stdout"]


def test_a_root_start_without_dir_ends_with_no_process_as_root_and_every_listener_answering(tmp_path: Path) -> None:
    seen = on_own_host("serve", tmp_path / "host")
    assert seen.get("started"), seen
    assert seen["ids"] and all(0 not in ids for ids in seen["ids"].values()), seen["ids"]
    answered = {int(address.rpartition(":")[2]) for addresses in seen["answers"].values() for address in addresses}
    assert answered == PORTS
    for name, answers in seen["answers"].items():
        for address, first_line in answers.items():
            assert first_line.startswith(GREETINGS[name]), (address, first_line)


def test_init_service_needs_root(tmp_path: Path) -> None:
    seen = on_own_host("unprivileged", tmp_path / "host")
    assert seen["code"] == 1
    assert (
        seen["stderr"]
        == "jitaku: --service needs root: it adds the system user jitaku and writes systemd units (sudo)\n"
    )
    assert seen["made"] == []


def test_init_service_refuses_a_data_dir_the_service_user_cannot_reach(tmp_path: Path) -> None:
    seen = on_own_host("unreachable", tmp_path / "host")
    assert seen["code"] == 1
    closed = tmp_path / "host" / "closed" / "data"
    assert (
        seen["stderr"]
        == f"jitaku: the jitaku user cannot reach {closed}: choose a data directory outside any it may not enter (a home, say)\n"
    )
    assert seen["made"] == []  # neither a config nor a unit


def test_a_service_with_a_managed_cluster_runs_it_as_the_service_user(tmp_path: Path) -> None:
    """`init --service --database postgresql`: the cluster is the jitaku user's, like all else in the data
    directory; the daemon started as root runs it as that user and stops it on SIGTERM."""
    seen = on_own_host("managed", tmp_path / "host")
    assert seen["init"]["code"] == 0, seen["init"]["stderr"]
    assert seen.get("started"), seen
    assert "ready: PostgreSQL 15 cluster /var/lib/jitaku/postgres (run as jitaku)" in seen["init"]["stdout"]
    assert not seen["running_after_init"]
    assert seen["postmaster_user"] == "jitaku"
    assert seen["owners"] == ["jitaku"]
    assert seen["stopped"]
    assert "\nmanaged = true" in seen["config"] and '\nlisten = ["127.0.0.1:5433"]' in seen["config"]
