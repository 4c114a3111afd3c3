#!/usr/bin/env python3
"""Durable comment POSTs per second against a real `jitaku serve` (issue 21's benchmark, "durable comment
POSTs per second").

Why: a comment is answered "saved" only after its transaction commits (synchronous=FULL, so each commit waits
for the disk), and with the default moderation ("first") each also queues the owner's notification mail, so
the figure is what the writer's group commit makes of many readers sending at once. Each reader first GETs the
post's page for its form token (a cookie), as a browser does; after the 2 s a token must age, every reader
POSTs at once, CONCURRENCY in flight. The rate limit allows 5 comments per address in 10 minutes, so the
readers come from as many loopback addresses (127.0.0.2, 127.0.0.3, ...) as that needs, which Linux answers
without any setup. Printed: comments per second, the p50 and p99 of a POST, and how many were stored.

Usage: PYTHONPATH=src python3 bench/comment_posts.py [--comments 500] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

JITAKU = [sys.executable, "-m", "jitaku"]
POST = "---\ntitle: ベンチ\ndate: 2024-05-01\nslug: bench\n---\n本文\n"
POST_URL = "/2024/05/bench/"
CONFIG = """hostname = "mail.example.test"
domains = ["example.test"]
[smtp]
listen = ["127.0.0.1:0"]
[submission]
listen = ["127.0.0.1:0"]
[pop3]
listen = ["127.0.0.1:0"]
[imap]
listen = ["127.0.0.1:0"]
[web]
listen = ["127.0.0.1:0"]
[health]
enabled = false
"""
PER_ADDRESS = 5  # the comment form's rate limit (web/comments.py RATE_LIMIT)


def cli(data: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [*JITAKU, *args, "--dir", str(data)], input=stdin, capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout


def start(data: Path) -> tuple[subprocess.Popen[bytes], int]:
    process = subprocess.Popen(
        [*JITAKU, "serve", "--dir", str(data)], stdout=subprocess.DEVNULL, stderr=open(data / "serve.log", "ab")
    )
    ports = data / "ports.json"
    deadline = time.monotonic() + 30
    while not ports.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("jitaku serve did not start:\n" + (data / "serve.log").read_text())
        time.sleep(0.05)
    listening = json.loads(ports.read_text())
    return process, int(listening["web"][0].rpartition(":")[2])


async def run(port: int, post_id: int, count: int, concurrency: int) -> tuple[float, list[float], int]:
    """Seconds for COUNT POSTs, each one's latency, and how many were saved."""
    readers = []
    for number in range(count):
        local = f"127.0.0.{2 + number // PER_ADDRESS}"
        transport = httpx.AsyncHTTPTransport(local_address=local)
        readers.append(httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}", timeout=60))
    try:
        for reader in readers:  # each reader's page, and its token
            page = await reader.get(POST_URL)
            page.raise_for_status()
        await asyncio.sleep(2.1)
        slots = asyncio.Semaphore(concurrency)
        latencies: list[float] = []
        saved = 0

        async def send(number: int, reader: httpx.AsyncClient) -> None:
            nonlocal saved
            form = {"name": f"読者{number}", "email": f"r{number}@remote.test", "body": f"コメント {number} です。"}
            async with slots:
                began = time.perf_counter()
                answer = await reader.post(f"/comments/{post_id}", data=form)
                latencies.append(time.perf_counter() - began)
            saved += answer.status_code in (200, 303)

        began = time.perf_counter()
        await asyncio.gather(*(send(number, reader) for number, reader in enumerate(readers)))
        return time.perf_counter() - began, latencies, saved
    finally:
        for reader in readers:
            await reader.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=50)
    options = parser.parse_args()
    if options.comments > 250 * PER_ADDRESS:
        raise SystemExit(f"at most {250 * PER_ADDRESS} comments: one loopback address for each {PER_ADDRESS}")
    with tempfile.TemporaryDirectory() as directory:
        data = Path(directory) / "data"
        data.mkdir()
        (data / "jitaku.toml").write_text(CONFIG)
        os.chmod(data / "jitaku.toml", 0o600)
        cli(data, "init")
        cli(data, "user", "add", "owner@example.test", "--password-stdin", stdin="bench-password\n")
        posts = Path(directory) / "posts"
        posts.mkdir()
        (posts / "bench.md").write_text(POST)
        cli(data, "blog", "import", str(posts))
        [post] = json.loads(cli(data, "blog", "posts", "--json"))
        process, port = start(data)
        try:
            seconds, latencies, saved = asyncio.run(run(port, post["id"], options.comments, options.concurrency))
        finally:
            process.terminate()
            process.wait(timeout=30)
        stored = len(json.loads(cli(data, "blog", "comments", "--json")))
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    print(
        f"{options.comments} comments, {options.concurrency} in flight: {saved / seconds:.0f} durable POSTs/s,"
        f" p50 {p50:.1f} ms, p99 {p99:.1f} ms; {saved} answered saved, {stored} stored"
    )


if __name__ == "__main__":
    main()
