#!/usr/bin/env python3
"""The writer's cost per accepted message: SQLAlchemy Core against prepared statements on the DB-API.

Why: a profile of the SMTP accept path (issue 20) found SQLAlchemy in the writer costing ~900 µs per
message against SQLite's own 11 µs. This bench commits N deliveries of a 4 KiB message (one local copy, and
with --queued a queue entry for one remote recipient too) through the one writer, as the SMTP sessions do,
with SESSIONS of them waiting at once so that group commit batches them:
  * core:     the job writes through mailstore.append / queue.enqueue, as before issue 20 (the local copy
              is now on the DB-API there too: only the queue entry still goes through SQLAlchemy Core);
  * prepared: the job is mail/delivery.commit on the writer's Tx (store/intake.py).
Rounds alternate between the two, on fresh databases in a temporary directory (synchronous=FULL, so each
commit waits for the disk), and the best round of each is printed: wall and CPU µs per message, and the
ratio. The machine is shared: read the figures as a ratio of one run.

Usage: PYTHONPATH=src python3 bench/store_append.py [--messages 5000] [--sessions 20] [--rounds 3] [--queued]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from jitaku.mail import delivery
from jitaku.mail.delivery import Copy, Delivery, Entry
from jitaku.store import Database, accounts, mailstore, queue

USER = "alice@example.test"


def _core(copies: Delivery) -> Callable[[Any], None]:
    def job(connection: Any) -> None:
        now = time.time()
        for copy in copies.local:
            mailstore.append(connection, copy.mailbox, copy.message)
        for entry in copies.queued:
            queue.enqueue(connection, entry.queue_id, entry.sender, entry.recipients, entry.body, now)

    return job


def _delivery(number: int, body: bytes, queued: bool) -> Delivery:
    remote = [Entry(f"Q{number:010d}", USER, ["bob@remote.test"], body)] if queued else []
    return Delivery(local=[Copy(USER, body)], queued=remote)


async def _round(database: Database, path: str, messages: int, sessions: int, body: bytes, queued: bool) -> None:
    def submit(number: int) -> Coroutine[Any, Any, None]:
        copies = _delivery(number, body, queued)
        if path == "core":
            return database.write(_core(copies))
        return database.transact(lambda tx: delivery.commit(tx, copies))

    async def session(first: int) -> None:
        for number in range(first, messages, sessions):
            await submit(number)

    await asyncio.gather(*(session(first) for first in range(sessions)))


def measure(directory: Path, path: str, messages: int, sessions: int, body: bytes, queued: bool) -> tuple[float, float]:
    """(wall µs, CPU µs) per message for one round on a fresh database."""
    database = Database(f"sqlite:///{directory / f'{path}-{time.monotonic_ns()}.db'}")
    with database.transaction() as connection:
        accounts.add_user(connection, USER, None)
    asyncio.run(_round(database, path, 50, 1, body, queued))  # the writer's thread and the statement caches
    wall, cpu = time.perf_counter(), time.process_time()
    asyncio.run(_round(database, path, messages, sessions, body, queued))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stored = database.read_now(lambda c: mailstore.mailboxes(c, USER, "INBOX"))[0].messages
    assert stored == messages + 50, f"{path}: {stored} messages stored, {messages + 50} expected"
    database.close()
    return wall / messages * 1e6, cpu / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--sessions", type=int, default=20, help="deliveries waiting at once (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per path, alternating (default 3)")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--queued", action="store_true", help="each message also queued for a remote recipient")
    args = parser.parse_args()
    body = b"Subject: bench\r\n\r\n" + b"x" * args.size
    best: dict[str, tuple[float, float]] = {}
    with tempfile.TemporaryDirectory(prefix="jitaku-store-bench-") as directory:
        for number in range(args.rounds):
            for path in ("core", "prepared") if number % 2 == 0 else ("prepared", "core"):
                wall, cpu = measure(Path(directory), path, args.messages, args.sessions, body, args.queued)
                print(f"  round {number + 1} {path:9} {wall:8.1f} µs/msg wall {cpu:8.1f} µs/msg CPU", flush=True)
                best[path] = min(best.get(path, (wall, cpu)), (wall, cpu))
    what = "local copy + queue entry" if args.queued else "local copy"
    print(f"{args.messages} messages ({what}, {args.size} B), {args.sessions} waiting at once; best of {args.rounds}")
    for path, (wall, cpu) in best.items():
        print(f"{path:9} {wall:8.1f} µs/msg wall {cpu:8.1f} µs/msg CPU")
    core, prepared = best["core"], best["prepared"]
    print(f"ratio core/prepared: wall {core[0] / prepared[0]:.2f}x, CPU {core[1] / prepared[1]:.2f}x")


if __name__ == "__main__":
    main()
