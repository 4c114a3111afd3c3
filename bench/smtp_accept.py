#!/usr/bin/env python3
"""SMTP accept-and-deliver throughput: jitaku's MX against a throwaway Postfix, same run, same machine.

The figure that counts is for DKIM-signed mail whose SPF, DKIM and DMARC pass, as most mail a
home server gets from the big providers: smtp-source -F sends a 4 KiB message signed beforehand
by a key the bench's DNS publishes (with SPF and DMARC for its domain). Unsigned mail, smtp-source's
own, is measured too, in the same run.

Why: jitaku says "250" only after the message is committed, and local mail is
delivered in that same transaction, so "messages per second accepted over SMTP
and sitting in the mailbox" is the figure a home server lives by. Postfix is the
well-known floor for that figure, so every run measures both:
Postfix's own `smtp-source` drives each server with the same load
(default 20 parallel sessions, 5,000 messages of 4 KiB, one recipient, one new
connection per message), rounds alternate between the two, and the best round of
each is reported, because the machine is shared and noisy. jitaku runs with
`[smtp] workers = 1` (the goal: 2.0x Postfix) and then 2 (--workers 1,2 by default).

What counts as done:
  * jitaku: smtp-source has exited (each 250 means delivered); the mailbox count
    from `jitaku mailbox list --json` is then checked, outside the timing.
  * Postfix: smtp-source has exited AND the virtual(8) maildir holds all messages
    (Postfix's 250 only means "queued"; the delivery that follows is timed too).

Everything stays on loopback: jitaku and Postfix listen on 127.0.0.1 ports
picked at random, and jitaku's SPF/DKIM/DMARC lookups go to a tiny dnslib server
on 127.0.0.1. It publishes the signed mail's domain (signed.test: SPF, DMARC and
the DKIM key) and answers NXDOMAIN (with an SOA, so negative answers may be
cached, as from a real resolver) to everything else, the unsigned mail's domain
(remote.test) included; with --sender-records it publishes SPF and DMARC records
for that one too, so SPF passes and DMARC alignment is evaluated.
Before the timed rounds one signed message goes to each jitaku and its
Authentication-Results must say spf=pass dkim=pass dmarc=pass, or the bench stops.

Not the same work: jitaku checks SPF, DKIM and DMARC on every message and adds a
Received and an Authentication-Results header; this Postfix runs no milter and no
policy service, so jitaku pays for checks Postfix skips (a fair floor would add
OpenDKIM/OpenDMARC to Postfix; not done here).

Also printed, per round: CPU-seconds per message (the whole machine's, and jitaku
serve's own with its share of one core, which shows when the GIL is the limit);
and the resident memory of `jitaku serve` when idle and after the load.
With --profile, one more untimed jitaku round runs with py-spy attached (GIL
holder only) and the functions where the time goes are listed (the jitaku with filters on, with --filters).
--jitaku-command runs another build of the CLI (e.g. a wrapper that patches a
module first) to measure a proposed change without touching src/.

With --filters, one more jitaku (workers = 1) runs with clamd and rspamd on (`[filters.clamav]`,
`[filters.rspamd]`, both started here as the tests start them, on loopback), and its rate is printed as a
ratio to jitaku without filters and to Postfix (which has none). The engines' own cost is timed too, on
copies of the signed message as jitaku hands it over (each under its own Received field: clamd answers a file
it has seen clean from a cache) at the same concurrency, each with its own client: rspamc -n SESSIONS for
rspamd, SESSIONS clamdscan --stream processes for clamd. jitaku asks both at once, so the engines allow at most
the slower one's rate (they share the cores, so at least the rate of both one after the other): jitaku's
filtered rate is printed against both bounds (goal: within 10% of what they allow). Each engine's CPU per
message (rspamd's Redis with it) is printed behind jitaku and behind its own client.

With --postgresql, two more jitakus (workers = 1) run on PostgreSQL (`jitaku init --database postgresql`): one
alone, and one with a synchronous standby: a second data directory set up as its standby (`jitaku standby allow`,
`jitaku standby setup`), its daemon running as a standby, the primary waiting until `jitaku ha status` says "sync".
Each 250 then waits for the standby to have flushed the commit. Their rates are printed as ratios to Postfix and
to jitaku on SQLite (workers = 1), in the same run. Needs Debian's postgresql-15.

Needs root (Postfix runs as its own instance: `postfix -c DIR start`), Postfix's
binaries (postfix, postconf, smtp-source), dnslib, dkimpy, cryptography and psutil; py-spy for --profile;
rspamd, redis-server, clamd and clamdscan for --filters.

Usage: bench/smtp_accept [--rounds 3] [--messages 5000] [--sessions 20] [--size 4096]
                         [--workers 1,2] [--mail signed,unsigned] [--reuse-connections]
                         [--sender-records] [--profile] [--keep] [--filters] [--postgresql]
                         [--jitaku-command "python3 patched_cli.py"]
"""

from __future__ import annotations

import argparse
import atexit
import base64
import collections
import contextlib
import email.utils
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import dkim
import psutil
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dnslib import QTYPE, RR, SOA, TXT, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the tests' engines, as --filters starts them
from tests.integration.engines.clamav import Clamd, running_clamd  # noqa: E402
from tests.integration.engines.rspamd import Rspamd, running_rspamd  # noqa: E402

LOOPBACK = "127.0.0.1"
DOMAIN = "bench.test"
USER = f"user@{DOMAIN}"
SENDER = "sender@remote.test"  # unsigned mail (smtp-source's own message)
SIGNED_DOMAIN = "signed.test"
SIGNED_SENDER = f"sender@{SIGNED_DOMAIN}"
SELECTOR = b"bench"
POSTFIX_SBIN = Path("/usr/sbin")
VMAIL_UID = 65534  # nobody: virtual(8) delivers as this uid/gid


# ---------------------------------------------------------------- helpers


def say(text: str) -> None:
    print(text, flush=True)


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def free_udp_and_tcp_port() -> int:
    """A port free for UDP and for TCP (DNS listens on both): one of the thousands of connections a run makes
    may hold a free UDP port's number in TIME_WAIT, which a TCP listener without SO_REUSEADDR cannot bind."""
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both UDP and TCP on loopback")


def wait_for_banner(port: int, timeout: float = 30.0, code: bytes = b"220") -> None:
    """Wait until something on PORT sends an SMTP greeting: 220, or a standby's 421 (CODE)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((LOOPBACK, port), timeout=2) as sock:
                if sock.recv(512).startswith(code):
                    sock.sendall(b"QUIT\r\n")
                    return
        except OSError as error:
            last = error
        time.sleep(0.05)
    raise TimeoutError(f"no SMTP greeting on {LOOPBACK}:{port} after {timeout:.0f}s ({last})")


def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def rss_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) of PID in MiB."""
    current = psutil.Process(pid).memory_info().rss / 2**20
    peak = current
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    except OSError:
        pass
    return current, peak


IDLE_GOAL_MIB = 80.0  # issue 20: idle RSS of `jitaku serve` with the config `jitaku init` writes


def default_idle_rss(base: Path) -> float:
    """Idle RSS (MiB) of `jitaku serve` on a fresh `jitaku init` data dir, its config as init wrote it but for
    the listeners' ports (port 0): the figure the goal is about. The bench's own jitaku (web off, its DNS stub)
    is not that config."""
    data = base / "default"
    run([*jitaku_command(), "init", "--dir", str(data), "--domain", DOMAIN], timeout=600)
    config = data / "jitaku.toml"
    config.write_text(re.sub(r'listen = \["127\.0\.0\.1:\d+"\]', 'listen = ["127.0.0.1:0"]', config.read_text()))
    with open(data / "serve.log", "ab") as log:
        process = subprocess.Popen([*jitaku_command(), "serve", "--dir", str(data)], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while not (data / "ports.json").exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("jitaku serve (default config) did not start; see " + str(data / "serve.log"))
            time.sleep(0.05)
        time.sleep(2.0)
        last, _ = rss_mb(process.pid)
        while True:  # idle: the first health round is over once it stops growing
            time.sleep(1.0)
            now, _ = rss_mb(process.pid)
            if now - last < 0.25 or time.monotonic() > deadline:
                return now
            last = now
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


# ---------------------------------------------------------------- DNS


# --sender-records: what a well-run sending domain publishes, so the unsigned mail's SPF passes and DMARC
# alignment is evaluated.
SENDER_RECORDS = """\
remote.test. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.remote.test. 300 IN TXT "v=DMARC1; p=none"
"""


def signed_domain_records(public_key: bytes) -> list[RR]:
    """What the signed mail's domain publishes: SPF for loopback, DMARC (reject, so DMARC's verdict is
    the one a real receiver acts on), and the DKIM key, in strings of at most 255 bytes (RFC 1035)."""
    record = b"v=DKIM1; k=rsa; p=" + public_key
    return [
        *RR.fromZone(
            f'{SIGNED_DOMAIN}. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"\n'
            f'_dmarc.{SIGNED_DOMAIN}. 300 IN TXT "v=DMARC1; p=reject"\n'
        ),
        RR(
            f"{SELECTOR.decode()}._domainkey.{SIGNED_DOMAIN}.",
            QTYPE.TXT,
            ttl=300,
            rdata=TXT([record[i : i + 255] for i in range(0, len(record), 255)]),
        ),
    ]


def signed_message(size: int, out: Path) -> tuple[Path, bytes]:
    """Write a message of about SIZE bytes of body, DKIM-signed (rsa-sha256, relaxed/relaxed, 2048 bits) by
    a new key, as smtp-source -F reads it (LF line ends: it appends CRLF to each line); return its path and
    the public key (base64 DER) for the DNS."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = base64.b64encode(
        key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    line = b"The quick brown fox jumps over the lazy dog, and the lazy dog signs for it." + b"\r\n"
    body = line * max(1, size // len(line))
    head = (
        f"From: Bench Sender <{SIGNED_SENDER}>\r\n"
        f"To: <{USER}>\r\n"
        "Subject: a signed message for bench/smtp_accept\r\n"
        "Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
        f"Message-ID: <bench-signed@{SIGNED_DOMAIN}>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
    ).encode()
    message = head + b"\r\n" + body
    signature = dkim.sign(
        message,
        SELECTOR,
        SIGNED_DOMAIN.encode(),
        private,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"to", b"subject", b"date", b"message-id", b"mime-version", b"content-type"],
    )
    signed = signature + message
    if not dkim.verify(signed, dnsfunc=lambda _name, timeout=5: b"v=DKIM1; k=rsa; p=" + public):
        raise RuntimeError("the bench's own signed message does not verify")
    path = out / "signed.eml"
    path.write_bytes(signed.replace(b"\r\n", b"\n"))
    return path, public


class Zone(BaseResolver):
    """Answers from a few records; every other name does not exist.

    The SOA in the authority section of negative answers lets resolvers cache
    them (RFC 2308), as a real recursive resolver's answers would be.
    """

    def __init__(self, records: list[RR]) -> None:
        self.records = records
        self.queries: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._soa = RR(
            DNSLabel("test."),
            QTYPE.SOA,
            ttl=300,
            rdata=SOA("ns.test.", "hostmaster.test.", (1, 3600, 600, 86400, 300)),
        )

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        qname, qtype = request.q.qname, request.q.qtype
        with self._lock:
            self.queries[f"{qname} {QTYPE[qtype]}"] += 1
        reply = request.reply()
        named = [record for record in self.records if record.rname == qname]
        for record in named:
            if record.rtype == qtype:
                reply.add_answer(record)
        if not reply.rr:
            reply.header.rcode = 0 if named else 3  # NOERROR/NODATA or NXDOMAIN
            reply.add_auth(self._soa)
        return reply


class QuietLogger(DNSLogger):
    def __init__(self) -> None:
        super().__init__(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)


# ---------------------------------------------------------------- jitaku


JITAKU_COMMAND: list[str] = []  # --jitaku-command, else the installed `jitaku`


def jitaku_command() -> list[str]:
    if JITAKU_COMMAND:
        return JITAKU_COMMAND
    script = Path(sys.executable).parent / "jitaku"
    if script.exists():
        return [sys.executable, str(script)]
    found = shutil.which("jitaku")
    if found is None:
        raise RuntimeError("no `jitaku` command; pip install -e /work/main")
    return [found]


def set_toml_keys(text: str, changes: dict[str, dict[str, str]]) -> str:
    """Set KEY = VALUE (VALUE as TOML text) inside [SECTION], adding the key or section if absent."""
    lines = text.splitlines()
    section = ""
    done: set[tuple[str, str]] = set()
    out: list[str] = []

    def flush_missing(name: str) -> None:
        for key, value in changes.get(name, {}).items():
            if (name, key) not in done:
                out.append(f"{key} = {value}")
                done.add((name, key))

    for line in lines:
        header = re.match(r"\s*\[([^\[\]]+)\]", line)
        if header:
            flush_missing(section)
            section = header.group(1).strip()
        else:
            assignment = re.match(r"\s*([A-Za-z0-9_-]+)\s*=", line)
            if assignment and assignment.group(1) in changes.get(section, {}):
                key = assignment.group(1)
                out.append(f"{key} = {changes[section][key]}")
                done.add((section, key))
                continue
        out.append(line)
    flush_missing(section)
    for name, values in changes.items():
        if any((name, key) not in done for key in values):
            out.append(f"\n[{name}]")
            flush_missing(name)
    return "\n".join(out) + "\n"


DATABASES = {
    "sqlite": "",
    "postgresql": ", PostgreSQL",
    "standby": ", PostgreSQL + sync standby",
    "standby-box": " (the standby)",
}


@dataclass
class Jitaku:
    base: Path
    dns_port: int
    workers: int = 1
    filters: dict[str, dict[str, str]] = field(default_factory=dict)  # [filters.*] sections, TOML values
    database: str = "sqlite"  # a key of DATABASES
    port: int = field(default_factory=free_port)
    submission_port: int = field(default_factory=free_port)
    database_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    standby: Jitaku | None = None  # with database "standby": the second box, its daemon running as a standby

    @property
    def dir(self) -> Path:
        suffix = ("-filters" if self.filters else "") + ("" if self.database == "sqlite" else f"-{self.database}")
        return self.base / f"jitaku-workers-{self.workers}{suffix}"

    @property
    def label(self) -> str:
        return f"workers = {self.workers}" + (", filters on" if self.filters else "") + DATABASES[self.database]

    def cli(self, *args: str, input: str | None = None) -> str:
        return run([*jitaku_command(), *args, "--dir", str(self.dir)], input=input, timeout=600).stdout

    def setup(self) -> None:
        self.cli("init", "--domain", DOMAIN)
        config = self.dir / "jitaku.toml"
        config.write_text(
            set_toml_keys(
                config.read_text(),
                {
                    "submission": {"listen": f'["{LOOPBACK}:{self.submission_port}"]'},
                    "submissions": {"listen": "[]"},
                    "imap": {"listen": "[]"},  # off: a running jitaku has 2143 and 2110
                    "pop3": {"listen": "[]"},
                    "web": {"listen": "[]"},
                    "smtp": {"listen": f'["{LOOPBACK}:{self.port}"]', "workers": str(self.workers)},
                    "dns": {"nameservers": f'["{LOOPBACK}:{self.dns_port}"]'},
                    "database": {"listen": f'["{LOOPBACK}:{self.database_port}"]'},
                    **self.filters,
                },
            )
        )
        if self.database != "sqlite":
            self.cli("init", "--database", "postgresql")
        if self.database != "standby-box":  # its cluster is replaced by the primary's, users and all
            self.cli("user", "add", USER, "--password-stdin", input="password123\n")
        if self.database == "standby":
            self.cli("standby", "allow", LOOPBACK)

    def _set_up_standby(self, standby: Jitaku) -> None:
        """The second box, once our daemon runs our cluster: its own cluster replaced by a streaming copy of ours
        (`standby setup`), its daemon started (it serves as a standby)."""
        standby.setup()
        secret = standby.dir / "primary.secret"
        shutil.copy(self.dir / "ha" / "replication.secret", secret)
        secret.chmod(0o600)
        primary = f"{LOOPBACK}:{self.database_port}"
        standby.cli("standby", "setup", "--primary", primary, "--secret-file", str(secret), "--name", "bench")
        secret.unlink()
        standby.start()

    def synchronous(self, timeout: float = 60.0) -> None:
        """Wait until our daemon has made the standby synchronous: from then on each 250 waits for it."""
        deadline = time.monotonic() + timeout
        while (state := json.loads(self.cli("ha", "status", "--json"))["sync_state"]) != "sync":
            if time.monotonic() > deadline:
                raise RuntimeError(f"the standby is not synchronous after {timeout:.0f} s ({state}); see the logs")
            time.sleep(0.5)

    def start(self) -> None:
        log = open(self.dir / "serve.log", "ab")
        self.process = subprocess.Popen(
            [*jitaku_command(), "serve", "--dir", str(self.dir)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
        )
        log.close()
        try:
            wait_for_banner(self.port, code=b"421" if self.database == "standby-box" else b"220")
        except TimeoutError:
            self.stop()
            raise RuntimeError(
                "jitaku serve did not start:\n" + (self.dir / "serve.log").read_text(errors="replace")[-3000:]
            ) from None
        if self.database == "standby" and self.standby is None:
            self.standby = Jitaku(self.base, self.dns_port, database="standby-box")
            self._set_up_standby(self.standby)
            self.synchronous()

    def stop(self) -> None:
        if self.standby is not None:
            self.standby.stop()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def delivered(self) -> int:
        return len(json.loads(self.cli("mailbox", "list", USER, "--json")))

    def authentication_results(self, load: Load) -> str:
        """Send one message of LOAD's kind and return the Authentication-Results jitaku stored with it."""
        before = json.loads(self.cli("mailbox", "list", USER, "--json"))
        drive(replace(load, messages=1, sessions=1), self.port)
        uids = [row["uid"] for row in json.loads(self.cli("mailbox", "list", USER, "--json"))]
        new = sorted(set(uids) - {row["uid"] for row in before})
        if len(new) != 1:
            raise RuntimeError(f"jitaku: expected one new message, the mailbox has {len(new)}")
        stored = self.cli("mailbox", "show", USER, str(new[0]))
        head = re.split(r"\r?\n\r?\n", stored, maxsplit=1)[0]
        unfolded = re.sub(r"\r?\n[ \t]+", " ", head)
        found = re.search(r"(?im)^Authentication-Results:.*$", unfolded)
        return found.group(0).strip() if found else "(no Authentication-Results)"


# ---------------------------------------------------------------- Postfix

# What every throwaway Postfix instance needs: its own directories and log, the system's programs.
POSTFIX_PATHS = """\
compatibility_level = 3.6
queue_directory = {base}/queue
data_directory = {base}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
shlib_directory = /usr/lib/postfix
meta_directory = /etc/postfix
sendmail_path = /usr/sbin/sendmail
newaliases_path = /usr/bin/newaliases
mailq_path = /usr/bin/mailq
html_directory = no
manpage_directory = /usr/share/man
sample_directory = /etc/postfix
readme_directory = no
mail_owner = postfix
setgid_group = postdrop
maillog_file = {base}/maillog
# Without this `postfix check` fails, silently: the log file must lie under an allowed prefix.
maillog_file_prefixes = {base}
"""

MAIN_CF = (
    "# A throwaway Postfix instance for bench/smtp_accept: loopback only, virtual(8) maildir delivery.\n"
    + POSTFIX_PATHS
    + """\

myhostname = postfix.{domain}
mydomain = {domain}
myorigin = $myhostname
mydestination =
inet_interfaces = {loopback}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
biff = no
smtputf8_enable = no
alias_maps =
alias_database =
local_recipient_maps =

virtual_mailbox_domains = {domain}
virtual_mailbox_maps = texthash:{base}/conf/vmailbox
virtual_mailbox_base = {base}/mail
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{uid}
virtual_mailbox_limit = 0

# No DNS anywhere (jitaku's lookups go to a local stub); no reverse lookup of the client.
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
smtp_host_lookup = native
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_recipient_restrictions =
smtpd_tls_security_level =
smtpd_banner = $myhostname ESMTP
"""
)

MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{loopback}:{port} inet n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


@dataclass
class Postfix:
    base_parent: Path
    port: int = field(default_factory=free_port)
    running: bool = False

    @property
    def base(self) -> Path:
        return self.base_parent / "postfix"

    @property
    def conf(self) -> Path:
        return self.base / "conf"

    @property
    def maildir_new(self) -> Path:
        return self.base / "mail" / DOMAIN / "user" / "new"

    def postfix(self, *args: str) -> str:
        try:
            return run([str(POSTFIX_SBIN / "postfix"), "-c", str(self.conf), *args], timeout=120).stdout
        except RuntimeError as error:
            log = self.base / "maillog"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no maillog)"
            raise RuntimeError(f"{error}\n{log}:\n{tail}") from None

    def setup(self) -> None:
        for sub in ("conf", "queue", "data", "mail"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        self.base.chmod(0o755)
        values = {"base": self.base, "domain": DOMAIN, "loopback": LOOPBACK, "port": self.port, "uid": VMAIL_UID}
        (self.conf / "main.cf").write_text(MAIN_CF.format(**values))
        (self.conf / "master.cf").write_text(MASTER_CF.format(**values))
        (self.conf / "vmailbox").write_text(f"{USER} {DOMAIN}/user/\n")
        shutil.chown(self.base / "data", "postfix", "postfix")
        mail = self.base / "mail"
        for directory in (
            mail,
            mail / DOMAIN,
            mail / DOMAIN / "user",
            *(mail / DOMAIN / "user" / d for d in ("tmp", "new", "cur")),
        ):
            directory.mkdir(exist_ok=True)
            os.chown(directory, VMAIL_UID, VMAIL_UID)
            directory.chmod(0o700 if directory != mail else 0o755)
        self.postfix("check")  # creates the queue's subdirectories with their owners and modes

    def start(self) -> None:
        self.running = True  # stop even if start fails half-way
        self.postfix("start")
        wait_for_banner(self.port)

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        try:
            self.postfix("stop")
        except RuntimeError as error:
            say(f"postfix stop failed ({error}); trying abort")
            subprocess.run([str(POSTFIX_SBIN / "postfix"), "-c", str(self.conf), "abort"], capture_output=True)
        pid_file = self.base / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + 15
        while pid_file.exists() and time.monotonic() < deadline:
            try:
                pid = int(pid_file.read_text().split()[0])
                os.kill(pid, 0)
            except (OSError, ValueError, IndexError):
                break
            time.sleep(0.1)

    def delivered(self) -> int:
        with os.scandir(self.maildir_new) as entries:
            return sum(1 for _ in entries)

    def empty_maildir(self) -> None:
        with os.scandir(self.maildir_new) as entries:
            for entry in entries:
                os.unlink(entry.path)

    def pss_mb(self) -> float:
        """Proportional set size of the whole instance: shared pages counted once, unlike a sum of RSS."""
        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_full_info().pss
            except psutil.Error:
                pass
        return total / 2**20

    def pids(self) -> list[int]:
        """The master and its children (for RSS reporting)."""
        pid_file = self.base / "queue" / "pid" / "master.pid"
        try:
            master = psutil.Process(int(pid_file.read_text().split()[0]))
            return [master.pid] + [child.pid for child in master.children(recursive=True)]
        except (OSError, ValueError, psutil.Error):
            return []


# ---------------------------------------------------------------- the load


@dataclass(frozen=True)
class Load:
    messages: int
    sessions: int
    size: int
    reuse_connections: bool
    message_file: Path | None = None  # signed mail; None: smtp-source's own unsigned message of SIZE bytes

    @property
    def kind(self) -> str:
        return "unsigned" if self.message_file is None else "signed"

    def smtp_source(self, port: int) -> list[str]:
        content = ["-l", str(self.size)] if self.message_file is None else ["-F", str(self.message_file)]
        command = [
            str(POSTFIX_SBIN / "smtp-source"),
            "-4",
            "-s",
            str(self.sessions),
            "-m",
            str(self.messages),
            *content,
            "-f",
            SENDER if self.message_file is None else SIGNED_SENDER,
            "-t",
            USER,
            "-M",
            DOMAIN,
            "-S",
            "bench",
        ]
        if self.reuse_connections:
            command.append("-d")
        return [*command, f"{LOOPBACK}:{port}"]


def drive(load: Load, port: int) -> float:
    """Run smtp-source against PORT; return the seconds it took (it aborts on any non-2xx reply)."""
    started = time.perf_counter()
    result = subprocess.run(load.smtp_source(port), capture_output=True, text=True, timeout=3600)
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"smtp-source against port {port} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
        )
    return took


def machine_cpu() -> float:
    """CPU-seconds the whole machine has spent busy (every process, smtp-source included)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def process_cpu(pid: int) -> tuple[float, float]:
    """User and system CPU-seconds of PID and its worker processes (`[smtp] workers`)."""
    main = psutil.Process(pid)
    user = system = 0.0
    for process in [main, *main.children()]:
        try:
            t = process.cpu_times()
        except psutil.Error:
            continue
        user, system = user + t.user, system + t.system
    return user, system


ENGINE_PROCESSES = (("rspamd", "rspamd"), ("redis-server", "rspamd's redis"), ("clamd", "clamd"))


def engines_cpu() -> dict[str, float]:
    """CPU-seconds of the engines this bench started (its own child processes, so not another rspamd or clamd
    on the machine), by engine: whether they cost as much behind jitaku as behind their own clients."""
    spent: dict[str, float] = collections.Counter()
    for process in psutil.Process().children(recursive=True):
        try:
            name, t = process.name(), process.cpu_times()
        except psutil.Error:
            continue
        engine = next((engine for prefix, engine in ENGINE_PROCESSES if name.startswith(prefix)), None)
        if engine is not None:
            spent[engine] += t.user + t.system
    return spent


def engines_spent(before: dict[str, float], messages: int) -> dict[str, float]:
    """Each engine's CPU-milliseconds per message since BEFORE (engines_cpu())."""
    after = engines_cpu()
    return {name: 1000 * (after[name] - before.get(name, 0.0)) / messages for name in sorted(after)}


def engines_line(spent: dict[str, float]) -> str:
    return ", ".join(f"{name} {ms:.2f}" for name, ms in spent.items())


@dataclass(frozen=True)
class Round:
    seconds: float
    machine_cpu: float  # busy CPU-seconds of the machine during the timed part
    server_cpu: float | None  # jitaku serve's own CPU-seconds; None for Postfix, whose processes come and go
    server_system: float | None = None  # the part of server_cpu spent in the kernel
    engines: str = ""  # the engines' CPU per message, when filters are on


def round_jitaku(jitaku: Jitaku, load: Load, before: int) -> Round:
    assert jitaku.process is not None
    machine, server, engines = machine_cpu(), process_cpu(jitaku.process.pid), engines_cpu()
    try:
        took = drive(load, jitaku.port)
    except RuntimeError as error:
        log = (jitaku.dir / "serve.log").read_text(errors="replace").splitlines()
        unusual = [line for line in log if "event=accepted" not in line and "event=delivered" not in line]
        raise RuntimeError(
            f"{error}\nlast lines of {jitaku.dir / 'serve.log'} other than accepted/delivered:\n"
            + "\n".join(unusual[-15:])
        ) from None
    user, system = process_cpu(jitaku.process.pid)
    spent = engines_line(engines_spent(engines, load.messages)) if jitaku.filters else ""
    measured = Round(took, machine_cpu() - machine, user + system - sum(server), system - server[1], spent)
    count = jitaku.delivered()
    if count - before != load.messages:
        raise RuntimeError(
            f"jitaku: {count - before} messages in the mailbox after smtp-source, expected {load.messages}"
        )
    return measured


def round_postfix(postfix: Postfix, load: Load) -> Round:
    postfix.empty_maildir()
    machine = machine_cpu()
    started = time.perf_counter()
    drive(load, postfix.port)
    deadline = time.monotonic() + max(120.0, load.messages / 20)
    while (count := postfix.delivered()) < load.messages:
        if time.monotonic() > deadline:
            raise RuntimeError(f"postfix: only {count} of {load.messages} delivered; see {postfix.base / 'maillog'}")
        time.sleep(0.01)
    took = time.perf_counter() - started
    if count != load.messages:
        raise RuntimeError(f"postfix: {count} messages delivered, expected {load.messages}")
    return Round(took, machine_cpu() - machine, None)


# ---------------------------------------------------------------- profile


def profile_round(jitaku: Jitaku, load: Load, out: Path, top: int) -> None:
    """One more jitaku round with py-spy attached; print where the samples fall."""
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        say("\n--profile: py-spy not found (pip install py-spy); skipped")
        return
    assert jitaku.process is not None
    raw = out / "jitaku-profile.txt"
    spy = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(jitaku.process.pid),
            "--format",
            "raw",
            "--function",
            "--threads",
            "--gil",
            "--rate",
            "250",
            "--output",
            str(raw),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    time.sleep(1.5)  # let py-spy attach
    if spy.poll() is not None:
        say(f"\n--profile: py-spy exited at once:\n{spy.stdout.read().decode(errors='replace') if spy.stdout else ''}")
        return
    try:
        took = drive(load, jitaku.port)
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()
    say(
        f"\nProfile round (py-spy --gil at 250 Hz: only the thread holding the GIL is sampled; not counted): {load.messages / took:,.0f} msgs/s; raw stacks in {raw}"
    )
    if not raw.exists():
        say("py-spy wrote nothing:\n" + (spy.stdout.read().decode(errors="replace") if spy.stdout else ""))
        return
    print_profile(raw, top)


def print_profile(raw: Path, top: int) -> None:
    """Summarise py-spy's collapsed stacks: per thread, by own time, and by inclusive time."""
    threads: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread, frames = frames[0], frames[1:]
        total += count
        threads[re.sub(r"\(0x[0-9a-f]+\)", "", thread).strip() or thread] += count
        if frames:
            own[short(frames[-1])] += count
        for name in {short(frame) for frame in frames}:
            inclusive[name] += count
    if not total:
        say("no samples")
        return
    say(f"{total} samples with the GIL held")
    say("by thread:")
    for name, count in threads.most_common(8):
        say(f"  {100 * count / total:5.1f}%  {name}")
    say(f"top {top} by own time:")
    for name, count in own.most_common(top):
        say(f"  {100 * count / total:5.1f}%  {name}")
    say(
        f"top {top} by inclusive time (jitaku, aiosmtpd, sqlalchemy, authheaders, dkim, spf, dns, asyncio; "
        f"event-loop plumbing left out):"
    )
    interesting = re.compile(r"jitaku|aiosmtpd|sqlalchemy|authheaders|dkim|spf|dns/|asyncio|sqlite|email/")
    # frames every event-loop sample passes through: they say nothing about where the time goes
    plumbing = re.compile(
        r"^(<module> |main \(jitaku/cli|serve \(jitaku/cli|run \(asyncio/|Runner\.run |"
        r"BaseEventLoop\.(run_until_complete|run_forever|_run_once) |Handle\._run )"
    )
    shown = 0
    for name, count in inclusive.most_common():
        if interesting.search(name) and not plumbing.search(name):
            say(f"  {100 * count / total:5.1f}%  {name}")
            shown += 1
            if shown >= top:
                break


def short(frame: str) -> str:
    """'func (/long/path/site-packages/pkg/mod.py:12)' -> 'func (pkg/mod.py:12)'."""
    match = re.match(r"(.*) \((.*)\)$", frame)
    if not match:
        return frame
    name, where = match.groups()
    where = re.sub(r".*/(site-packages|src|lib/python3\.\d+)/", "", where)
    return f"{name} ({where})"


# ---------------------------------------------------------------- main


def distinct_copies(message: Path, messages: int, directory: Path) -> list[str]:
    """MESSAGES files of MESSAGE as jitaku hands it to the engines, each under its own Received field (and our
    Authentication-Results): no two alike, as no two messages jitaku scans are. Identical copies are answered
    from clamd's cache of files found clean, at a third of a scan's CPU (0.3 ms against 1.1 ms here)."""
    directory.mkdir(exist_ok=True)
    body = message.read_bytes()
    results = (
        f"Authentication-Results: mail.{DOMAIN}; spf=pass smtp.mailfrom={SIGNED_DOMAIN};"
        f" dkim=pass header.d={SIGNED_DOMAIN}; dmarc=pass header.from={SIGNED_DOMAIN}\r\n"
    ).encode()
    names = []
    for number in range(messages):
        received = (
            f"Received: from bench.test ([{LOOPBACK}])\r\n\tby mail.{DOMAIN} (bench) with ESMTP id C{number:08d}"
            f"\r\n\tfor <{USER}>; {email.utils.formatdate()}\r\n"
        ).encode()
        copy = directory / f"{number}.eml"
        copy.write_bytes(results + received + body)
        names.append(str(copy))
    return names


def engines_alone(
    message: Path, messages: int, sessions: int, clamd: Clamd, rspamd: Rspamd, base: Path
) -> tuple[dict[str, float], float]:
    """Each engine's own rate on MESSAGES copies of MESSAGE at SESSIONS at once, through its own client (rspamc
    with -n SESSIONS, and SESSIONS clamdscan --stream processes sharing the copies), and the CPU-milliseconds
    the engines spent on a message, both together."""
    copies = distinct_copies(message, messages, base / "engine-copies")
    spent = engines_cpu()
    started = time.perf_counter()
    envelope = ["--ip", LOOPBACK, "--helo", "bench.test", "--from", SIGNED_SENDER, "--rcpt", USER]  # as jitaku asks
    rspamc = ["rspamc", "-h", rspamd.url.removeprefix("http://"), "-n", str(sessions), "-t", "60", *envelope]
    run([*rspamc, *copies], timeout=3600)
    rates = {"rspamd": messages / (time.perf_counter() - started)}
    cost = engines_spent(spent, messages)
    say(f"rspamd alone (rspamc -n {sessions}): engines' ms CPU/msg: {engines_line(cost)}")
    cpu = sum(cost.values())
    config = base / "clamdscan.conf"
    config.write_text(f"TCPSocket {clamd.port}\nTCPAddr {clamd.host}\n")
    share = [copies[at::sessions] for at in range(sessions)]
    spent = engines_cpu()
    started = time.perf_counter()
    scans = [
        subprocess.Popen(
            ["clamdscan", "--stream", "--no-summary", "--quiet", f"--config-file={config}", *part],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for part in share
        if part
    ]
    if any(scan.wait(3600) not in (0, 1) for scan in scans):  # 1: a virus found (none here); 2: an error
        raise RuntimeError("clamdscan failed against the bench's clamd")
    rates["clamd"] = messages / (time.perf_counter() - started)
    cost = engines_spent(spent, messages)
    say(f"clamd alone ({sessions} clamdscan --stream): engines' ms CPU/msg: {engines_line(cost)}")
    return rates, cpu + sum(cost.values())


def workers_list(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected worker counts like 1 or 1,2, got {text!r}")
    return values


def kinds_list(text: str) -> list[str]:
    values = [part.strip() for part in text.split(",") if part.strip()]
    if not values or not set(values) <= {"signed", "unsigned"}:
        raise argparse.ArgumentTypeError(f"expected signed, unsigned or both, got {text!r}")
    return values


PASSING = re.compile(r"\bspf=pass\b.*\bdkim=pass\b.*\bdmarc=pass\b", re.IGNORECASE | re.DOTALL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds per server, alternating (default 3)")
    parser.add_argument("--messages", type=int, default=5000, help="messages per round (default 5000)")
    parser.add_argument("--sessions", type=int, default=20, help="parallel SMTP sessions (default 20)")
    parser.add_argument("--size", type=int, default=4096, help="payload bytes per message (default 4096)")
    parser.add_argument(
        "--workers",
        type=workers_list,
        default=[1, 2],
        help="jitaku's [smtp] workers, one jitaku after the other (default 1,2; the goal is for 1)",
    )
    parser.add_argument(
        "--mail",
        type=kinds_list,
        default=["signed", "unsigned"],
        help="which mail: signed, unsigned or both (default signed,unsigned; signed is the figure that counts)",
    )
    parser.add_argument(
        "--reuse-connections", action="store_true", help="smtp-source -d: several messages per connection"
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="one more round (the first jitaku, the first kind of mail) under py-spy; print the top functions",
    )
    parser.add_argument("--top", type=int, default=25, help="lines per profile table (default 25)")
    parser.add_argument(
        "--sender-records",
        action="store_true",
        help="the DNS stub publishes SPF (pass) and DMARC records for the unsigned mail's domain too, "
        "instead of NXDOMAIN",
    )
    parser.add_argument(
        "--jitaku-command",
        default="",
        help="command line that runs jitaku's CLI (default: the installed `jitaku`), to compare a patched build",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    parser.add_argument(
        "--postgresql",
        action="store_true",
        help="two more jitakus (workers = 1) on PostgreSQL: a managed cluster alone, and one with a synchronous "
        "standby (a second data directory, its cluster streaming, its daemon running as a standby)",
    )
    parser.add_argument(
        "--filters",
        action="store_true",
        help="one more jitaku (workers = 1) with clamd and rspamd on; the engines alone timed with their own clients",
    )
    args = parser.parse_args()

    if os.geteuid() != 0:
        say("bench/smtp_accept runs a Postfix instance and needs root")
        return 2
    for tool in ("postfix", "postconf", "smtp-source"):
        if not (POSTFIX_SBIN / tool).exists():
            say(f"missing {POSTFIX_SBIN / tool}: install Postfix")
            return 2

    if args.jitaku_command:
        JITAKU_COMMAND[:] = shlex.split(args.jitaku_command)
    base = Path(tempfile.mkdtemp(prefix="jitaku-bench-"))
    base.chmod(0o755)  # Postfix daemons and virtual(8) (uid nobody) must reach their directories
    message_file, public_key = signed_message(args.size, base)
    message_file.chmod(0o644)
    loads = [
        Load(
            args.messages,
            args.sessions,
            args.size,
            args.reuse_connections,
            message_file if kind == "signed" else None,
        )
        for kind in args.mail
    ]

    resolver = Zone(signed_domain_records(public_key) + (RR.fromZone(SENDER_RECORDS) if args.sender_records else []))
    dns_port = free_udp_and_tcp_port()
    dns_servers = [
        DNSServer(resolver, address=LOOPBACK, port=dns_port, logger=QuietLogger()),
        DNSServer(resolver, address=LOOPBACK, port=dns_port, tcp=True, logger=QuietLogger()),
    ]
    jitakus = [Jitaku(base, dns_port, workers) for workers in args.workers]
    postfix = Postfix(base)
    engines = contextlib.ExitStack()
    if args.filters:
        started = time.monotonic()
        clamd = engines.enter_context(running_clamd())
        rspamd = engines.enter_context(running_rspamd(f"{LOOPBACK}:{dns_port}"))  # answered at once, as a resolver
        say(
            f"engines: clamd on {clamd.address}, rspamd on {rspamd.url} (started in {time.monotonic() - started:.1f} s)"
        )
        filters = {
            "filters.clamav": {"address": f'"{clamd.address}"'},
            "filters.rspamd": {"url": f'"{rspamd.url}"', "controller_url": f'"{rspamd.controller_url}"'},
        }
        jitakus.append(Jitaku(base, dns_port, 1, filters))

    if args.postgresql:
        jitakus += [Jitaku(base, dns_port, 1, database=name) for name in ("postgresql", "standby")]
    finished = False

    def cleanup() -> None:
        for jitaku in jitakus:
            jitaku.stop()
        postfix.stop()
        engines.close()
        for server in dns_servers:
            if server.isAlive():
                server.stop()
        if args.keep or not finished:
            say(
                f"kept {base}"
                + ("" if finished else " (the run did not finish: logs are in jitaku-*/serve.log, postfix/maillog)")
            )
        else:
            shutil.rmtree(base, ignore_errors=True)

    atexit.register(cleanup)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: sys.exit(128 + number))

    for server in dns_servers:
        server.start_thread()
    connections = "connections reused (-d)" if args.reuse_connections else "a new connection per message"
    say(
        f"load: smtp-source -s {args.sessions} -m {args.messages}, {connections}; {', '.join(args.mail)} mail; "
        f"best of {args.rounds} alternating rounds; jitaku with [smtp] workers = {', '.join(map(str, args.workers))}; "
        f"{os.cpu_count()} CPUs"
    )
    say(
        f"signed mail: {message_file.stat().st_size} bytes from {SIGNED_SENDER}, rsa-sha256 2048 bits, relaxed/relaxed"
        f" (smtp-source -F); unsigned: smtp-source -l {args.size} from {SENDER}"
    )
    say(
        f"DNS stub: SPF, DMARC and DKIM key of {SIGNED_DOMAIN}; "
        + ("SPF and DMARC of remote.test; " if args.sender_records else "")
        + "NXDOMAIN for the rest"
    )
    say(f"work dir {base}")

    default_rss = default_idle_rss(base)
    say(f"jitaku serve idle RSS with the default config: {default_rss:.1f} MiB (goal < {IDLE_GOAL_MIB:.0f})")
    postfix.setup()
    postfix.start()
    say(f"postfix (master pid {postfix.pids()[:1]}) on {LOOPBACK}:{postfix.port}; dns stub on {LOOPBACK}:{dns_port}")

    # (jitaku's label, kind) -> (jitaku rounds, postfix rounds)
    results: dict[tuple[str, str], dict[str, list[Round]]] = {}
    memory: list[str] = []
    delivered_total = 0
    for jitaku in jitakus:
        jitaku.setup()
        jitaku.start()
        assert jitaku.process is not None
        time.sleep(1.0)
        idle_rss, _ = rss_mb(jitaku.process.pid)
        say(
            f"\njitaku serve, {jitaku.label}: pid {jitaku.process.pid} on {LOOPBACK}:{jitaku.port};"
            f" idle RSS {idle_rss:.1f} MiB"
        )
        for load in loads:
            results_line = jitaku.authentication_results(load)
            say(f"  {load.kind} mail gets: {results_line}")
            if load.kind == "signed" and not PASSING.search(results_line):
                raise RuntimeError(
                    f"jitaku (workers = {jitaku.workers}) does not pass the signed mail's SPF, DKIM and DMARC:"
                    f" {results_line}\nsee {jitaku.dir / 'serve.log'}"
                )
        jitaku_count = jitaku.delivered()
        for load in loads:
            rounds: dict[str, list[Round]] = {"jitaku": [], "postfix": []}
            results[(jitaku.label, load.kind)] = rounds
            for number in range(args.rounds):
                order = ("jitaku", "postfix") if number % 2 == 0 else ("postfix", "jitaku")
                for name in order:
                    if name == "jitaku":
                        measured = round_jitaku(jitaku, load, jitaku_count)
                        jitaku_count += load.messages
                    else:
                        measured = round_postfix(postfix, load)
                    rounds[name].append(measured)
                    server = (
                        ""
                        if measured.server_cpu is None
                        else f", jitaku serve {1000 * measured.server_cpu / load.messages:.2f} ms CPU/msg"
                        f" ({1000 * (measured.server_system or 0.0) / load.messages:.2f} in the kernel;"
                        f" {measured.server_cpu / measured.seconds:.0%} of a core)"
                        + (f"; engines' ms CPU/msg: {measured.engines}" if measured.engines else "")
                    )
                    say(
                        f"  {load.kind:8s} round {number + 1} {name:8s} {measured.seconds:7.2f} s {load.messages / measured.seconds:8,.0f} msgs/s;"
                        f" machine {1000 * measured.machine_cpu / load.messages:.2f} ms CPU/msg{server}"
                    )
        loaded_rss, peak_rss = rss_mb(jitaku.process.pid)
        loaded_pss = psutil.Process(jitaku.process.pid).memory_full_info().pss / 2**20
        memory.append(
            f"{jitaku.label}: idle {idle_rss:.1f} MiB with this bench's config; after load"
            f" {loaded_rss:.1f} MiB, peak {peak_rss:.1f} MiB (PSS {loaded_pss:.1f} MiB)"
        )
        delivered_total += jitaku_count
        if args.profile and jitaku is jitakus[-1 if args.filters else 0]:
            profile_round(jitaku, loads[0], base if args.keep else Path(tempfile.gettempdir()), args.top)
        jitaku.stop()

    postfix_pss = postfix.pss_mb()
    queries = sum(resolver.queries.values())
    say("")
    rates: dict[tuple[str, str], float] = {}
    for (label, kind), rounds in results.items():
        best = {name: min(values, key=lambda r: r.seconds) for name, values in rounds.items()}
        rate = {name: args.messages / r.seconds for name, r in best.items()}
        rates[(label, kind)] = rate["jitaku"]
        for name, note in (("jitaku", f", {label}"), ("postfix", "; timed until the maildir held all")):
            say(
                f"{kind:8s} {name:7s} {rate[name]:8,.0f} msgs/s (best of {args.rounds}; all: "
                f"{', '.join(f'{args.messages / r.seconds:,.0f}' for r in rounds[name])}{note}); "
                f"machine CPU in the best round {1000 * best[name].machine_cpu / args.messages:.2f} ms/msg"
            )
        goal = " (goal >= 2.0)" if kind == "signed" and label == "workers = 1" else ""
        say(f"ratio jitaku/postfix, {kind} mail, {label}: {rate['jitaku'] / rate['postfix']:.2f}{goal}")
    if args.postgresql:
        for load in loads:
            sqlite = rates.get(("workers = 1", load.kind))
            for name in ("postgresql", "standby"):
                label = "workers = 1" + DATABASES[name]
                if sqlite is not None:
                    say(
                        f"ratio jitaku{DATABASES[name]} / on SQLite, {load.kind} mail: {rates[(label, load.kind)] / sqlite:.2f}"
                    )
    if args.filters:
        for load in loads:
            plain, filtered = rates.get(("workers = 1", load.kind)), rates[("workers = 1, filters on", load.kind)]
            if plain is not None:
                say(f"ratio jitaku with filters / without, {load.kind} mail, workers = 1: {filtered / plain:.2f}")
        alone, engines_ms = engines_alone(message_file, args.messages, args.sessions, clamd, rspamd, base)
        slower, both = min(alone.values()), 1 / sum(1 / rate for rate in alone.values())
        say(
            "engines alone on the signed message, same concurrency: "
            + ", ".join(f"{name} {rate:,.0f} msgs/s" for name, rate in alone.items())
            + f"; together they allow {both:,.0f} to {slower:,.0f} msgs/s (one after the other .. at once)"
        )
        plain_rounds = results.get(("workers = 1", "signed"), {}).get("jitaku")
        filtered = rates.get(("workers = 1, filters on", "signed"))
        if filtered is not None:
            say(
                f"ratio jitaku with filters / what the engines allow, signed mail: {filtered / slower:.2f} of the"
                f" faster bound, {filtered / both:.2f} of the slower (goal: within 10%, >= 0.90)"
            )
        if filtered is not None and plain_rounds:
            # What the cores allow when filtering costs a message what jitaku spends without filters and what the
            # engines spend alone, nothing more: jitaku, its peers and the engines share the machine.
            plain_ms = 1000 * min(plain_rounds, key=lambda r: r.seconds).machine_cpu / args.messages
            usable = len(os.sched_getaffinity(0))
            cores = usable * 1000 / (plain_ms + engines_ms)
            allowed = min(slower, cores)
            say(
                f"the machine's {usable} cores allow {cores:,.0f} msgs/s at {plain_ms:.2f} ms CPU/msg of"
                f" jitaku's unfiltered run and {engines_ms:.2f} of the engines' own; with the faster bound,"
                f" {allowed:,.0f}: ratio jitaku with filters / that, {filtered / allowed:.2f}"
            )
    say(
        f"jitaku serve RSS: idle {default_rss:.1f} MiB with the default config (goal < {IDLE_GOAL_MIB:.0f}); "
        + "; ".join(memory)
        + f"; Postfix master+children now: {postfix_pss:.1f} MiB PSS in all"
    )
    say(
        f"DNS stub answered {queries} queries ({queries / max(1, delivered_total):.3f} per jitaku message); most asked: "
        + ", ".join(f"{name} x{count}" for name, count in resolver.queries.most_common(4))
    )
    finished = True
    return 0


if __name__ == "__main__":
    sys.exit(main())
