"""Idle memory: `jitaku serve` with the config `jitaku init` writes stays under 80 MiB resident once started
(issue 20, a standing contract from then on). What an idle home server costs is most of what it costs.

The config is init's own, all of it, but for the listeners' ports (port 0, so that tests and a running jitaku
do not collide). Idle: every listener is up and the resident size has stopped growing (the first health round
runs at the start). A failure lists the packages `jitaku serve` imports, largest first, for whoever must find
what came in.
"""

from __future__ import annotations

import collections
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from tests.integration.harness import Jitaku

LIMIT_MIB = 80.0
SETTLED_MIB = 0.25  # growth over a second below which the daemon counts as idle
SERVE_IMPORTS = ("jitaku.cli", "jitaku.app", "jitaku.health.monitor", "jitaku.web.status")


def test_the_default_config_idles_under_80_mib(jitaku_factory: Any) -> None:
    server: Jitaku = jitaku_factory()
    config = server.dir / "jitaku.toml"
    config.unlink()  # the harness's own; init writes the default
    server.cli("init", "--domain", "example.test")
    config.write_text(re.sub(r'listen = \["127\.0\.0\.1:\d+"\]', 'listen = ["127.0.0.1:0"]', config.read_text()))
    server.start()
    assert server.process is not None
    daemon = psutil.Process(server.process.pid)

    rss = idle_rss(daemon)
    workers = ", ".join(f"worker {child.pid} {mib(child.memory_info().rss):.1f}" for child in daemon.children())
    assert rss < LIMIT_MIB, (
        f"jitaku serve idles at {rss:.1f} MiB resident (limit {LIMIT_MIB:.0f}){'; ' + workers if workers else ''}."
        f" What it imports, largest first:\n{largest_packages()}"
    )


def idle_rss(process: psutil.Process, timeout: float = 30.0) -> float:
    """PROCESS's resident MiB once it stops growing (at least 2 s after the start, at most TIMEOUT)."""
    time.sleep(2.0)
    deadline = time.monotonic() + timeout
    last = mib(process.memory_info().rss)
    while True:
        time.sleep(1.0)
        now = mib(process.memory_info().rss)
        if now - last < SETTLED_MIB or time.monotonic() > deadline:
            return now
        last = now


def mib(size: int) -> float:
    return size / 2**20


def largest_packages(top: int = 15) -> str:
    """The top-level packages the daemon's modules import, by the size of their Python source (a fair proxy
    for the code objects and classes they leave resident)."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {SERVE_IMPORTS!r}: importlib.import_module(name)\n"
        "print(json.dumps([[m, getattr(mod, '__file__', None)] for m, mod in list(sys.modules.items())]))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    sizes: collections.Counter[str] = collections.Counter()
    counts: collections.Counter[str] = collections.Counter()
    for name, file in json.loads(result.stdout):
        package = name.split(".")[0]
        counts[package] += 1
        if file and file.endswith(".py"):  # extension modules' files are mostly mapped, not resident
            sizes[package] += Path(file).stat().st_size
    return "\n".join(
        f"  {package}: {counts[package]} modules, {size / 1024:.0f} KiB of Python source"
        for package, size in sizes.most_common(top)
    )
