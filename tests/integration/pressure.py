"""What an attack costs the house, seen from outside: the daemon's resident memory, and how long a new MX
client waits for its banner (the event loop's latency, as a stranger's server would feel it).

    with Pressure(server) as pressure:
        ...the attack...
    assert pressure.prompt
    assert pressure.rss_growth < 150 * MB

Memory is sampled every SAMPLE seconds and, as root, also read from the kernel's high-water mark
(VmHWM, reset at the start through /proc/PID/clear_refs), so a peak between two samples is not missed.

A banner is prompt within PROMPT seconds on a machine with a core for each runnable process; on a busier one
(the suite's other workers, a build) every process gets its turn less often, and the bound grows with the
load average per core seen during the attack. An attack that holds the event loop holds it for seconds of
CPU, and its wait grows with the load the same way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import threading
import time
from typing import Any

MB = 1024 * 1024
SAMPLE = 0.1  # seconds between memory samples and banner probes
# seconds: the longest banner wait on an idle machine. Twice what the daemon needs: the probe runs in the test's
# process beside the attack's hundreds of threads, and one probe that waited its turn for the GIL there (2.05 s,
# once in CI, with every other probe at 3 ms) is the test's own stall, not the daemon's.
PROMPT = 2.0


def _status(pid: int, field: str) -> int:
    """A VmRSS/VmHWM line of /proc/PID/status, in bytes; 0 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _family(pid: int) -> list[int]:
    """PID and its children (the SMTP workers)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [pid, *(int(child) for child in children.read().split())]
    except OSError:
        return [pid]


def rss(pid: int) -> int:
    return sum(_status(member, "VmRSS") for member in _family(pid))


def banner_wait(port: int, timeout: float = 30.0) -> float:
    """Seconds from connect to the end of the MX's 220 line (timeout when there is none)."""
    started = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.settimeout(max(0.1, timeout - (time.monotonic() - started)))
            data = b""
            while b"\n" not in data:
                chunk = sock.recv(512)
                if not chunk:
                    return timeout
                data += chunk
            if not data.startswith(b"220"):
                return timeout
            with contextlib.suppress(OSError):
                sock.sendall(b"QUIT\r\n")
    except OSError:
        return timeout
    return time.monotonic() - started


class Pressure:
    """Watches SERVER (a tests.integration.harness.Jitaku that is running) while a `with` block attacks it."""

    def __init__(self, server: Any, probe_banner: bool = True) -> None:
        assert server.process is not None, "start the server first"
        self._pid: int = server.process.pid
        self._port: int = server.smtp_port
        self._probe_banner = probe_banner
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.idle_rss = 0
        self.peak_rss = 0
        self.banners: list[float] = []
        self.busiest = 1.0  # the highest load average per core seen, at least 1
        self._hwm_reset = False

    def __enter__(self) -> Pressure:
        banner_wait(self._port)  # a daemon just started is still loading what its first client needs
        time.sleep(0.5)
        self.idle_rss = rss(self._pid)
        self.peak_rss = self.idle_rss
        for member in _family(self._pid):
            try:
                with open(f"/proc/{member}/clear_refs", "w") as clear:
                    clear.write("5")  # reset VmHWM to the current RSS (Linux 4.0+, root)
                self._hwm_reset = True
            except OSError:
                self._hwm_reset = False
        self._threads = [threading.Thread(target=self._sample, daemon=True)]
        if self._probe_banner:
            self._threads.append(threading.Thread(target=self._probe, daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        if self._hwm_reset:
            self.peak_rss = max(self.peak_rss, sum(_status(member, "VmHWM") for member in _family(self._pid)))

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE):
            self.peak_rss = max(self.peak_rss, rss(self._pid))
            self.busiest = max(self.busiest, os.getloadavg()[0] / (os.cpu_count() or 1))

    def _probe(self) -> None:
        while not self._stop.is_set():
            self.banners.append(banner_wait(self._port))
            self._stop.wait(SAMPLE)

    @property
    def rss_growth(self) -> int:
        """Bytes the daemon's peak RSS rose above what it held when the attack began."""
        return self.peak_rss - self.idle_rss

    @property
    def worst_banner(self) -> float:
        assert self.banners, "no banner was probed"
        return max(self.banners)

    @property
    def banner_bound(self) -> float:
        """PROMPT on an idle machine, longer as the machine was busier (the module's docstring says why)."""
        return PROMPT * self.busiest

    @property
    def prompt(self) -> bool:
        """Whether every MX client got its banner within the bound: the attack never held the event loop."""
        return self.worst_banner < self.banner_bound

    def report(self, attack: str) -> str:
        """One line for the test's output (pytest -s, or the failure message); bench/attacks reads it."""
        banner = ""
        if self.banners:
            median = statistics.median(self.banners)
            banner = (
                f" worst_banner={self.worst_banner:.3f}s median_banner={median:.3f}s probes={len(self.banners)}"
                f" bound={self.banner_bound:.1f}s"
            )
        return (
            f"attack={attack} idle_rss={self.idle_rss / MB:.0f}MB peak_rss={self.peak_rss / MB:.0f}MB"
            f" growth={self.rss_growth / MB:.0f}MB{banner}"
        )


def still_serves(server: Any) -> None:
    """The daemon answers a new MX client promptly after the attack (its process is still there)."""
    assert server.process.poll() is None, "the daemon died:\n" + server.log()[-3000:]
    wait = banner_wait(server.smtp_port, timeout=10)
    assert wait < 5, f"no MX banner within 5 s after the attack ({wait:.1f} s)"
