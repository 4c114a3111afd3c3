"""A real spamd (Debian's spamassassin) for the tests, in a directory of its own: loopback TCP and a Unix socket,
local tests only (-L: no DNS blocklists, no Razor/Pyzor), TELL allowed, a site config of its own with a Bayes
database in that directory, the rules Debian ships (/usr/share/spamassassin; sa-update cannot download here).

spamd refuses to run as root without -u, so it runs as nobody, in directories nobody may write. Started once per
session: about 1-2 s on this machine, most of it parsing the rules (`started_in` says)."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers import free_port, stop_process

SITE_CONFIG = Path("/etc/spamassassin")  # its .pre files load the plugins (Bayes among them)
RULES = Path("/usr/share/spamassassin")
USER = "nobody"
START_TIMEOUT = 30.0


@dataclass
class Spamd:
    host: str
    port: int
    socket_path: Path
    bayes_path: Path  # sa-learn --dbpath
    log: Path
    started_in: float  # seconds from start to the first PONG

    def learned(self) -> tuple[int, int]:
        """(nspam, nham) as the Bayes database counts them (sa-learn --dump magic)."""
        if not self.bayes_path.with_name("bayes_toks").exists():
            return 0, 0  # nothing learned yet: sa-learn --dump fails on a database not made
        out = subprocess.run(
            ["sa-learn", "--dbpath", str(self.bayes_path), "--dump", "magic"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        counts = {line.split()[-1]: int(line.split()[2]) for line in out.splitlines() if "non-token data: n" in line}
        return counts.get("nspam", 0), counts.get("nham", 0)


def ping(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(b"PING SPAMC/1.5\r\n\r\n")
            return sock.recv(100).startswith(b"SPAMD/1.5 0 PONG")
    except OSError:
        return False


def start_spamd() -> Iterator[Spamd]:
    if shutil.which("spamd") is None:
        pytest.skip("spamd is not installed (Debian's spamd package)")
    root = Path(tempfile.mkdtemp(prefix="jitaku-spamd-"))
    root.chmod(0o755)
    site, home, bayes = root / "site", root / "home", root / "bayes"
    for directory in (site, home, bayes):
        directory.mkdir()
    for pre in SITE_CONFIG.glob("*.pre"):
        shutil.copy(pre, site / pre.name)
    (site / "local.cf").write_text(
        "use_bayes 1\n"
        "bayes_auto_learn 0\n"  # learning only by TELL, so that the counters mean what the tests did
        f"bayes_path {bayes}/bayes\n"
        "bayes_file_mode 0666\n"
        "bayes_learn_to_journal 0\n"  # TELL writes the database at once: sa-learn --dump sees it
        "lock_method flock\n"
    )
    if os.geteuid() == 0:
        nobody = pwd.getpwnam(USER)
        for directory in (home, bayes):
            os.chown(directory, nobody.pw_uid, nobody.pw_gid)
    port, socket_path, log = free_port(), root / "spamd.sock", root / "spamd.log"
    command = [
        "spamd", "-L", "-x", "--allow-tell", "-A", "127.0.0.1",
        "-i", f"127.0.0.1:{port}", "--socketpath", str(socket_path),
        "--siteconfigpath", str(site), "-C", str(RULES), "--helper-home-dir", str(home),
        "--max-children", "2", "--min-children", "1", "--pidfile", str(root / "spamd.pid"), "-s", "stderr",
    ]  # fmt: skip
    if os.geteuid() == 0:
        command += ["-u", USER]
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=root)
    try:
        while not ping("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() - started > START_TIMEOUT:
                raise RuntimeError(f"spamd did not start: {log.read_text()[-2000:]}")
            time.sleep(0.05)
        yield Spamd("127.0.0.1", port, socket_path, bayes / "bayes", log, time.monotonic() - started)
    finally:
        stop_process(process)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def spamd() -> Iterator[Spamd]:
    yield from start_spamd()
