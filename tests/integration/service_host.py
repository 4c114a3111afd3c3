"""A machine of its own for `jitaku init --service` and a root start of `jitaku serve`, run by test_service.py as

    unshare --mount --net --propagation private python3 -m tests.integration.service_host SCENARIO STAGE [ARGS...]

In the new mount namespace /etc is a copy (useradd renames files in it), /var/lib an empty tmpfs, and systemd
out of reach; in the new network namespace, a loopback of its own, so ports 25, 587, ... are free. The host's
/etc and /var/lib are never touched. It prints one JSON object of what it saw, for the test to judge.
"""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DATA = Path("/var/lib/jitaku")
UNITS = Path("/etc/systemd/system")
UNIT_NAMES = ("jitaku.service", "jitaku-smart.service", "jitaku-smart.timer")
WATCHED = (DATA, UNITS, Path("/etc/passwd"), Path("/etc/group"), Path("/etc/shadow"), Path("/etc/gshadow"))
TLS_PORTS = {465, 993, 995, 443}
HTTP_PORTS = {80, 443}


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def isolate(stage: Path) -> None:
    """The namespace's /etc, /var/lib, /run/systemd and loopback, as the module's docstring says; STAGE (an
    empty directory) holds the copy of /etc and the `jitaku` program."""
    open_way(stage)
    mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(stage))
    subprocess.run(["cp", "-a", "/etc", str(stage / "etc")], check=True)
    mount("--bind", str(stage / "etc"), "/etc")
    mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/var/lib")
    if Path("/run/systemd").is_dir():  # a systemd host's: `init` must not reach its manager
        mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run/systemd")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for needed in [sys.executable, *sys.path]:
        if needed and Path(needed).exists():
            open_way(Path(needed))


def open_way(path: Path) -> None:
    """Let every user reach PATH here, as an install in /usr/local would be: a directory on its way that others
    may not enter (root's 0700 home, where pyenv keeps the test machines' Python; pytest's /tmp/pytest-of-root)
    is covered by a 0755 tmpfs holding only the next step, bind-mounted from the original."""
    path = Path(os.path.realpath(path))
    for ancestor in reversed(path.parents):
        if ancestor.stat().st_mode & 0o001:
            continue
        step = ancestor / path.relative_to(ancestor).parts[0]
        holder = Path(tempfile.mkdtemp())
        mount("--bind", str(step), str(holder))
        mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", str(ancestor))
        step.mkdir()
        mount("--move", str(holder), str(step))
        holder.rmdir()


def program(stage: Path) -> Path:
    """A `jitaku` as `pip install` writes one: a script that runs this interpreter on jitaku.cli:main."""
    path = stage / "bin" / "jitaku"
    path.parent.mkdir()
    path.write_text(f"#!{sys.executable}\nimport sys\nfrom jitaku.cli import main\nsys.exit(main())\n")
    path.chmod(0o755)
    return path


def run(*command: str | Path, user: str | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, timeout=60, cwd="/", user=user
    )
    return {"code": result.returncode, "stdout": result.stdout, "stderr": result.stderr}


def snapshot() -> dict[str, list[Any]]:
    """Every file under WATCHED: owner, group, mode, and its content's hash or a link's target."""
    seen: dict[str, list[Any]] = {}
    for top in WATCHED:
        paths = [top] if not top.is_dir() else [top, *sorted(top.rglob("*"))]
        for path in paths:
            status = path.lstat()
            if path.is_symlink():
                content = os.readlink(path)
            elif path.is_file():
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                content = None
            owner = [pwd.getpwuid(status.st_uid).pw_name, grp.getgrgid(status.st_gid).gr_name]
            seen[str(path)] = [*owner, f"{status.st_mode & 0o7777:04o}", content]
    return seen


def init(stage: Path) -> dict[str, Any]:
    """`jitaku init --public --service` twice, and what the first left."""
    jitaku = program(stage)
    first = run(jitaku, "init", "--domain", "example.org", "--public", "--service")
    before = snapshot()
    account = pwd.getpwnam("jitaku")
    verify = run("systemd-analyze", "verify", *(UNITS / name for name in UNIT_NAMES))
    again = run(jitaku, "init", "--domain", "example.org", "--public", "--service")
    return {
        "program": str(jitaku),
        "first": first,
        "user": {"uid": account.pw_uid, "group": grp.getgrgid(account.pw_gid).gr_name, "shell": account.pw_shell},
        "files": {path: state[:3] for path, state in before.items() if path.startswith(str(DATA))},
        "config": (DATA / "jitaku.toml").read_text(),
        "units": {name: (UNITS / name).read_text() for name in UNIT_NAMES if (UNITS / name).exists()},
        "wanted": sorted(str(link.relative_to(UNITS)) for link in UNITS.glob("*.wants/jitaku*")),
        "verify": verify,
        "again": again,
        "changed_by_again": sorted(path for path, state in snapshot().items() if before.get(path) != state),
    }


def serve(stage: Path, *serve_args: str) -> dict[str, Any]:
    """`jitaku init --public --service`, then `jitaku serve` started as root (without --dir unless SERVE_ARGS
    says otherwise): who its processes end up running as, and what each port in ports.json answers."""
    jitaku = program(stage)
    made = run(jitaku, "init", "--domain", "example.org", "--public", "--service")
    if made["code"] != 0:
        return {"init": made}
    log = stage / "serve.log"
    with log.open("wb") as output:
        daemon = subprocess.Popen([str(jitaku), "serve", *serve_args], stdout=output, stderr=output, cwd="/")
    try:
        started = _wait(lambda: daemon.poll() is not None or b"event=started" in log.read_bytes(), 30)
        if not started or daemon.poll() is not None:
            return {"started": False, "log": log.read_text(errors="replace")}
        listening = json.loads((DATA / "ports.json").read_text())
        _wait(lambda: all(ids[0] != 0 for ids in _ids(daemon.pid).values()), 10)
        return {
            "started": True,
            "ids": {str(pid): ids for pid, ids in _ids(daemon.pid).items()},
            "answers": {
                name: {address: answer(address) for address in addresses} for name, addresses in listening.items()
            },
        }
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()


def _wait(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _ids(root: int) -> dict[int, list[int]]:
    """ROOT and its descendants, each with its real, effective, saved and file-system user ids."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family = {root}
    grown = True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in family} - family
        family |= children
        grown = bool(children)
    ids = {}
    for pid in family:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        ids[pid] = [int(value) for value in line.split()[1:]]
    return ids


def answer(address: str) -> str:
    """The first line a client gets on ADDRESS ("host:port") on loopback: a greeting, or an HTTP status line."""
    port = int(address.rpartition(":")[2])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
        connection: socket.socket = plain
        if port in TLS_PORTS:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE  # init's self-signed certificate
            connection = context.wrap_socket(plain)
        if port in HTTP_PORTS:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: mail.example.org\r\nConnection: close\r\n\r\n")
        return connection.makefile("rb").readline().decode(errors="replace").strip()


def unprivileged(stage: Path) -> dict[str, Any]:
    """`jitaku init --service` run by a user who is not root."""
    refused = run(program(stage), "init", "--domain", "example.org", "--public", "--service", user="nobody")
    return {**refused, "made": [str(path) for path in (DATA, UNITS / UNIT_NAMES[0]) if path.exists()]}


def unreachable(stage: Path) -> dict[str, Any]:
    """`jitaku init --service` on a data directory inside one that only root may enter."""
    closed = stage / "closed"
    closed.mkdir(mode=0o700)
    refused = run(program(stage), "init", "--domain", "example.org", "--service", "--dir", closed / "data")
    return {
        **refused,
        "made": [str(path) for path in (closed / "data" / "jitaku.toml", UNITS / UNIT_NAMES[0]) if path.exists()],
    }


def managed(stage: Path) -> dict[str, Any]:
    """`jitaku init --service --database postgresql`, then `jitaku serve` started as root: who the cluster runs as,
    who owns the data directory, and whether the daemon's SIGTERM stops the cluster."""
    jitaku = program(stage)
    made = run(jitaku, "init", "--domain", "example.org", "--service", "--database", "postgresql")
    if made["code"] != 0:
        return {"init": made}
    pid_file = DATA / "postgres" / "postmaster.pid"
    after_init = pid_file.exists()
    log = stage / "serve.log"
    with log.open("wb") as output:
        daemon = subprocess.Popen([str(jitaku), "serve"], stdout=output, stderr=output, cwd="/")
    try:
        started = _wait(lambda: daemon.poll() is not None or b"event=started" in log.read_bytes(), 60)
        if not started or daemon.poll() is not None:
            return {"started": False, "log": log.read_text(errors="replace")}
        postmaster = int(pid_file.read_text().split()[0])
        status = Path(f"/proc/{postmaster}/status").read_text()
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        owners = {pwd.getpwuid(path.lstat().st_uid).pw_name for path in [DATA, *DATA.rglob("*")]}
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
    return {
        "init": made,
        "running_after_init": after_init,
        "started": True,
        "postmaster_user": pwd.getpwuid(uid).pw_name,
        "owners": sorted(owners),
        "stopped": not pid_file.exists(),
        "config": (DATA / "jitaku.toml").read_text(),
    }


SCENARIOS = {
    "init": init,
    "serve": serve,
    "unprivileged": unprivileged,
    "unreachable": unreachable,
    "managed": managed,
}

if __name__ == "__main__":
    stage = Path(sys.argv[2])
    isolate(stage)
    json.dump(SCENARIOS[sys.argv[1]](stage, *sys.argv[3:]), sys.stdout)
