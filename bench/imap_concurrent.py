#!/usr/bin/env python3
"""Ten IMAP clients at once, sessions kept open, against jitaku and against Dovecot (Debian's dovecot-imapd in a
directory of its own on a loopback port), in the same run. Prints operations per second for each, the ratio,
and each command's p50 and p99; logins are measured apart (LOGIN then LOGOUT in a loop), both servers hashing
the same argon2id hashes (Dovecot's passwd-file holds jitaku's). The goal is at least 1.0x Dovecot. With one IMAP
worker, the CPU jitaku serve's event loop spent per operation is printed too: the loop runs every session, so
that is what bounds its operations per second on a loaded machine.

Each client loops over what a mail program does in a mailbox that others change too: SELECT INBOX, FETCH the
newest 50 messages' UIDs and flags, read two messages whole, mark one \\Seen, APPEND one, flag one \\Deleted and
EXPUNGE it, LIST all mailboxes and STATUS two of them. Every user has two clients (5 users by default), so each
session also hears of the other's changes. INBOX starts with --messages messages, Archive with a fifth of that.

Each figure is the best of --rounds alternating rounds of --seconds each (the machine is shared and noisy).

Usage: bench/imap_concurrent [--clients 10] [--users 5] [--messages 500] [--seconds 8] [--rounds 3]
       (as root: Dovecot's mail processes run as nobody)
"""

from __future__ import annotations

import argparse
import imaplib
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imap_servers import PASSWORD, message, password_hash, start_dovecot, start_jitaku  # noqa: E402

NEWEST = 50  # messages whose flags each round of a client fetches


@dataclass
class Timings:
    """Seconds each command took, by command; and how many commands ran in the measured time."""

    took: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    operations: int = 0
    elapsed: float = 0.0
    main_cpu: float | None = None  # CPU-seconds of jitaku serve's event-loop thread meanwhile (None: Dovecot)

    @property
    def rate(self) -> float:
        return self.operations / self.elapsed if self.elapsed else 0.0

    def add(self, other: Timings) -> None:
        for name, values in other.took.items():
            self.took[name] += values
        self.operations += other.operations


class Client:
    """One mail program's session, timing each command it sends."""

    def __init__(self, port: int, user: str, number: int) -> None:
        self.imap = imaplib.IMAP4("127.0.0.1", port)
        self.imap.login(user, PASSWORD)
        self.user = user
        self.rng = random.Random(number)
        self.timings = Timings()
        self.uids: list[int] = []

    def timed(self, name: str, command: Callable[..., tuple[str, list[object]]], *arguments: object) -> list[object]:
        started = time.perf_counter()
        status, data = command(*arguments)
        self.timings.took[name].append(time.perf_counter() - started)
        self.timings.operations += 1
        if status != "OK":
            raise SystemExit(f"{name} answered {status}: {data}")
        return data

    def round(self) -> None:
        imap, rng = self.imap, self.rng
        data = self.timed("SELECT", imap.select, "INBOX")
        exists = int(data[0]) if data and data[0] else 0  # type: ignore[arg-type]
        first = max(1, exists - NEWEST + 1)
        if exists:
            data = self.timed("FETCH flags", imap.fetch, f"{first}:*", "(UID FLAGS)")
            self.uids = [int(uid) for item in data for uid in re.findall(rb"UID (\d+)", _bytes(item))]
        if self.uids:
            for _ in range(2):
                uid = rng.choice(self.uids)
                self.timed("FETCH body", imap.uid, "FETCH", str(uid), "(BODY.PEEK[])")
            uid = rng.choice(self.uids)
            self.timed("STORE", imap.uid, "STORE", str(uid), "+FLAGS", "(\\Seen)")
        body = message(rng.randrange(1_000_000), self.user)
        self.timed("APPEND", imap.append, "INBOX", "", imaplib.Time2Internaldate(time.time()), body)
        if self.uids:
            uid = self.uids.pop(rng.randrange(len(self.uids)))
            self.timed("STORE", imap.uid, "STORE", str(uid), "+FLAGS", "(\\Deleted)")
            self.timed("EXPUNGE", imap.expunge)
        self.timed("LIST", imap.list, '""', "*")
        for name in ("Archive", "Sent"):
            self.timed("STATUS", imap.status, name, "(MESSAGES UNSEEN UIDNEXT)")

    def close(self) -> None:
        self.imap.logout()


def _bytes(item: object) -> bytes:
    if isinstance(item, tuple):
        return bytes(item[0])
    return item if isinstance(item, bytes) else b""


def together(count: int, work: Callable[[int, threading.Barrier], Timings]) -> Timings:
    """WORK(number, barrier) in COUNT threads at once; their timings summed, over the time they all ran."""
    barrier = threading.Barrier(count + 1)
    results: list[Timings] = []
    errors: list[BaseException] = []

    def run(number: int) -> None:
        try:
            results.append(work(number, barrier))
        except BaseException as error:
            errors.append(error)
            barrier.abort()

    threads = [threading.Thread(target=run, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    total = Timings(elapsed=time.perf_counter() - started)
    for result in results:
        total.add(result)
    return total


def workload(port: int, users: list[str], clients: int, seconds: float) -> Timings:
    """CLIENTS sessions (logged in before the clock starts) doing rounds until SECONDS have passed."""

    def client(number: int, barrier: threading.Barrier) -> Timings:
        session = Client(port, users[number % len(users)], number)
        session.imap.select("INBOX")
        barrier.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            session.round()
        session.close()
        return session.timings

    return together(clients, client)


def logins(port: int, users: list[str], clients: int, seconds: float) -> Timings:
    """CLIENTS connections at once, each logging in and out again until SECONDS have passed."""

    def client(number: int, barrier: threading.Barrier) -> Timings:
        timings = Timings()
        user = users[number % len(users)]
        barrier.wait()
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            imap = imaplib.IMAP4("127.0.0.1", port)
            started = time.perf_counter()
            imap.login(user, PASSWORD)
            timings.took["LOGIN"].append(time.perf_counter() - started)
            timings.operations += 1
            imap.logout()
        return timings

    return together(clients, client)


def main_thread_cpu(pid: int) -> float:
    """CPU-seconds PID's main thread has used: jitaku serve's event loop, which all IMAP sessions share, so
    that its CPU per operation bounds the operations per second."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--users", type=int, default=5)
    parser.add_argument("--messages", type=int, default=500, help="in each user's INBOX")
    parser.add_argument("--seconds", type=float, default=7.0, help="of each round's workload, on each server")
    parser.add_argument("--login-seconds", type=float, default=2.0, help="of each round's logins, on each server")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jitaku-only", action="store_true", help="no Dovecot (to profile jitaku alone)")
    parser.add_argument(
        "--imap-workers",
        default="1,2",
        help="jitaku's [imap] workers, one jitaku for each (default 1,2: Dovecot runs a process per session)",
    )
    args = parser.parse_args()
    users = [f"user{number}@example.test" for number in range(1, args.users + 1)]
    boxes = {
        user: {
            "INBOX": [message(number, user) for number in range(1, args.messages + 1)],
            "Archive": [message(number, user) for number in range(1, args.messages // 5 + 1)],
        }
        for user in users
    }
    work = Path(tempfile.mkdtemp(prefix="jitaku-imap-concurrent-"))
    work.chmod(0o755)
    servers: dict[str, int] = {}
    processes: list[subprocess.Popen[bytes]] = []
    dovecot = None
    results: dict[str, list[Timings]] = defaultdict(list)
    signins: dict[str, list[Timings]] = defaultdict(list)
    try:
        for workers in (int(count) for count in args.imap_workers.split(",")):
            name = "jitaku" if workers == 1 else f"jitaku w{workers}"
            process, servers[name] = start_jitaku(work / name.replace(" ", "-"), boxes, workers)
            processes.append(process)
            print(f"{name} serve pid {process.pid}, IMAP on port {servers[name]}", flush=True)
        if not args.jitaku_only:
            first = work / next(iter(servers)).replace(" ", "-")
            dovecot = start_dovecot(boxes, {user: password_hash(first, user) for user in users})
            servers["Dovecot"] = dovecot.port
        for port in servers.values():  # a first look: Dovecot builds its index, jitaku's pages come in
            workload(port, users, len(users), 0.5)
        # with one IMAP worker the serve process's own event loop runs every session (with more, forked workers)
        pids = {name: process.pid for name, process in zip(servers, processes, strict=False) if name == "jitaku"}
        for _ in range(args.rounds):
            for name, port in servers.items():
                before = main_thread_cpu(pids[name]) if name in pids else None
                timings = workload(port, users, args.clients, args.seconds)
                if before is not None:
                    timings.main_cpu = main_thread_cpu(pids[name]) - before
                results[name].append(timings)
                signins[name].append(logins(port, users, args.clients, args.login_seconds))
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        if dovecot is not None:
            dovecot.close()
        shutil.rmtree(work, ignore_errors=True)
    best = {name: max(rounds, key=lambda timings: timings.rate) for name, rounds in results.items()}
    best_logins = {name: max(rounds, key=lambda timings: timings.rate) for name, rounds in signins.items()}
    names = list(servers)
    print(
        f"{args.clients} clients, {args.users} users, {args.messages} messages in each INBOX; "
        f"best of {args.rounds} rounds of {args.seconds:g} s"
    )
    ours = [name for name in names if name != "Dovecot"]
    header = "".join(f"{name:>18}" for name in names)
    ratios = "".join(
        f"{'/ Dovecot' if name == 'jitaku' else name.removeprefix('jitaku ') + ' / D':>12}" for name in ours
    )
    print(f"{'':16}{header}{ratios}" if "Dovecot" in names else f"{'':16}{header}")

    def row(label: str, values: list[float], ratio: list[float] | None) -> None:
        cells = "".join(f"{value:18.1f}" for value in values)
        print(f"{label:16}{cells}" + "".join(f"{r:12.2f}" for r in ratio or []))

    def ratio_of(values: list[float]) -> list[float] | None:
        if "Dovecot" not in names or not values[-1]:
            return None
        return [value / values[-1] for value in values[:-1]]

    rates = [best[name].rate for name in names]
    row("operations/s", rates, ratio_of(rates))
    for name in ours:
        timings = best[name]
        if timings.main_cpu is not None and timings.operations:
            print(f"{name}: serve's main thread {timings.main_cpu / timings.operations * 1e6:.0f} µs CPU/operation")
    login_rates = [best_logins[name].rate for name in names]
    row("logins/s", login_rates, ratio_of(login_rates))
    print(f"{'p50 / p99, ms':16}" + "".join(f"{'':>18}" for _ in names))
    commands = sorted({command for name in names for command in best[name].took} | {"LOGIN"})
    for command in commands:
        cells = []
        for name in names:
            values = (best_logins if command == "LOGIN" else best)[name].took.get(command, [])
            cell = f"{percentile(values, 0.5) * 1000:.1f} / {percentile(values, 0.99) * 1000:.1f}" if values else "-"
            cells.append(f"{cell:>18}")
        medians = [
            statistics.median((best_logins if command == "LOGIN" else best)[n].took.get(command, [0])) for n in names
        ]
        print(f"{command:16}" + "".join(cells) + "".join(f"{r:12.2f}" for r in ratio_of(medians) or []))


if __name__ == "__main__":
    main()
