#!/usr/bin/env python3
"""The writer's cost per accepted message: its prepared statements through the daemon's writer, against the
same statements on a plain sqlite3 connection.

Why: a profile of the SMTP accept path (issue 20) found SQLAlchemy in the writer costing ~900 µs per
message against SQLite's own 11 µs; the writes every message makes are now prepared statements on the DB-API
(store/intake.py, mailstore.append). This bench commits N deliveries of a 4 KiB message (one local copy, and
with --queued a queue entry for one remote recipient too), each as mail/delivery.commit:
  * writer: through the one writer, as the SMTP sessions do, with SESSIONS of them waiting at once so that
            group commit batches them;
  * direct: on a plain sqlite3 connection (the driver's, tuned alike) in this thread, SESSIONS messages a
            transaction, each in its own SAVEPOINT: what the writer would cost without its thread, its queue
            and the event loop's hand-offs, the floor it is measured against.
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
from functools import partial
from pathlib import Path
from typing import Any

from jitaku.mail import delivery
from jitaku.mail.delivery import Copy, Delivery, Entry
from jitaku.store import Database, Tx, accounts
from jitaku.store.driver import driver_for

USER = "alice@example.test"
TABLES = ("messages", "queue")


def _delivery(number: int, body: bytes, queued: bool) -> Delivery:
    remote = [Entry(f"Q{number:010d}", USER, ["bob@remote.test"], body)] if queued else []
    return Delivery(local=[Copy(USER, body)], queued=remote)


async def _through_writer(
    database: Database, first: int, messages: int, sessions: int, body: bytes, queued: bool
) -> None:
    async def session(start: int) -> None:
        for number in range(start, first + messages, sessions):
            await database.transact(partial(delivery.commit, delivery=_delivery(number, body, queued)))

    await asyncio.gather(*(session(start) for start in range(first, first + sessions)))


def _direct(url: str, first: int, messages: int, sessions: int, body: bytes, queued: bool) -> None:
    driver = driver_for(url)
    connection = driver.connect()
    tx = Tx(connection, driver.dialect, driver.error)
    for start in range(first, first + messages, sessions):
        tx.begin()
        for number in range(start, min(start + sessions, first + messages)):
            tx.savepoint()
            delivery.commit(tx, _delivery(number, body, queued))
            tx.release()
        tx.commit()
    connection.close()


def _round(database: Database, url: str, path: str, first: int, messages: int, sessions: int, **given: Any) -> None:
    if path == "writer":
        asyncio.run(_through_writer(database, first, messages, sessions, **given))
    else:
        _direct(url, first, messages, sessions, **given)


def measure(directory: Path, path: str, messages: int, sessions: int, body: bytes, queued: bool) -> tuple[float, float]:
    """(wall µs, CPU µs) per message for one round on a fresh database."""
    url = f"sqlite:///{directory / f'{path}-{time.monotonic_ns()}.db'}"
    database = Database(url)
    with database.transaction() as connection:
        accounts.add_user(connection, USER, None)
    _round(database, url, path, 0, 50, 1, body=body, queued=queued)  # the writer's thread, the statement caches
    wall, cpu = time.perf_counter(), time.process_time()
    _round(database, url, path, 50, messages, sessions, body=body, queued=queued)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stored = database.query_now(lambda s: [s.run(f"SELECT count(*) FROM {table}")[0][0] for table in TABLES])
    expected = [messages + 50, messages + 50 if queued else 0]
    assert stored == expected, f"{path}: {stored} messages and queue entries stored, {expected} expected"
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
            for path in ("writer", "direct") if number % 2 == 0 else ("direct", "writer"):
                wall, cpu = measure(Path(directory), path, args.messages, args.sessions, body, args.queued)
                print(f"  round {number + 1} {path:6} {wall:8.1f} µs/msg wall {cpu:8.1f} µs/msg CPU", flush=True)
                best[path] = min(best.get(path, (wall, cpu)), (wall, cpu))
    what = "local copy + queue entry" if args.queued else "local copy"
    print(f"{args.messages} messages ({what}, {args.size} B), {args.sessions} waiting at once; best of {args.rounds}")
    for path, (wall, cpu) in best.items():
        print(f"{path:6} {wall:8.1f} µs/msg wall {cpu:8.1f} µs/msg CPU")
    writer, direct = best["writer"], best["direct"]
    print(f"ratio writer/direct: wall {writer[0] / direct[0]:.2f}x, CPU {writer[1] / direct[1]:.2f}x")


if __name__ == "__main__":
    main()
