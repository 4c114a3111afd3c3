#!/usr/bin/env python3
"""An initial mbsync of a 10,000-message mailbox, and a FETCH of every message's header, from jitaku and
from Dovecot (Debian's dovecot-imapd in a directory of its own on a loopback port), in the same run.
Prints both times, the ratio, and the jitaku server's peak memory. The goal is within 2x of Dovecot.

Both servers get the same messages (about 4 KiB each, a fifth with Japanese subjects and bodies) before
the clock starts; each is opened once first, so Dovecot's index is built and jitaku's pages are warm.

Each figure is the best of --rounds alternating rounds (the machine is shared and noisy).

Usage: bench/imap_sync [--messages 10000] [--rounds 3]   (as root: Dovecot's mail processes run as nobody)
"""

from __future__ import annotations

import argparse
import imaplib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imap_servers import PASSWORD, message, start_dovecot, start_jitaku  # noqa: E402

USER = "alice@example.test"


def warm(port: int, user: str) -> None:
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(user, PASSWORD)
    imap.select("INBOX")
    imap.uid("FETCH", "1:*", "(FLAGS)")
    imap.logout()


def mbsync(port: int, user: str, work: Path) -> float:
    local = Path(tempfile.mkdtemp(prefix="maildir-", dir=work))
    rc = local / "mbsyncrc"
    rc.write_text(
        f"IMAPAccount a\nHost 127.0.0.1\nPort {port}\nUser {user}\nPass {PASSWORD}\nSSLType None\n"
        "AuthMechs PLAIN\n\nIMAPStore remote\nAccount a\n\n"
        f"MaildirStore local\nPath {local}/\nInbox {local}/INBOX\n\n"
        "Channel sync\nFar :remote:\nNear :local:\nPatterns INBOX\nCreate Near\nSyncState *\n"
    )
    started = time.perf_counter()
    subprocess.run(["mbsync", "-q", "-c", str(rc), "-a"], check=True, timeout=1800)
    took = time.perf_counter() - started
    synced = len(list((local / "INBOX" / "cur").iterdir())) + len(list((local / "INBOX" / "new").iterdir()))
    shutil.rmtree(local)
    if synced == 0:
        raise SystemExit(f"mbsync from port {port} synced nothing")
    return took


def headers(port: int, user: str) -> float:
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(user, PASSWORD)
    imap.select("INBOX", readonly=True)
    started = time.perf_counter()
    _ok, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER])")
    took = time.perf_counter() - started
    imap.logout()
    if len([item for item in data if isinstance(item, tuple)]) == 0:
        raise SystemExit(f"no headers from port {port}")
    return took


class Peak:
    """The highest resident memory of PID (and its children) while running, sampled every 50 ms."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            try:
                rss = self.process.memory_info().rss + sum(c.memory_info().rss for c in self.process.children())
            except psutil.Error:
                return
            self.peak = max(self.peak, rss)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jitaku-imap-bench-"))
    work.chmod(0o755)
    messages = [message(number, USER) for number in range(1, args.messages + 1)]
    size = sum(len(body) for body in messages)
    print(
        f"{len(messages)} messages, {size / 2**20:.1f} MiB; mbsync {subprocess.run(['mbsync', '-v'], capture_output=True, text=True).stdout.strip() or 'isync'}"
    )
    dovecot = start_dovecot({USER: {"INBOX": messages}})
    process = None
    try:
        process, port = start_jitaku(work / "jitaku", {USER: {"INBOX": messages}})
        warm(dovecot.port, USER)
        warm(port, USER)
        peak = Peak(process.pid)
        syncs: tuple[list[float], list[float]] = ([], [])
        fetches: tuple[list[float], list[float]] = ([], [])
        for _ in range(args.rounds):
            syncs[0].append(mbsync(port, USER, work))
            syncs[1].append(mbsync(dovecot.port, USER, work))
            fetches[0].append(headers(port, USER))
            fetches[1].append(headers(dovecot.port, USER))
        memory = peak.stop()
    finally:
        if process is not None:
            process.terminate()
            process.wait()
        dovecot.close()
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'':28}{'jitaku':>10}{'Dovecot':>10}{'ratio':>8}")
    for what, (ours, theirs) in (
        ("initial mbsync, s", map(min, syncs)),
        ("FETCH 1:* BODY[HEADER], s", map(min, fetches)),
    ):
        print(f"{what:28}{ours:10.2f}{theirs:10.2f}{ours / theirs:8.2f}")
    print(f"jitaku serve peak memory (RSS, with workers): {memory / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
