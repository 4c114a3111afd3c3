"""rspamd for the tests: Debian's rules and modules, our own listeners, Redis and logs in a temporary directory.

Debian's /etc/rspamd stays the CONFDIR (rules, scores, modules); LOCAL_CONFDIR, RUNDIR, DBDIR and LOGDIR are
redefined with `--var` to a temporary directory whose local.d/override.d files: bind the normal worker and the
controller to free loopback ports (no proxy, no fuzzy), empty `local_addrs` (loopback is otherwise not checked),
turn off every module that asks DNS or the network, keep Bayes in a Redis of our own with a small `min_learns`,
and give the controller a password with no `secure_ip` (so learning must send it). Session-scoped: rspamd
compiles its rules in a second or two (once given a short public suffix list) and Redis starts at once; `Rspamd.started_in` says how long it took.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.peers import free_port, stop_process, wait_for_port

PASSWORD = "jitaku-test-controller"
NO_DNS = "127.0.0.1:1"  # nobody answers there: a lookup fails within 0.4 s instead of asking the internet
# Modules that would ask DNS (RBLs, SPF, DKIM, DMARC, ASN, URL blacklists, MX) or the internet (fuzzy storage,
# the rules' updates), or change a verdict by what Redis remembers across tests (greylisting, reputation, replies).
OFF = (
    "rbl surbl spf dkim dmarc arc asn emails phishing fuzzy_check mx_check dcc rspamd_update neural reputation "
    "url_reputation greylist ratelimit replies whitelist once_received p0f external_services antivirus "
    "url_redirector bimi spamtrap clickhouse elastic metadata_exporter metric_exporter"
).split()

TLDS = (
    "com net org jp co.jp ne.jp or.jp ac.jp go.jp example test invalid localhost io info biz ru cn de uk co.uk".split()
)


@dataclass(frozen=True)
class Rspamd:
    url: str  # the normal worker: /checkv2
    controller_url: str  # the controller: /learnspam, /learnham, /stat, /history
    password: str
    log: Path
    started_in: float  # seconds from starting Redis to rspamd's /ping answering

    def stat(self) -> dict[str, object]:
        request = urllib.request.Request(f"{self.controller_url}/stat", headers={"Password": self.password})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _configure(root: Path, normal: int, controller: int, redis: int, nameserver: str) -> Path:
    local = root / "local"
    redis_servers = f'servers = "127.0.0.1:{redis}";\n'
    _write(
        root / "rspamd.conf",
        f"""
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=10) "$LOCAL_CONFDIR/override.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{normal}";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}}
worker "controller" {{
    bind_socket = "127.0.0.1:{controller}";
    count = 1;
    password = "{PASSWORD}";
    secure_ip = [];
    static_dir = "${{WWWDIR}}";
}}
.include(try=true; priority=1, duplicate=merge) "$LOCAL_CONFDIR/local.d/worker-controller.inc"
""",
    )
    # rspamd compiles the public suffix list (~9,600 names) for 9 s at every start: a few suffixes do for tests.
    _write(root / "tld.dat", "".join(f"{suffix}\n" for suffix in TLDS))
    _write(
        local / "override.d/options.inc",
        # No name server answers on port 1 (ICMP says so at once): what DNS a module still asks fails fast.
        f'local_addrs = [];\nurl_tld = "{root / "tld.dat"}";\n'
        'dns {\n  nameserver = ["' + nameserver + '"];\n  timeout = 0.2s;\n  retransmits = 1;\n}\n',
    )
    _write(local / "local.d/redis.conf", redis_servers)
    _write(
        local / "override.d/classifier-bayes.conf",
        redis_servers + 'backend = "redis";\nmin_learns = 1;\nmin_tokens = 3;\n',
    )
    _write(local / "local.d/history_redis.conf", redis_servers)
    for module in OFF:
        _write(local / f"override.d/{module}.conf", "enabled = false;\n")
    return root / "rspamd.conf"


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def rspamd_engine() -> Iterator[Rspamd]:
    with running_rspamd() as found:
        yield found


@contextlib.contextmanager
def running_rspamd(nameserver: str = NO_DNS) -> Iterator[Rspamd]:
    """Redis and rspamd in a temporary directory; for the tests' fixture and for bench/smtp_accept --filters, which
    gives its DNS stub as NAMESERVER (a lookup that must time out costs each scan a second)."""
    with tempfile.TemporaryDirectory(prefix="jitaku-rspamd-") as name:
        root = Path(name)
        os.chmod(root, 0o755)
        for sub in ("run", "db", "log", "redis"):
            (root / sub).mkdir()
        redis_port, normal, controller = free_port(), free_port(), free_port()
        config = _configure(root, normal, controller, redis_port, nameserver)
        start = time.monotonic()
        redis = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(root / "redis"), "--logfile", str(root / "log/redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        variables = {
            "LOCAL_CONFDIR": root / "local",
            "RUNDIR": root / "run",
            "DBDIR": root / "db",
            "LOGDIR": root / "log",
        }
        command = ["rspamd", "-f", "-i", "-c", str(config)]
        for key, value in variables.items():
            command += ["--var", f"{key}={value}"]
        daemon = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(redis_port)
            url, controller_url = f"http://127.0.0.1:{normal}", f"http://127.0.0.1:{controller}"
            deadline = time.monotonic() + 30
            while not (_ping(url) and _ping(controller_url)):
                if daemon.poll() is not None or time.monotonic() > deadline:
                    log = root / "log/rspamd.log"
                    tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
                    raise RuntimeError(f"rspamd did not start: {tail}")
                time.sleep(0.1)
            yield Rspamd(url, controller_url, PASSWORD, root / "log/rspamd.log", time.monotonic() - start)
        finally:
            for process in (daemon, redis):
                stop_process(process)
