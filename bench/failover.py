#!/usr/bin/env python3
"""Failovers under load: acknowledged mail lost (must be 0) and seconds from `jitaku failover` to the first 250.

Two jitaku boxes on this machine (two data directories, each with its managed PostgreSQL cluster on a loopback
port of its own), the second a synchronous standby of the first (`jitaku standby allow`, `jitaku standby setup`).
Writer threads send mail over SMTP all the time, each message with a subject of its own, to whichever box takes
it (a standby or a dead box refuses: the writer tries the other), and remember every subject that got its 250.

Each round: kill -9 the primary's `jitaku serve` and its PostgreSQL (the postmaster's pid from postmaster.pid),
as a power cut or a crash would; run `jitaku failover` on the standby and time it to its exit and to the first 250
a writer gets from it; then re-join the dead box as the new standby (`jitaku standby setup --replace` from the new
primary, its daemon started again), and wait until replication is synchronous once more. The boxes swap places
every round.

At the end, every subject a writer got a 250 for must be in the mailbox of the last primary exactly once: the
count of those missing is the figure that must be 0 (doubles are printed too). Floor: each failover <= 30 s to
the first 250; aim: <= 5 s. Printed per round and as a summary.

Not the same as the home network: both boxes are on loopback, so no floating address moves (`[ha] address`
unset; the tests move one in network namespaces) and the writers know both boxes' ports, as the home router
knows one address.

Needs root (the clusters run as `postgres`) and Debian's postgresql-15.

Usage: bench/failover [--rounds 10] [--writers 4] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import imaplib
import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from smtp_accept import free_port, jitaku_command, run, set_toml_keys, wait_for_banner  # noqa: E402

LOOPBACK = "127.0.0.1"
DOMAIN = "bench.test"
USER = f"user@{DOMAIN}"
PASSWORD = "password123"
FLOOR = 30.0  # seconds from `jitaku failover` to the first 250: the floor
AIM = 5.0


def say(text: str) -> None:
    print(text, flush=True)


@dataclass
class Box:
    base: Path
    name: str
    smtp_port: int = field(default_factory=free_port)
    imap_port: int = field(default_factory=free_port)
    web_port: int = field(default_factory=free_port)
    database_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def dir(self) -> Path:
        return self.base / self.name

    def cli(self, *args: str, input: str | None = None, timeout: float = 600) -> str:
        return run([*jitaku_command(), *args, "--dir", str(self.dir)], input=input, timeout=timeout).stdout

    def setup(self, peer: Box) -> None:
        self.cli("init", "--domain", DOMAIN)
        config = self.dir / "jitaku.toml"
        config.write_text(
            set_toml_keys(
                config.read_text(),
                {
                    "smtp": {"listen": f'["{LOOPBACK}:{self.smtp_port}"]'},
                    "submission": {"listen": "[]"},
                    "submissions": {"listen": "[]"},
                    "imap": {"listen": f'["{LOOPBACK}:{self.imap_port}"]'},
                    "imaps": {"listen": "[]"},
                    "pop3": {"listen": "[]"},
                    "pop3s": {"listen": "[]"},
                    "web": {"listen": f'["{LOOPBACK}:{self.web_port}"]'},
                    "database": {"listen": f'["{LOOPBACK}:{self.database_port}"]'},
                    "ha": {"peer": f'"http://{LOOPBACK}:{peer.web_port}"'},
                },
            )
        )
        self.cli("init", "--database", "postgresql")

    def start(self, greeting: bytes) -> None:
        log = open(self.dir / "serve.log", "ab")
        self.process = subprocess.Popen(
            [*jitaku_command(), "serve", "--dir", str(self.dir)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        try:
            wait_for_banner(self.smtp_port, timeout=60, code=greeting)
        except TimeoutError:
            raise RuntimeError(
                f"{self.name}: jitaku serve did not greet with {greeting!r}: {self.log_tail()}"
            ) from None

    def kill(self) -> None:
        """kill -9 the daemon and its PostgreSQL, as a crash of the whole box would leave them."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None
        pid_file = self.dir / "postgres" / "postmaster.pid"
        with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def status(self) -> dict[str, object]:
        return dict(json.loads(self.cli("ha", "status", "--json")))

    def log_tail(self) -> str:
        path = self.dir / "serve.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"

    def subjects(self) -> list[str]:
        imap = imaplib.IMAP4(LOOPBACK, self.imap_port, timeout=60)
        try:
            imap.login(USER, PASSWORD)
            imap.select("INBOX", readonly=True)
            _, found = imap.uid("SEARCH", "ALL")
            uids = found[0].split()
            subjects: list[str] = []
            for start in range(0, len(uids), 500):
                chunk = b",".join(uids[start : start + 500]).decode()
                _, items = imap.uid("FETCH", chunk, "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
                for item in items:
                    if isinstance(item, tuple):
                        subjects.append(item[1].decode().partition(":")[2].strip())
            return subjects
        finally:
            with contextlib.suppress(Exception):
                imap.logout()


class Writers:
    """Threads sending mail all the time, each message to the box that was taking mail last (else the other)."""

    def __init__(self, boxes: list[Box], count: int) -> None:
        self.boxes = boxes
        self.target = 0
        self.acknowledged: list[str] = []
        self.first_250: dict[int, float] = {}  # box index -> monotonic time of the first 250 since mark()
        self.marked: float | None = None
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(number,), daemon=True) for number in range(count)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def mark(self) -> None:
        """From now on, note when each box first says 250."""
        with self.lock:
            self.first_250.clear()
            self.marked = time.monotonic()

    def _write(self, number: int) -> None:
        sequence = 0
        while not self.stopping.is_set():
            with self.lock:
                index = self.target
            subject = f"failover-bench w{number} m{sequence}"
            if self._send(self.boxes[index], subject):
                with self.lock:
                    self.acknowledged.append(subject)
                    if self.marked is not None:
                        self.first_250.setdefault(index, time.monotonic())
                sequence += 1
            else:
                with self.lock:
                    if self.target == index:
                        self.target = 1 - index
                time.sleep(0.05)

    def _send(self, box: Box, subject: str) -> bool:
        message = EmailMessage()
        message["From"] = "writer@remote.test"
        message["To"] = USER
        message["Subject"] = subject
        message.set_content("written while the pair fails over\n")
        try:
            with smtplib.SMTP(LOOPBACK, box.smtp_port, timeout=30) as smtp:
                smtp.send_message(message)
            return True
        except (OSError, smtplib.SMTPException):
            return False  # refused (a standby's 421), reset or timed out: not acknowledged


def pair(base: Path) -> tuple[Box, Box]:
    one, two = Box(base, "one"), Box(base, "two")
    one.setup(two)
    two.setup(one)
    one.cli("user", "add", USER, "--password-stdin", input=PASSWORD + "\n")
    one.cli("standby", "allow", LOOPBACK)
    one.start(b"220")
    join(two, one)
    return one, two


def join(standby: Box, primary: Box) -> None:
    """STANDBY (its daemon stopped or dead) made a streaming standby of PRIMARY, its daemon started, and
    replication synchronous again."""
    secret = standby.base / f"{standby.name}.secret"
    shutil.copy(primary.dir / "ha" / "replication.secret", secret)
    secret.chmod(0o600)
    try:
        standby.cli(
            "standby", "setup", "--primary", f"{LOOPBACK}:{primary.database_port}", "--secret-file", str(secret),
            "--name", standby.name, "--replace",
        )  # fmt: skip
    finally:
        secret.unlink(missing_ok=True)
    standby.start(b"421")
    deadline = time.monotonic() + 120
    while (state := primary.status()["sync_state"]) != "sync":
        if time.monotonic() > deadline:
            raise RuntimeError(f"{standby.name} is not a synchronous standby after 120 s ({state})")
        time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="failovers (default 10)")
    parser.add_argument("--writers", type=int, default=4, help="writer threads (default 4)")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds of mail before each kill (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, clusters)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        say("bench/failover runs PostgreSQL clusters as postgres and needs root")
        return 2

    base = Path(tempfile.mkdtemp(prefix="jitaku-failover-"))
    base.chmod(0o755)
    boxes: list[Box] = []
    finished = False
    try:
        say(f"work dir {base}; {args.writers} writers; {args.rounds} failovers; {os.cpu_count()} CPUs")
        one, two = pair(base)
        boxes = [one, two]
        writers = Writers(boxes, args.writers)
        writers.start()
        timings: list[tuple[float, float]] = []
        primary = 0
        for number in range(1, args.rounds + 1):
            time.sleep(args.settle)
            old, new = boxes[primary], boxes[1 - primary]
            old.kill()
            writers.mark()
            started = time.monotonic()
            printed = new.cli("failover", timeout=300)
            exited = time.monotonic() - started
            deadline = time.monotonic() + 120
            while 1 - primary not in writers.first_250:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no 250 from {new.name} 120 s after `jitaku failover`: {new.log_tail()}")
                time.sleep(0.01)
            first = writers.first_250[1 - primary] - started
            timings.append((exited, first))
            verdict = "ok" if first <= FLOOR else "OVER THE FLOOR"
            say(
                f"round {number}: {old.name} killed, `jitaku failover` on {new.name} exited in {exited:.2f} s, "
                f"first 250 after {first:.2f} s ({verdict}); {len(writers.acknowledged)} acknowledged so far"
                f" | {printed.strip().splitlines()[-1] if printed.strip() else ''}"
            )
            join(old, new)
            primary = 1 - primary
        time.sleep(args.settle)
        writers.stop()
        last = boxes[primary]
        stored = last.subjects()
        counts: dict[str, int] = {}
        for subject in stored:
            counts[subject] = counts.get(subject, 0) + 1
        missing = [subject for subject in writers.acknowledged if subject not in counts]
        doubled = [subject for subject, count in counts.items() if count > 1]
        firsts = sorted(first for _exited, first in timings)
        say("")
        say(
            f"acknowledged {len(writers.acknowledged)} messages; on the last primary ({last.name}): {len(stored)}; "
            f"acknowledged and lost: {len(missing)} (must be 0); stored twice: {len(doubled)}"
        )
        say(
            f"seconds from `jitaku failover` to the first 250: min {firsts[0]:.2f}, median "
            f"{firsts[len(firsts) // 2]:.2f}, max {firsts[-1]:.2f} (floor <= {FLOOR:.0f} s each, aim <= {AIM:.0f} s);"
            f" the command itself exited in max {max(exited for exited, _first in timings):.2f} s"
        )
        finished = True
        return 0 if not missing and firsts[-1] <= FLOOR else 1
    finally:
        for box in boxes:
            box.stop()
        for data in base.glob("*/postgres*/postmaster.pid"):
            with contextlib.suppress(Exception):
                os.kill(int(data.read_text().split()[0]), signal.SIGTERM)
        if args.keep or not finished:
            say(f"kept {base}" + ("" if finished else " (the run did not finish: see */serve.log)"))
        else:
            time.sleep(2)
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
