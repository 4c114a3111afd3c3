#!/usr/bin/env python3
"""List fan-out: one post to 1,000 members, jitaku's list against a Postfix `:include:` alias, same run.

Why: a list post is the heaviest thing a home server sends, one post turning into
a thousand deliveries, and the figure a list owner feels is "how long until the
last member has it". The well-known floor for pure fan-out is Postfix expanding
an alias whose members come from an `:include:` file, so every run measures both:
the same post (default 4 KiB) from the same member goes to `sota@example.test` on each server, whose 1,000 members are spread over
50 domains (m0@d0.test, m1@d1.test, ...; the poster, m0, gets a copy from both,
as jitaku's members get their own posts by default); rounds alternate between the
two and the best round of each is reported, because the machine is shared and noisy.
Postfix's alias also has an owner- alias, so its copies go out from
owner-sota@example.test, as a list's do.

The receivers: each member domain dK.test has its own MX address 127.0.X.Y, and
an smtp-sink(1) listens on each (one process per domain, same port), dumping
every transaction to a file on tmpfs. Both servers thus open one connection per
domain, as they would to real receivers:
  * jitaku finds the sinks through MX and A records served by a tiny dnslib
    server on 127.0.0.1 (`[dns] nameservers`; `[delivery] port` is the sinks' port).
    jitaku caches the answers, so only its first round pays for the lookups.
  * Postfix uses no DNS: `transport_maps` sends dK.test to `smtp:[127.0.X.Y]:PORT`,
    so each domain is its own destination (queue) in qmgr, as with real MX hosts.
    Everything else is Postfix's default: up to 50 recipients per transaction
    (smtp_destination_recipient_limit), 20 connections per destination, 100 smtp
    processes.

What is timed, for both: from the 250 that answers the post's DATA to the last
delivery, i.e. the newest modification time of the sinks' dump files once they
name every member (recipients are counted from smtp-sink's `X-Rcpt-Args` lines, so
Postfix's 50-recipient transactions and jitaku's one-transaction-per-member
count alike). File times come from the kernel's coarse clock: a few ms of error.
The printed breakdown: jitaku's "posted" is the `event=list_posted` log line
(numbered, composed, signed and committed to the queue, millisecond stamps);
"first" is the first transaction the sinks finished.

Not the same work: each jitaku copy is personal (its own one-click List-Unsubscribe
link, VERP envelope sender and DKIM-Signature), so jitaku sends 1,000 transactions
where Postfix sends one per domain (up to 50 recipients each, with PIPELINING), and
it signs, which an alias does not. The fair
floor is therefore Postfix's time plus the RSA signatures list mail
needs: DKIM, ARC-Message-Signature and ARC-Seal on each distinct copy, i.e. 3 per
member when each copy carries its own token. Those are timed in the same run with
`cryptography` (RSA-2048, PKCS#1 v1.5, SHA-256), in one thread and in two, and the
result is reported against both Postfix alone and the floor. (jitaku itself seals
once per post and signs DKIM once per member, so the floor is generous to it.)

Also printed: machine CPU-seconds per round, jitaku serve's own CPU-seconds (its
share of one core shows when the GIL is the limit), its idle and peak RSS, and any
jitaku log line other than the expected ones. With --profile, one more untimed
jitaku round runs with py-spy attached (GIL holder only) and the functions where
the time goes are listed. --jitaku-command runs another build of the CLI (e.g. a
wrapper that patches a module first) to measure a proposed change without touching src/.

Needs root (Postfix runs as its own instance: `postfix -c DIR start`; smtp-sink
drops to nobody), Postfix's binaries (postfix, postconf, smtp-sink), dnslib,
psutil and cryptography; py-spy for --profile. Helpers come from smtp_accept.py.

Clean-up: jitaku, Postfix and the sinks are stopped on a normal exit, on an error,
on Ctrl-C and on SIGTERM/SIGHUP; should this script be killed outright (kill -9), a
watchdog shell it leaves behind stops them. The work directories (jitaku's data and
log, Postfix's config, queue and maillog, the sinks' dumps) are removed unless the
run failed or --keep was given.

Usage: bench/list_fanout [--rounds 3] [--members 1000] [--domains 50] [--size 4096]
                         [--concurrency N] [--timeout 300] [--profile] [--keep]
                         [--jitaku-command "python3 patched_cli.py"]
"""

from __future__ import annotations

import argparse
import atexit
import collections
import os
import re
import shlex
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import formatdate
from pathlib import Path

import smtp_accept
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from dnslib import RR
from dnslib.server import DNSServer
from smtp_accept import (
    LOOPBACK,
    MASTER_CF,
    POSTFIX_PATHS,
    POSTFIX_SBIN,
    VMAIL_UID,
    Jitaku,
    Postfix,
    QuietLogger,
    Zone,
    free_port,
    jitaku_command,
    machine_cpu,
    print_profile,
    process_cpu,
    rss_mb,
    say,
    set_toml_keys,
    wait_for_banner,
)

LIST_DOMAIN = "example.test"
LIST_LOCAL = "sota"
LIST = f"{LIST_LOCAL}@{LIST_DOMAIN}"
SIGNATURES_PER_COPY = 3  # DKIM-Signature, ARC-Message-Signature, ARC-Seal
SETTLE = 0.3  # seconds to wait after the last recipient shows up, for its file to be complete
POLL = 0.05
# jitaku log events a fan-out round is expected to produce; anything else is shown
EXPECTED_EVENTS = {"accepted", "delivered", "delivery_attempt", "list_posted", "started"}


# ---------------------------------------------------------------- the list


@dataclass(frozen=True)
class Layout:
    """Who is on the list and where each member domain's receiver listens."""

    members: int
    domains: int

    def domain(self, index: int) -> str:
        return f"d{index}.test"

    def member(self, index: int) -> str:
        return f"m{index}@{self.domain(index % self.domains)}"

    def addresses(self) -> list[str]:
        return [self.member(i) for i in range(self.members)]

    def sink_address(self, index: int) -> str:
        """Domain INDEX's receiver: 127.0.1.1, 127.0.1.2, ... (all of 127/8 is loopback on Linux)."""
        return f"127.0.{1 + index // 250}.{1 + index % 250}"

    def zone(self) -> str:
        lines = []
        for index in range(self.domains):
            lines.append(f"{self.domain(index)}. 300 IN MX 10 mx.{self.domain(index)}.")
            lines.append(f"mx.{self.domain(index)}. 300 IN A {self.sink_address(index)}")
        return "\n".join(lines) + "\n"

    @property
    def poster(self) -> str:
        return self.member(0)  # a member (or the post is held); members get their own posts by default


def post_message(layout: Layout, size: int) -> bytes:
    """A plain-text post of about SIZE bytes of body, as a member's mail program would send it."""
    line = "The quick brown fox jumps over the lazy dog; list fan-out benchmark text. 0123456789\r\n"
    body = (line * (size // len(line) + 1))[:size].rsplit("\r\n", 1)[0] + "\r\n"
    head = (
        f"From: Member Zero <{layout.poster}>\r\n"
        f"To: SOTA <{LIST}>\r\n"
        f"Subject: fan-out benchmark post\r\n"
        f"Date: {formatdate(localtime=False)}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@{layout.poster.partition('@')[2]}>\r\n"
        f"MIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\n"
        f"Content-Transfer-Encoding: 7bit\r\n"
    )
    return (head + "\r\n" + body).encode()


def send_post(port: int, sender: str, message: bytes) -> float:
    """Submit MESSAGE to LIST on PORT; return the wall-clock time of the 250 that answered DATA."""
    with smtplib.SMTP(LOOPBACK, port, local_hostname="client.d0.test", timeout=120) as client:
        client.sendmail(sender, [LIST], message)
        answered = time.time()
        try:
            client.quit()
        except smtplib.SMTPException:
            pass
    return answered


# ---------------------------------------------------------------- the receivers


@dataclass
class Sinks:
    """One smtp-sink per member domain, all on the same port, dumping transactions to tmpfs."""

    root: Path
    layout: Layout
    log: Path
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    counted: dict[str, int] = field(default_factory=dict)  # dump file -> its recipients
    recipients: collections.Counter[str] = field(default_factory=collections.Counter)

    def dirs(self) -> list[Path]:
        return [self.root / f"s{index}" for index in range(self.layout.domains)]

    def start(self) -> None:
        self.root.chmod(0o755)
        log = open(self.log, "ab")
        try:
            for index, directory in enumerate(self.dirs()):
                directory.mkdir(exist_ok=True)
                os.chown(directory, VMAIL_UID, VMAIL_UID)  # smtp-sink writes as nobody
                address = self.layout.sink_address(index)
                self.processes.append(
                    subprocess.Popen(
                        [
                            str(POSTFIX_SBIN / "smtp-sink"),
                            "-u",
                            "nobody",
                            "-d",
                            f"{directory}/%H%M%S.",
                            f"{address}:{self.port}",
                            "1024",
                        ],
                        stdout=log,
                        stderr=log,
                        stdin=subprocess.DEVNULL,
                        # one process group for all sinks, led by the first, out of reach of a terminal's Ctrl-C
                        process_group=self.processes[0].pid if self.processes else 0,
                    )
                )
        finally:
            log.close()
        for index in range(self.layout.domains):
            wait_for_greeting(self.layout.sink_address(index), self.port, self.log)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes = []

    def reset(self) -> None:
        """Forget the last round: delete the dump files (nothing is in flight between rounds)."""
        for directory in self.dirs():
            with os.scandir(directory) as entries:
                for entry in entries:
                    os.unlink(entry.path)
        self.counted.clear()
        self.recipients.clear()

    def poll(self) -> int:
        """Count the recipients of dump files whose smtp-sink header is complete; return the total so far."""
        for directory in self.dirs():
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.path in self.counted:
                        continue
                    try:
                        with open(entry.path, "rb") as dump:
                            head = dump.read(65536)
                    except FileNotFoundError:
                        continue
                    end = head.find(b"\nReceived: ")
                    if end < 0:
                        continue  # smtp-sink has not written its header yet
                    found = re.findall(rb"^X-Rcpt-Args: <([^>]*)>", head[:end], re.MULTILINE)
                    self.counted[entry.path] = len(found)
                    self.recipients.update(address.decode().lower() for address in found)
        return sum(self.counted.values())

    def wait(self, expected: int, timeout: float, explain: Callable[[], str]) -> None:
        deadline = time.monotonic() + timeout
        while (count := self.poll()) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {count} of {expected} recipients reached the sinks after {timeout:g}s\n{explain()}"
                )
            time.sleep(POLL)
        time.sleep(SETTLE)  # let the last transactions finish writing; extra deliveries would show up too
        self.poll()

    def times(self) -> tuple[float, float]:
        """Wall-clock times at which the first and the last transaction were finished."""
        stamps = [os.stat(path).st_mtime_ns / 1e9 for path in self.counted]
        return min(stamps), max(stamps)

    def check(self, wanted: list[str]) -> None:
        """Every member exactly once."""
        missing = [address for address in wanted if address not in self.recipients]
        extra = {address: n for address, n in self.recipients.items() if n > 1}
        strangers = set(self.recipients) - set(wanted)
        if missing or extra or strangers:
            raise RuntimeError(
                f"wrong deliveries: {len(missing)} members missing (e.g. {missing[:3]}), "
                f"{len(extra)} got more than one copy (e.g. {list(extra.items())[:3]}), "
                f"{len(strangers)} non-members (e.g. {sorted(strangers)[:3]})"
            )

    def sample(self) -> bytes:
        path = next(iter(self.counted))
        return Path(path).read_bytes()


def wait_for_greeting(host: str, port: int, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                if sock.recv(512).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.05)
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
    raise RuntimeError(f"smtp-sink on {host}:{port} did not greet within {timeout:.0f}s\n{tail}")


class Watchdog:
    """A shell left behind that stops what this script started if it dies without cleaning up (kill -9).

    It waits for a line on a pipe from this script: "done" after a normal clean-up, or end-of-file when
    this script is gone, in which case it runs its commands. (The servers run in process groups of
    their own, so a terminal's Ctrl-C reaches only this script, which stops them in order.)
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None

    def arm(self, commands: list[str]) -> None:
        script = 'read line; [ "$line" = done ] && exit 0; ' + "; ".join(f"{c} >/dev/null 2>&1" for c in commands)
        self.process = subprocess.Popen(
            ["sh", "-c", script],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def disarm(self) -> None:
        if self.process is not None and self.process.stdin is not None:
            try:
                self.process.stdin.write(b"done\n")
                self.process.stdin.close()
            except OSError:
                pass
            self.process.wait()
        self.process = None


# ---------------------------------------------------------------- jitaku


@dataclass
class ListJitaku(Jitaku):
    """smtp_accept's jitaku, set up with a list instead of a mailbox."""

    layout: Layout = Layout(0, 1)
    sink_port: int = 0
    concurrency: int | None = None

    def setup(self) -> None:
        self.cli("init", "--domain", LIST_DOMAIN)
        delivery = {"port": str(self.sink_port)}
        if self.concurrency is not None:
            delivery["concurrency"] = str(self.concurrency)
        config = self.dir / "jitaku.toml"
        config.write_text(
            set_toml_keys(
                config.read_text(),
                {
                    "smtp": {"listen": f'["{LOOPBACK}:{self.port}"]', "workers": str(self.workers)},
                    "submission": {"listen": f'["{LOOPBACK}:{self.submission_port}"]'},
                    "submissions": {"listen": "[]"},
                    "imap": {"listen": "[]"},  # off: a running jitaku has 2143 and 2110
                    "pop3": {"listen": "[]"},
                    "web": {"listen": "[]"},
                    "dns": {"nameservers": f'["{LOOPBACK}:{self.dns_port}"]'},
                    "delivery": delivery,
                    "queue": {"retry_min": "1"},
                },
            )
        )
        self.cli("list", "create", LIST, "--name", "SOTA")
        members = self.dir.parent / "members.txt"
        members.write_text("\n".join(self.layout.addresses()) + "\n")
        self.cli("list", "import", LIST, str(members))

    def start(self) -> None:
        """As smtp_accept's, but in a session of its own (see Watchdog)."""
        log = open(self.log, "ab")
        self.process = subprocess.Popen(
            [*jitaku_command(), "serve", "--dir", str(self.dir)],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        try:
            wait_for_banner(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError("jitaku serve did not start:\n" + self.log.read_text(errors="replace")[-3000:]) from None

    def check_alive(self) -> None:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("jitaku serve is not running:\n" + self.log.read_text(errors="replace")[-3000:])

    @property
    def log(self) -> Path:
        return self.dir / "serve.log"

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> list[str]:
        with open(self.log, "rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace").splitlines()

    def explain(self, offset: int) -> Callable[[], str]:
        def tail() -> str:
            lines = self.log_since(offset)
            unusual = [line for line in lines if event_of(line) not in EXPECTED_EVENTS]
            delivered = sum(1 for line in lines if is_remote_delivery(line))
            return (
                f"jitaku logged {delivered} deliveries; last lines of {self.log} other than the expected events:\n"
                + ("\n".join(unusual[-15:]) or "(none)")
            )

        return tail


def event_of(line: str) -> str | None:
    match = re.search(r"\bevent=(\S+)", line)
    return match.group(1) if match else None


def is_remote_delivery(line: str) -> bool:
    return event_of(line) == "delivered" and "relay=list" not in line


def stamp_of(line: str) -> float | None:
    """The wall-clock time of a log line (log.py's asctime: local time, millisecond resolution)."""
    try:
        return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


# ---------------------------------------------------------------- Postfix

MAIN_CF = (
    "# A throwaway Postfix instance for bench/list_fanout: loopback only, a list as an :include: alias.\n"
    + POSTFIX_PATHS
    + """\

myhostname = postfix.{domain}
mydomain = {domain}
myorigin = $mydomain
mydestination = {domain}
inet_interfaces = {loopback}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
biff = no
smtputf8_enable = no

# The list: local(8) expands {local} from its :include: file (root-owned, so trusted) and hands the
# members to smtp(8); owner-{local} makes the envelope sender owner-{local}@{domain}, as lists do.
alias_maps = texthash:{base}/conf/aliases
alias_database =
local_recipient_maps =

# Each member domain is its own destination, reached without DNS (jitaku asks a local stub instead).
transport_maps = texthash:{base}/conf/transport
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_tls_security_level =
smtpd_banner = $myhostname ESMTP
"""
)


@dataclass
class AliasPostfix(Postfix):
    """smtp_accept's Postfix instance, with the list as an alias instead of a virtual mailbox."""

    layout: Layout = Layout(0, 1)
    sink_port: int = 0

    def setup(self) -> None:
        for sub in ("conf", "queue", "data", "lists"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
            (self.base / sub).chmod(0o755)
        self.base.chmod(0o755)
        values = {"base": self.base, "domain": LIST_DOMAIN, "local": LIST_LOCAL, "loopback": LOOPBACK}
        (self.conf / "main.cf").write_text(MAIN_CF.format(**values))
        (self.conf / "master.cf").write_text(MASTER_CF.format(loopback=LOOPBACK, port=self.port))
        members = self.base / "lists" / LIST_LOCAL
        members.write_text("\n".join(self.layout.addresses()) + "\n")
        members.chmod(0o644)
        (self.conf / "aliases").write_text(
            f"{LIST_LOCAL} :include:{members}\nowner-{LIST_LOCAL} {self.layout.poster}\n"
        )
        (self.conf / "transport").write_text(
            "".join(
                f"{self.layout.domain(i)} smtp:[{self.layout.sink_address(i)}]:{self.sink_port}\n"
                for i in range(self.layout.domains)
            )
        )
        shutil.chown(self.base / "data", "postfix", "postfix")
        self.postfix("check")  # creates the queue's subdirectories with their owners and modes

    def settings(self, *names: str) -> str:
        result = subprocess.run(
            [str(POSTFIX_SBIN / "postconf"), "-x", "-c", str(self.conf), *names], capture_output=True, text=True
        )
        return "; ".join(line.strip() for line in result.stdout.splitlines())

    def queued(self) -> int:
        """Messages still in the queue (the alias's expansion included)."""
        count = 0
        for sub in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _root, _dirs, files in os.walk(self.base / "queue" / sub):
                count += len(files)
        return count

    def explain(self) -> str:
        log = self.base / "maillog"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else ["(no maillog)"]
        unusual = [line for line in lines if "status=sent" not in line][-15:]
        return f"{self.queued()} messages in Postfix's queue; last lines of {log} other than status=sent:\n" + (
            "\n".join(unusual)
        )


# ---------------------------------------------------------------- rounds


@dataclass(frozen=True)
class Round:
    seconds: float  # the 250 to the last delivery
    first: float  # the 250 to the first finished transaction
    posted: float | None  # jitaku: the 250 to event=list_posted
    transactions: int
    machine_cpu: float
    server_cpu: float | None  # jitaku serve's own CPU-seconds; None for Postfix
    observer_cpu: float  # this script's (sink polling, the DNS stub's threads), part of machine_cpu


def round_jitaku(jitaku: ListJitaku, sinks: Sinks, layout: Layout, size: int, timeout: float) -> Round:
    jitaku.check_alive()
    assert jitaku.process is not None
    pid = jitaku.process.pid
    sinks.reset()
    offset = jitaku.log_size()
    machine, server, observer = machine_cpu(), sum(process_cpu(pid)), time.process_time()
    answered = send_post(jitaku.port, layout.poster, post_message(layout, size))
    sinks.wait(layout.members, timeout, jitaku.explain(offset))
    first, last = sinks.times()
    # the queue records each delivery after the sink has it: wait for the records, so rounds do not overlap
    deadline = time.monotonic() + 60
    while sum(1 for line in jitaku.log_since(offset) if is_remote_delivery(line)) < layout.members:
        if time.monotonic() > deadline:
            raise RuntimeError(
                "jitaku: the sinks have every copy but the log lacks deliveries\n" + jitaku.explain(offset)()
            )
        time.sleep(POLL)
    measured_machine, measured_server = machine_cpu() - machine, sum(process_cpu(pid)) - server
    measured_observer = time.process_time() - observer
    sinks.check(layout.addresses())
    lines = jitaku.log_since(offset)
    posted = next((stamp_of(line) for line in lines if event_of(line) == "list_posted"), None)
    unusual = [line for line in lines if event_of(line) not in EXPECTED_EVENTS]
    for line in unusual[:10]:
        say(f"    jitaku log: {line}")
    if len(unusual) > 10:
        say(f"    ... and {len(unusual) - 10} more unusual lines in {jitaku.log}")
    return Round(
        last - answered,
        first - answered,
        None if posted is None else posted - answered,
        len(sinks.counted),
        measured_machine,
        measured_server,
        measured_observer,
    )


def round_postfix(postfix: AliasPostfix, sinks: Sinks, layout: Layout, size: int, timeout: float) -> Round:
    sinks.reset()
    machine, observer = machine_cpu(), time.process_time()
    answered = send_post(postfix.port, layout.poster, post_message(layout, size))
    sinks.wait(layout.members, timeout, postfix.explain)
    first, last = sinks.times()
    deadline = time.monotonic() + 60
    while postfix.queued():
        if time.monotonic() > deadline:
            raise RuntimeError("postfix: the sinks have every copy but the queue is not empty\n" + postfix.explain())
        time.sleep(POLL)
    measured_machine, measured_observer = machine_cpu() - machine, time.process_time() - observer
    sinks.check(layout.addresses())
    return Round(last - answered, first - answered, None, len(sinks.counted), measured_machine, None, measured_observer)


def signing_seconds(key: rsa.RSAPrivateKey, count: int, threads: int) -> float:
    """Seconds for COUNT RSA PKCS#1 v1.5 SHA-256 signatures over distinct header-sized inputs, in THREADS threads."""
    header = b"from:Member Zero <m0@d0.test>\r\nsubject:[sota:00001] fan-out\r\ndkim-signature:v=1; a=rsa-sha256; " * 3

    def work(start: int, stop: int) -> None:
        for index in range(start, stop):
            key.sign(header + index.to_bytes(4, "big"), padding.PKCS1v15(), hashes.SHA256())

    started = time.perf_counter()
    if threads == 1:
        work(0, count)
    else:
        bounds = [count * part // threads for part in range(threads + 1)]
        with ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(work, bounds[i], bounds[i + 1]) for i in range(threads)]:
                future.result()
    return time.perf_counter() - started


def profile_round(jitaku: ListJitaku, sinks: Sinks, layout: Layout, size: int, timeout: float, out: Path) -> None:
    """One more jitaku round with py-spy attached; print where the samples fall."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        say("\n--profile: py-spy not found (pip install py-spy); skipped")
        return
    assert jitaku.process is not None
    raw = out / "jitaku-list-profile.txt"
    spy = subprocess.Popen(
        [py_spy, "record", "--pid", str(jitaku.process.pid), "--format", "raw", "--function", "--threads", "--gil"]
        + ["--rate", "250", "--output", str(raw)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(1.5)  # let py-spy attach
    if spy.poll() is not None:
        say(f"\n--profile: py-spy exited at once:\n{spy.stdout.read().decode(errors='replace') if spy.stdout else ''}")
        return
    try:
        measured = round_jitaku(jitaku, sinks, layout, size, timeout)
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    say(
        f"\nProfile round (py-spy --gil at 250 Hz: only the thread holding the GIL is sampled; not counted): "
        f"{measured.seconds:.2f} s to last delivery; raw stacks in {raw}"
    )
    if not raw.exists():
        say("py-spy wrote nothing:\n" + (spy.stdout.read().decode(errors="replace") if spy.stdout else ""))
        return
    print_profile(raw, 25)


# ---------------------------------------------------------------- main


def describe(name: str, measured: Round, members: int) -> str:
    parts = [f"{measured.seconds:7.2f} s to last delivery ("]
    if measured.posted is not None:
        parts.append(f"posted {measured.posted:.2f} s, ")
    parts.append(f"first {measured.first:.2f} s); {members} recipients in {measured.transactions} transactions;")
    parts.append(f" machine CPU {measured.machine_cpu:.2f} s (this script {measured.observer_cpu:.2f} s)")
    if measured.server_cpu is not None:
        parts.append(
            f", jitaku serve CPU {measured.server_cpu:.2f} s ({measured.server_cpu / measured.seconds:.0%} of a core)"
        )
    return f"{name:8s}" + "".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server, alternating (default 3)")
    parser.add_argument("--members", type=int, default=1000, help="list members (default 1000)")
    parser.add_argument("--domains", type=int, default=50, help="member domains, one receiver each (default 50)")
    parser.add_argument("--size", type=int, default=4096, help="body bytes of the post (default 4096)")
    parser.add_argument(
        "--concurrency", type=int, default=None, help="jitaku's [delivery] concurrency (default: jitaku's default)"
    )
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a round may take (default 300)")
    parser.add_argument(
        "--profile", action="store_true", help="one more jitaku round under py-spy; print the top functions"
    )
    parser.add_argument(
        "--jitaku-command",
        default="",
        help="command line that runs jitaku's CLI (default: the installed `jitaku`), to compare a patched build",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories (logs, databases, dumps)")
    args = parser.parse_args()

    if os.geteuid() != 0:
        say("bench/list_fanout runs a Postfix instance and smtp-sinks, and needs root")
        return 2
    for tool in ("postfix", "postconf", "smtp-sink"):
        if not (POSTFIX_SBIN / tool).exists():
            say(f"missing {POSTFIX_SBIN / tool}: install Postfix")
            return 2
    if not 1 <= args.domains <= 250 * 254 or args.members < args.domains or args.rounds < 1:
        say("need 1 <= --domains <= --members and --rounds >= 1")
        return 2
    if args.jitaku_command:
        smtp_accept.JITAKU_COMMAND[:] = shlex.split(args.jitaku_command)

    layout = Layout(args.members, args.domains)
    base = Path(tempfile.mkdtemp(prefix="jitaku-list-fanout-"))
    base.chmod(0o755)  # Postfix daemons (and local(8) as nobody, reading the :include: file) must reach their files
    shm = Path("/dev/shm")
    dumps = Path(tempfile.mkdtemp(prefix="jitaku-list-fanout-sinks-", dir=shm if shm.is_dir() else base))

    resolver = Zone(RR.fromZone(layout.zone()))
    dns_port = free_port(socket.SOCK_DGRAM)
    dns_servers = [
        DNSServer(resolver, address=LOOPBACK, port=dns_port, logger=QuietLogger()),
        DNSServer(resolver, address=LOOPBACK, port=dns_port, tcp=True, logger=QuietLogger()),
    ]
    sinks = Sinks(dumps, layout, base / "smtp-sink.log")
    jitaku = ListJitaku(base, dns_port, layout=layout, sink_port=sinks.port, concurrency=args.concurrency)
    postfix = AliasPostfix(base, layout=layout, sink_port=sinks.port)

    watchdog = Watchdog()
    finished = False

    def cleanup() -> None:
        for step in (jitaku.stop, postfix.stop, sinks.stop, watchdog.disarm):
            try:
                step()
            except Exception as error:  # keep cleaning up
                say(f"cleanup: {error}")
        for server in dns_servers:
            if server.isAlive():
                server.stop()
        if args.keep or not finished:
            say(
                f"kept {base} and {dumps}"
                + ("" if finished else " (the run did not finish: logs are in jitaku/serve.log, postfix/maillog)")
            )
        else:
            shutil.rmtree(base, ignore_errors=True)
            shutil.rmtree(dumps, ignore_errors=True)

    atexit.register(cleanup)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: sys.exit(128 + number))

    for server in dns_servers:
        server.start_thread()
    say(
        f"load: one {args.size}-byte post to {LIST} with {layout.members} members over {layout.domains} domains "
        f"(one smtp-sink each on 127.0.X.Y:{sinks.port}); best of {args.rounds} alternating rounds; "
        f"{os.cpu_count()} CPUs"
    )
    say(f"work dir {base}; sink dumps in {dumps}")

    sinks.start()
    jitaku.setup()
    postfix.setup()
    jitaku.start()
    postfix.start()
    assert jitaku.process is not None
    watchdog.arm(
        [
            f"kill -TERM {jitaku.process.pid}",
            f"kill -TERM -{sinks.processes[0].pid}",
            f"{POSTFIX_SBIN / 'postfix'} -c {postfix.conf} stop",
        ]
    )
    time.sleep(1.0)
    idle_rss, _ = rss_mb(jitaku.process.pid)
    concurrency = args.concurrency
    if concurrency is None:
        from jitaku.config import DeliverySettings

        concurrency = DeliverySettings().concurrency
    say(
        f"jitaku serve pid {jitaku.process.pid} on {LOOPBACK}:{jitaku.port}; idle RSS {idle_rss:.1f} MiB; "
        f"[delivery] concurrency {concurrency}"
    )
    say(
        f"postfix (master pid {postfix.pids()[:1]}) on {LOOPBACK}:{postfix.port}: "
        + postfix.settings(
            "smtp_destination_recipient_limit", "default_destination_concurrency_limit", "default_process_limit"
        )
    )

    key = rsa.generate_private_key(65537, 2048)
    signatures = SIGNATURES_PER_COPY * layout.members
    rounds: dict[str, list[Round]] = {"jitaku": [], "postfix": []}
    signing: dict[int, list[float]] = {1: [], 2: []}
    for number in range(args.rounds):
        order = ("jitaku", "postfix") if number % 2 == 0 else ("postfix", "jitaku")
        for name in order:
            if name == "jitaku":
                measured = round_jitaku(jitaku, sinks, layout, args.size, args.timeout)
            else:
                measured = round_postfix(postfix, sinks, layout, args.size, args.timeout)
            rounds[name].append(measured)
            say(f"  round {number + 1} {describe(name, measured, layout.members)}")
            if name == "jitaku" and number == 0:
                header = sinks.sample().decode(errors="replace").split("\n\n", 1)[0]
                counts = ", ".join(
                    f"{field} x{header.count(chr(10) + field + ':')}"
                    for field in ("DKIM-Signature", "ARC-Seal", "ARC-Message-Signature", "List-Unsubscribe")
                )
                say(f"    (one jitaku copy as received: {counts})")
        for threads in (1, 2) if number % 2 == 0 else (2, 1):
            signing[threads].append(signing_seconds(key, signatures, threads))
        say(
            f"  round {number + 1} signing  {signatures} RSA-2048 signatures: "
            f"1 thread {signing[1][-1]:.2f} s, 2 threads {signing[2][-1]:.2f} s"
        )
    _, peak_rss = rss_mb(jitaku.process.pid)
    best = {name: min(values, key=lambda r: r.seconds) for name, values in rounds.items()}
    sign = {threads: min(values) for threads, values in signing.items()}
    jit, pfx = best["jitaku"].seconds, best["postfix"].seconds
    say("")
    for name in ("jitaku", "postfix"):
        say(
            f"{name:7s} {best[name].seconds:6.2f} s to last delivery (best of {args.rounds}; all: "
            f"{', '.join(f'{r.seconds:.2f}' for r in rounds[name])}); "
            f"{layout.members / best[name].seconds:,.0f} deliveries/s; machine CPU in the best round "
            f"{best[name].machine_cpu:.2f} s"
        )
    if best["jitaku"].posted is not None:
        posted = best["jitaku"].posted
        say(
            f"        jitaku's best round: {posted:.2f} s until event=list_posted (numbered, composed, "
            f"{layout.members} copies signed, queued), then {best['jitaku'].seconds - posted:.2f} s of delivery "
            f"({best['jitaku'].transactions} transactions)"
        )
    say(
        f"signing {signatures} RSA-2048 signatures ({SIGNATURES_PER_COPY} per copy): "
        f"1 thread {sign[1]:.2f} s, 2 threads {sign[2]:.2f} s (best of {args.rounds}; "
        f"{1000 * sign[1] / signatures:.2f} ms each)"
    )
    if sign[2] > sign[1] / 1.2:
        say(
            "        (2 threads are barely faster than 1: cryptography holds the GIL while it signs, or the CPUs are busy)"
        )
    floor1, floor2 = pfx + sign[1], pfx + min(sign[1], sign[2])
    say(
        f"jitaku {jit:.2f} s, postfix {pfx:.2f} s, ratio (postfix/jitaku) {pfx / jit:.2f}; "
        f"floor (postfix + signing {sign[1]:.2f} s) {floor1:.2f} s, ratio vs floor {floor1 / jit:.2f}; "
        f"with 2 threads (postfix + {min(sign[1], sign[2]):.2f} s) {floor2:.2f} s, ratio vs floor {floor2 / jit:.2f}"
    )
    say(
        f"goal (jitaku no slower than Postfix): {'met' if jit <= pfx else 'not met'}; "
        f"against the floor: {'met' if jit <= floor2 else 'not met'} (2 threads), "
        f"{'met' if jit <= floor1 else 'not met'} (1 thread)"
    )
    say(
        f"jitaku serve RSS: idle {idle_rss:.1f} MiB, peak {peak_rss:.1f} MiB; "
        f"Postfix master+children now: {postfix.pss_mb():.1f} MiB PSS in all"
    )
    queries = sum(resolver.queries.values())
    say(
        f"DNS stub answered {queries} queries in all; most asked: "
        + ", ".join(f"{name} x{count}" for name, count in resolver.queries.most_common(3))
    )

    if args.profile:
        profile_round(
            jitaku, sinks, layout, args.size, args.timeout, base if args.keep else Path(tempfile.gettempdir())
        )
    finished = True
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted")
        sys.exit(130)
    except (RuntimeError, OSError, subprocess.SubprocessError) as error:
        say(f"failed: {error!r}" if isinstance(error, OSError) else f"failed: {error}")
        sys.exit(1)
