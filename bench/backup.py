#!/usr/bin/env python3
"""A first `jitaku backup now` of a 10,000-message store and a second one after 1,000 new messages, against plain
`restic backup` of a copy of the same files, in the same run: the seconds each took and the bytes each repository
grew by.

Why: jitaku drives restic (issue 26) and adds its own work around it: a consistent copy of the database taken while
mail arrives (SQLite's online backup, store/backup.py), the data directory's files beside it, the counts a restore
is checked against, all staged in DIR/backup/staging. The peer is what a careful person does by hand: the same
copy made with sqlite3's backup API and the same files (all but snapshot.LEFT_OUT) in a plain directory, then
`restic backup` of it into a fresh repository of its own. Its seconds are restic's alone; the copy is timed apart
(printed under the table), so the ratio is what jitaku's CLI, copy and counts cost on top of restic, and the bytes
show whether jitaku's copy deduplicates as well as the peer's from one backup to the next.

The store is filled through mailstore.append, not over SMTP: imap_servers' messages of about 4 KiB (a fifth with
Japanese subject and body) with a quoted tail of random length (3 to 9 KiB in all), and one in 40 with an
attachment of 30 to 300 KiB of random bytes (a photo or a PDF: it does not compress). Both repositories are local
directories in one temporary directory, made with restic's defaults (repository v2, compressed), each with a cache
of its own, both cold at the first run; the peer's is made with jitaku's chunker parameters, so that the same bytes
are cut into the same chunks and the bytes compare. Bytes are `du -sb` of each repository before and after; the
peer's data_added (restic's summary, before compression; jitaku's CLI does not print restic's) is printed under the
table, as are the CPU seconds of each run and the seconds jitaku's CLI takes to start (`jitaku backup --help`), which
is in its column. jitaku runs with its bytecode cached, as an installed package does. The machine is shared: read
the ratio of one run, and the CPU seconds, which hold steadier.

Usage: PYTHONPATH=src bench/backup [--messages 10000] [--added 1000]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from imap_servers import JITAKU, WORDS, message  # noqa: E402
from smtp_accept import set_toml_keys  # noqa: E402

import jitaku  # noqa: E402
from jitaku.backup.restic import THEIRS  # noqa: E402
from jitaku.backup.snapshot import DATABASE, LEFT_OUT  # noqa: E402
from jitaku.store import Database, accounts, mailstore  # noqa: E402

USER = "alice@example.test"
ATTACHED = 40  # one message in ATTACHED carries an attachment
BATCH = 1000  # messages a transaction while filling the store


def mail(number: int) -> bytes:
    """imap_servers.message with a quoted tail of random length, and now and then an attachment."""
    rng = random.Random(-number)
    quoted = "".join("> " + " ".join(rng.choice(WORDS) for _ in range(12)) + "\r\n" for _ in range(rng.randrange(120)))
    plain = message(number, USER) + quoted.encode()
    if number % ATTACHED:
        return plain
    head, _, text = plain.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    boundary = f"=_bench_{number}".encode()
    attachment = base64.encodebytes(rng.randbytes(rng.randrange(30 << 10, 300 << 10))).replace(b"\n", b"\r\n")
    return b"\r\n".join(
        [
            *(line for line in lines if not line.startswith(b"Content-")),
            b'Content-Type: multipart/mixed; boundary="' + boundary + b'"',
            b"",
            b"--" + boundary,
            *(line for line in lines if line.startswith(b"Content-")),
            b"",
            text,
            b"--" + boundary,
            f'Content-Type: application/pdf; name="scan{number}.pdf"'.encode(),
            b"Content-Transfer-Encoding: base64",
            b"",
            attachment,
            b"--" + boundary + b"--",
            b"",
        ]
    )


def fill(data: Path, first: int, count: int) -> int:
    """COUNT messages from number FIRST appended to the user's INBOX; their bytes."""
    database = Database(f"sqlite:///{data / DATABASE}")
    size = 0
    try:
        for start in range(first, first + count, BATCH):
            with database.transaction() as connection:
                for number in range(start, min(start + BATCH, first + count)):
                    body = mail(number)
                    size += len(body)
                    mailstore.append(connection, USER, body)
    finally:
        database.close()
    return size


def installed(work: Path) -> dict[str, str]:
    """The environment jitaku's CLI runs in here: its modules' bytecode cached (in WORK) as an installed package's
    is, even where PYTHONDONTWRITEBYTECODE is set (as in this project's test runs), which would otherwise have it
    compile every module at each run."""
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    environment["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    package = Path(jitaku.__file__).parent
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], env=environment, check=True)
    return environment


def jitaku_box(data: Path, repository: Path, environment: dict[str, str]) -> None:
    """A `jitaku init` directory with USER and [backup] target REPOSITORY, made by `backup init --same-disk`."""
    run = partial(subprocess.run, env=environment, check=True, capture_output=True)
    run([*JITAKU, "init", "--domain", "example.test", "--dir", str(data)])
    config = data / "jitaku.toml"
    config.write_text(set_toml_keys(config.read_text(), {"backup": {"target": json.dumps(str(repository))}}))
    run([*JITAKU, "backup", "init", "--same-disk", "--dir", str(data)])
    database = Database(f"sqlite:///{data / DATABASE}")
    with database.transaction() as connection:
        accounts.add_user(connection, USER, None)
    database.close()


@dataclass(frozen=True)
class Measured:
    """One backup: wall and CPU seconds (its own and its children's, restic's included), the bytes its repository
    grew by on the disk (du -sb), and restic's data_added (before compression) when it is known."""

    wall: float
    cpu: float
    grown: int
    data_added: int | None


def measured(
    repository: Path, command: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> Measured:
    """COMMAND, which backs up into REPOSITORY, run to its end."""
    size = du(repository)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    summaries = [json.loads(line) for line in done.stdout.splitlines() if '"message_type":"summary"' in line]
    return Measured(wall, cpu, du(repository) - size, summaries[-1]["data_added"] if summaries else None)


def du(path: Path) -> int:
    return int(subprocess.run(["du", "-sb", str(path)], check=True, capture_output=True, text=True).stdout.split()[0])


def stage(data: Path, copy: Path) -> float:
    """DATA's files and its database's consistent copy in a new plain directory COPY, as jitaku stages them; the
    seconds that took."""
    began = time.perf_counter()
    shutil.rmtree(copy, ignore_errors=True)
    top = str(data)
    shutil.copytree(
        data, copy, symlinks=True, ignore=lambda where, names: LEFT_OUT & set(names) if where == top else ()
    )
    reading, writing = sqlite3.connect(data / DATABASE), sqlite3.connect(copy / DATABASE)
    reading.backup(writing)
    writing.execute("PRAGMA journal_mode=DELETE").close()
    writing.close()
    reading.close()
    return time.perf_counter() - began


def peer_environment(work: Path) -> dict[str, str]:
    """Plain restic's: a repository of its own in WORK, with its password file and cache."""
    (work / "peer.secret").write_text("bench-password\n")
    environment = {key: value for key, value in os.environ.items() if key not in THEIRS}
    environment.update(
        RESTIC_REPOSITORY=str(work / "peer-repo"),
        RESTIC_PASSWORD_FILE=str(work / "peer.secret"),
        RESTIC_CACHE_DIR=str(work / "peer-cache"),
        RESTIC_PROGRESS_FPS="1",  # as jitaku runs it
    )
    return environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000, help="in the store at the first backup")
    parser.add_argument("--added", type=int, default=1_000, help="new messages before the second backup")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="jitaku-backup-bench-"))
    data, copy = work / "jitaku", work / "plain"
    rows: list[tuple[str, Measured, Measured, float]] = []
    try:
        environment = installed(work)
        jitaku_box(data, work / "jitaku-repo", environment)
        began = time.perf_counter()
        subprocess.run([*JITAKU, "backup", "--help"], env=environment, check=True, capture_output=True)
        start = time.perf_counter() - began
        peer = peer_environment(work)
        # jitaku's chunker parameters: the same bytes cut at the same places, so that the bytes compare
        chunker = ["--copy-chunker-params", "--from-repo", str(work / "jitaku-repo")]
        chunker += ["--from-password-file", str(data / "backup.secret")]
        subprocess.run(["restic", "init", *chunker], env=peer, check=True, capture_output=True)
        size = fill(data, 1, args.messages)
        print(f"{args.messages} messages, {size / 2**20:.1f} MiB; {subprocess.getoutput('restic version')}", flush=True)
        for run, count in (("first", 0), ("second", args.added)):
            if count:
                size = fill(data, args.messages + 1, count)
                print(f"{count} messages more, {size / 2**20:.1f} MiB", flush=True)
            ours = measured(work / "jitaku-repo", [*JITAKU, "backup", "now", "--dir", str(data)], env=environment)
            copied = stage(data, copy)
            theirs = measured(work / "peer-repo", ["restic", "backup", "--json", "."], cwd=copy, env=peer)
            rows.append((run, ours, theirs, copied))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{'run':8}{'jitaku s':>10}{'restic s':>10}{'ratio':>8}{'jitaku bytes':>15}{'restic bytes':>15}")
    for run, ours, theirs, _ in rows:
        ratio = ours.wall / theirs.wall
        print(f"{run:8}{ours.wall:10.2f}{theirs.wall:10.2f}{ratio:8.2f}{ours.grown:15,}{theirs.grown:15,}")
    for run, ours, theirs, copied in rows:
        print(
            f"{run}: CPU s (restic's included) jitaku {ours.cpu:.1f}, restic {theirs.cpu:.1f}; the peer's copy"
            f" took {copied:.1f} s (not in its column); restic's data_added {theirs.data_added:,}"
        )
    print(f"jitaku's CLI start (`jitaku backup --help`), in its column: {start:.2f} s")


if __name__ == "__main__":
    main()
