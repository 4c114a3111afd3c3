"""clamd for the tests: a signature database of our own built with sigtool, a clamd.conf in a temporary directory,
clamd listening on a free loopback port and on a Unix socket there.

ClamAV cannot download its signatures here, so the database holds two: the EICAR test file by its MD5 and size
(`sigtool --md5`, an .hdb) and a made-up byte pattern (an .ndb). clamd reports them with ".UNOFFICIAL" appended,
as it does for every database it did not get from ClamAV. Limits are small enough that a zip bomb is cut short
and large enough for a 25 MB attachment (base64: about 34 MB of message). Session-scoped: clamd loads two
signatures in well under a second, but its start is still the slowest part of a test; `Clamd.started_in` says
how long it took.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers import free_port

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
EICAR_SIGNATURE = "Jitaku.Test.EICAR.UNOFFICIAL"
PATTERN = b"JITAKU-MADE-UP-VIRUS-PATTERN-7f3a"
PATTERN_SIGNATURE = "Jitaku.Test.Pattern.UNOFFICIAL"
STREAM_MAX = 40 * 1024 * 1024  # clamd's StreamMaxLength: a 25 MB attachment, base64-encoded, fits
# MaxFileSize: no file is scanned past this, the stream itself included (a 34 MB stream with MaxFileSize 30M is
# "Heuristics.Limits.Exceeded.MaxFileSize"), so no smaller than StreamMaxLength
MAX_FILE = STREAM_MAX
MAX_SCAN = 100 * 1024 * 1024  # MaxScanSize: bytes scanned at most in one stream, archives' contents included


@dataclass(frozen=True)
class Clamd:
    host: str
    port: int
    socket_path: Path
    pid: int
    log: Path
    started_in: float  # seconds from starting clamd to its first PONG

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def build_database(directory: Path, work: Path) -> None:
    """The EICAR test file as an .hdb line from sigtool, renamed; the made-up pattern as an .ndb line."""
    directory.mkdir(parents=True, exist_ok=True)
    sample = work / "eicar.com"
    sample.write_bytes(EICAR)
    line = subprocess.run(["sigtool", "--md5", str(sample)], check=True, capture_output=True, text=True).stdout
    md5, size, _ = line.strip().split(":", 2)
    (directory / "jitaku.hdb").write_text(f"{md5}:{size}:Jitaku.Test.EICAR\n")
    # Name:TargetType:Offset:HexSignature; target 0 is any file, offset * anywhere in it
    (directory / "jitaku.ndb").write_text(f"Jitaku.Test.Pattern:0:*:{PATTERN.hex()}\n")


def write_config(root: Path, port: int, max_file: int = MAX_FILE) -> Path:
    config = root / "clamd.conf"
    config.write_text(
        f"""DatabaseDirectory {root / "db"}
TCPSocket {port}
TCPAddr 127.0.0.1
LocalSocket {root / "clamd.sock"}
Foreground yes
LogFile {root / "clamd.log"}
LogTime yes
PidFile {root / "clamd.pid"}
StreamMaxLength {STREAM_MAX}
MaxScanSize {MAX_SCAN}
MaxFileSize {max_file}
MaxRecursion 10
MaxFiles 1000
MaxScanTime 20000
AlertExceedsMax yes
ConcurrentDatabaseReload no
SelfCheck 0
"""
    )
    return config


def ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"zPING\0")
            return sock.recv(16) == b"PONG\0"
    except OSError:
        return False


@pytest.fixture(scope="session")
def clamd() -> Iterator[Clamd]:
    with running_clamd() as found:
        yield found


@contextlib.contextmanager
def running_clamd(max_file: int = MAX_FILE) -> Iterator[Clamd]:
    """clamd running as root (it drops to no user when none is configured) in a temporary directory; for the
    tests' fixture and for bench/smtp_accept --filters. MAX_FILE: its MaxFileSize, for a test of what clamd says
    of a message past it."""
    with tempfile.TemporaryDirectory(prefix="jitaku-clamd-") as name:
        root = Path(name)
        build_database(root / "db", root)
        port = free_port()
        config = write_config(root, port, max_file)
        started = time.monotonic()
        with open(root / "clamd.stderr", "wb") as stderr:
            process = subprocess.Popen(
                ["clamd", "-c", str(config), "--foreground"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        try:
            while not ping(port):
                if process.poll() is not None or time.monotonic() - started > 30:
                    log = (root / "clamd.log").read_text(errors="replace") if (root / "clamd.log").exists() else ""
                    stderr = (root / "clamd.stderr").read_text(errors="replace")
                    raise RuntimeError(f"clamd did not answer PING within 30 s:\n{stderr}\n{log[-3000:]}")
                time.sleep(0.05)
            yield Clamd(
                "127.0.0.1", port, root / "clamd.sock", process.pid, root / "clamd.log", time.monotonic() - started
            )
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
