#!/usr/bin/env python3
"""Time from failure to alert, with the default check interval (60 s): the issue's target is five minutes
for each failure of the story (it was four days, a night and two months).

One `jitaku serve` on loopback watches an mdstat file, disks behind a fake smartctl, a mail-flow probe
through our MX (a dnslib server plays the world's DNS, and the public resolvers for the dns check), and
a buddy jitaku. Each round breaks everything at a random moment of the check cycle:

  raid      md1 degraded, sdb3 failed               (mdstat fixture swapped)
  smart     sdb reallocating sectors                (fake smartctl's answer swapped)
  mailflow  example.test's MX points at an address where nothing listens
  dns       the public resolver answers our old address
  buddy     the buddy jitaku is killed (-9)
  traffic   the traffic coming in on an interface (a veth from a network namespace of the bench's own,
            where a UDP sender plays the world) stops, at an hour whose earlier days had it

and times each alert's arrival at a local webhook (apprise json://), then mends everything and times the
recovery notices. There is no peer to compare with: the figures stand against the target (300 s).

Usage: bench/time_to_alert [--rounds 2] [--interval 60]   (as root, for the namespace)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from dnslib import RR, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
JITAKU = [sys.executable, "-m", "jitaku"]
CHECKS = ("raid", "smart", "mailflow", "dns", "buddy", "traffic")
NAMESPACE, LINK = "jitaku-bench", "jtbench0"  # the world's end of the veth lives in the namespace
USUAL_RATE = 256 * 1024.0  # bytes/s in at this hour on the days before, and what the sender sends
TARGET = 300.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Zone(BaseResolver):
    """A DNS server whose example.test records the bench sets: the MX host's address."""

    def __init__(self, address: str) -> None:
        self.records: list[RR] = []
        self.set(address)

    def set(self, address: str) -> None:
        self.address = address
        self.records = RR.fromZone(
            "example.test. 1 IN SOA ns.example.test. hostmaster.example.test. 1 60 60 60 1\n"
            "example.test. 1 IN MX 10 mail.example.test.\n"
            f"mail.example.test. 1 IN A {address}\n"
        )

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        for record in self.records:
            if record.rname == request.q.qname and record.rtype == request.q.qtype:
                reply.add_answer(record)
        if not reply.rr:
            reply.add_auth(self.records[0])
        return reply


def serve_dns(zone: Zone) -> int:
    port = free_port()
    DNSServer(zone, address="127.0.0.1", port=port, logger=DNSLogger("-request,-reply,-truncated,-data")).start_thread()
    return port


class Hook:
    def __init__(self) -> None:
        self.alerts: list[tuple[float, str]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                hook.alerts.append((time.monotonic(), body["title"]))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def first(self, words: str, since: float) -> float | None:
        return next((at for at, title in self.alerts if at >= since and title.endswith(words)), None)


def toml(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, bool) else str(value).lower()


class Server:
    def __init__(self, directory: Path, name: str) -> None:
        self.dir = directory / name
        self.dir.mkdir(parents=True)
        self.smtp, self.web = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def write(self, text: str) -> None:
        (self.dir / "jitaku.toml").write_text(text)
        subprocess.run([*JITAKU, "init", "--dir", str(self.dir)], check=True, capture_output=True)
        subprocess.run(
            [*JITAKU, "user", "add", "probe@example.test", "--password-stdin", "--dir", str(self.dir)],
            input=b"probe-password\n",
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        log = open(self.dir / "serve.log", "ab")
        self.process = subprocess.Popen([*JITAKU, "serve", "--dir", str(self.dir)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.smtp), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"jitaku in {self.dir} did not start")

    def kill(self) -> None:
        if self.process:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None


class World:
    """Traffic in on LINK: a UDP sender in NAMESPACE, at about USUAL_RATE, until it is stopped."""

    def __init__(self) -> None:
        self.sender: subprocess.Popen[bytes] | None = None
        subprocess.run(["ip", "netns", "delete", NAMESPACE], capture_output=True)  # left by an earlier run
        subprocess.run(["ip", "link", "delete", LINK], capture_output=True)
        for command in (
            ["netns", "add", NAMESPACE],
            ["link", "add", LINK, "type", "veth", "peer", "name", "world0", "netns", NAMESPACE],
            ["addr", "add", "10.99.0.1/30", "dev", LINK],
            ["link", "set", LINK, "up"],
            ["-n", NAMESPACE, "addr", "add", "10.99.0.2/30", "dev", "world0"],
            ["-n", NAMESPACE, "link", "set", "world0", "up"],
        ):
            subprocess.run(["ip", *command], check=True)

    def send(self) -> None:
        pump = (
            "import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "while True:\n"
            f"    for _ in range({int(USUAL_RATE / 10 / 1024)}): s.sendto(bytes(1024), ('10.99.0.1', 9))\n"
            "    time.sleep(0.1)\n"
        )
        self.sender = subprocess.Popen(["ip", "netns", "exec", NAMESPACE, sys.executable, "-c", pump])

    def stop_sending(self) -> None:
        if self.sender is not None:
            self.sender.kill()
            self.sender.wait()
            self.sender = None

    def close(self) -> None:
        self.stop_sending()
        subprocess.run(["ip", "netns", "delete", NAMESPACE], capture_output=True)


def earlier_days(server: Server) -> None:
    """This hour on the three days before had USUAL_RATE coming in: what the traffic check learns from."""
    from jitaku import store
    from jitaku.health.result import Result, State
    from jitaku.store import Database

    database = Database(f"sqlite:///{server.dir / 'jitaku.db'}")
    with database.transaction() as connection:
        for days in (1, 2, 3):
            store.health.record(
                connection, Result("traffic", State.OK, "", {"rx_rate": USUAL_RATE}), time.time() - days * 86400
            )
    database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interval", type=float, default=60.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jitaku-alert-bench-"))
    # Two views of DNS: where a stranger's server connects for our MX (loopback here), and what the
    # public resolvers answer for our name (a documentation address standing for our public one).
    local, public = Zone("127.0.0.1"), Zone("203.0.113.7")
    local_port, public_port = serve_dns(local), serve_dns(public)
    hook = Hook()
    mdstat, devices = work / "mdstat", work / "devices.json"
    smartctl = work / "smartctl"
    fake = FIXTURES / "smartctl" / "fake_smartctl.py"
    smartctl.write_text(f'#!/bin/sh\nexec {sys.executable} {fake} {devices} "$@"\n')
    smartctl.chmod(0o755)
    home, friend = Server(work, "home"), Server(work, "friend")
    world = World()

    def healthy() -> None:
        shutil.copy(FIXTURES / "mdstat" / "healthy_raid1.txt", mdstat)
        devices.write_text(json.dumps({"/dev/sda": "healthy", "/dev/sdb": "healthy"}))
        local.set("127.0.0.1")
        public.set("203.0.113.7")
        world.send()

    def broken() -> None:
        shutil.copy(FIXTURES / "mdstat" / "failed_member.txt", mdstat)
        devices.write_text(json.dumps({"/dev/sda": "healthy", "/dev/sdb": "reallocating"}))
        local.set("127.0.0.2")  # the MX leads where nothing listens
        public.set("192.0.2.1")  # the world's resolvers still have the address from before the power cut
        friend.kill()
        world.stop_sending()  # nobody outside reaches us any more

    healthy()
    common = (
        f'hostname = "mail.example.test"\ndomains = ["example.test"]\n'
        f'[dns]\nnameservers = ["127.0.0.1:{local_port}"]\n[submission]\nlisten = []\n'
    )
    friend.write(
        common + f'[smtp]\nlisten = ["127.0.0.1:{friend.smtp}"]\n[web]\nlisten = ["127.0.0.1:{friend.web}"]\n'
        '[health]\nenabled = false\n[health.buddy]\nurl = "http://127.0.0.1:1"\ntoken = "bench-token-0123456789"\n'
    )
    home.write(
        common + f'[smtp]\nlisten = ["127.0.0.1:{home.smtp}"]\n[web]\nlisten = ["127.0.0.1:{home.web}"]\n'
        f"[delivery]\nport = {home.smtp}\n[health]\ninterval = {args.interval}\n"
        f'[health.raid]\nmdstat = {toml(str(mdstat))}\nlsblk = "true"\n'
        f"[health.smart]\nsmartctl = {toml(str(smartctl))}\n"
        '[health.mailflow]\nto = "probe@example.test"\n'
        f'[health.dns]\nresolvers = ["127.0.0.1:{public_port}"]\n'
        f'[health.buddy]\nurl = "http://127.0.0.1:{friend.web}"\ntoken = "bench-token-0123456789"\n'
        f'theirs = ["127.0.0.1:{friend.smtp}"]\n'
        f'[public_ip]\nsources = ["http://127.0.0.1:{echo("203.0.113.7")}/"]\n'
        f"[health.traffic]\ninterface = {toml(LINK)}\n"
        f"[alerts]\nurls = [{toml(hook.url)}]\n"
    )
    earlier_days(home)
    friend.start()
    home.start()
    print(f"jitaku with [health] interval = {args.interval:g} s; target {TARGET:g} s from failure to alert")
    print(
        f"{'round':>5} "
        + " ".join(f"{c:>9}" for c in CHECKS)
        + "   (seconds to the alert; then to the recovery notice)"
    )
    try:
        time.sleep(args.interval + 5)  # every check has run once, on whatever phase its loop has
        for number in range(1, args.rounds + 1):
            time.sleep(random.uniform(0, args.interval))  # a random moment of the cycle
            broke = time.monotonic()
            broken()
            alerts = wait_all(hook, "critical: {}|warning: {}", broke, args.interval)
            mended = time.monotonic()
            healthy()
            friend.start()
            recoveries = wait_all(hook, "recovered: {}", mended, args.interval)
            print(f"{number:>5} " + " ".join(f"{alerts[c]:>9}" for c in CHECKS))
            print(f"{'':>5} " + " ".join(f"{recoveries[c]:>9}" for c in CHECKS))
    finally:
        home.kill()
        friend.kill()
        world.close()
    print(f"logs: {work}")


def echo(address: str) -> int:
    """An address-echo service: our public address, as [public_ip] sources tell it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = address.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return int(server.server_address[1])


def wait_all(hook: Hook, pattern: str, since: float, interval: float) -> dict[str, str]:
    found: dict[str, str] = {}
    deadline = since + max(3 * interval, 240.0)
    while len(found) < len(CHECKS) and time.monotonic() < deadline:
        for check in CHECKS:
            if check not in found:
                at = min((t for p in pattern.split("|") if (t := hook.first(p.format(check), since))), default=None)
                if at is not None:
                    found[check] = f"{at - since:.1f}"
        time.sleep(0.2)
    return {check: found.get(check, "never") for check in CHECKS}


if __name__ == "__main__":
    main()
