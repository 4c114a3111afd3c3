"""`jitaku backup` against real restic, a repository in a local directory (issue 26): a snapshot taken while mail
arrives holds every message acknowledged before its newest one, restores into a directory `jitaku serve` starts
from and serves over IMAP, and passes `verify`; a damaged pack makes `verify` fail naming the snapshot; a wrong
password file is one line; a restore into a non-empty directory is refused; a backup killed with -9 lists as
nothing, and the next one succeeds."""

from __future__ import annotations

import contextlib
import email
import imaplib
import json
import os
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import JITAKU, READER, Jitaku, deliver
from tests.peers import Zone, wait_for_port, wait_until
from tests.postgres import on_postgresql

PASSWORD = "secret-password"
SNAPSHOT = "snapshot "  # `backup now` says "snapshot ID: ..."
# the kill tests' file: random bytes (no dedupe, no compression), four of restic's 16 MiB packs, of which it is
# killed once it has sent or restored one (_cut_short)
LARGE = 64 << 20
SLICE = 0.005  # seconds restic runs at a time while a kill test holds it back (_cut_short)
WAIT = 30.0  # seconds a kill test waits at most for each step of restic's
CLI = 60  # seconds Jitaku.cli gives a command at most
BOX = 4 * CLI  # the box fixture's commands: init, two users, backup init
# pytest-timeout's thread ends the worker with os._exit, which runs no finally: a kill test's own deadlines (its
# commands', five WAITs) all pass before it, so that its finally always runs, and leaves no restic stopped or
# jitaku waiting on one for restic's deadline of hours; the minute more is the fixtures' other setup
KILL_TIMEOUT = BOX + 4 * CLI + 5 * WAIT + 60


@pytest.fixture
def box(jitaku_factory: Any, tmp_path: Path, dns_zone: tuple[Zone, int]) -> Jitaku:
    """A jitaku with alice and bob whose [backup] target is a new restic repository in tmp_path, made by init; its
    DNS the tests' own (remote.test's negative answers cached by its SOA), so that no message waits on another's."""
    if on_postgresql():
        pytest.skip("backup on PostgreSQL comes later (issue 26)")
    zone, dns_port = dns_zone
    zone.add("remote.test. 300 IN SOA ns.remote.test. hostmaster.remote.test. 1 60 60 60 300")
    server: Jitaku = jitaku_factory(dns_port)
    # every = 0: these tests take each backup by hand, and the daemon's schedule (test_backup_schedule.py) would
    # hold the lock at its start
    server.settings["backup"] = {"target": str(tmp_path / "repo"), "every": 0}
    server.write_config()
    server.init(READER, "bob@example.org")
    server.cli("backup", "init", "--same-disk")  # tmp_path is the data dir's disk (test_init_...)
    return server


def test_init_refuses_the_data_dirs_disk_makes_a_0600_password_and_says_once_to_keep_a_copy(
    jitaku_factory: Any, tmp_path: Path
) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["backup"] = {"target": str(tmp_path / "repo"), "every": 0}
    server.write_config()
    refused = server.cli("backup", "init", check=False)  # tmp_path is the data dir's disk: an unmounted one's look
    assert refused.returncode == 1 and "--same-disk" in refused.stderr and not (tmp_path / "repo").exists()
    made = server.cli("backup", "init", "--same-disk")
    assert "without it the backups cannot be read" in made.stdout
    assert (server.dir / "backup.secret").stat().st_mode & 0o777 == 0o600
    again = server.cli("backup", "init")  # says so once: a second init finds the repository, and changes nothing
    assert "nothing changed" in again.stdout and "cannot be read" not in again.stdout


def test_a_backup_taken_while_mail_arrives_restores_into_a_jitaku_that_serves_it(
    box: Jitaku, jitaku_factory: Any, tmp_path: Path
) -> None:
    box.start()
    snapshot, before, acknowledged = backed_up_while_mail_arrives(box, first=20, after=5)
    [listed] = [item for item in json.loads(box.cli("backup", "list", "--json").stdout) if item["id"] == snapshot]

    restored: Jitaku = jitaku_factory(name="restored")
    (restored.dir / "jitaku.toml").unlink()  # an empty directory, which restore takes
    said = box.cli("backup", "restore", snapshot, "--to", str(restored.dir)).stdout
    assert f"It backs up into the same repository, {tmp_path / 'repo'}" in " ".join(said.split())
    # the data directory's files, as they were (modes too), and none of what a running daemon makes for itself
    for name in ("jitaku.db", "tls/key.pem", "web.secret", "backup.secret", *_relative(box.dir, "dkim")):
        assert (restored.dir / name).stat().st_mode & 0o777 == 0o600, name
    assert (restored.dir / "tls" / "cert.pem").read_bytes() == (box.dir / "tls" / "cert.pem").read_bytes()
    for name in ("backup", "jitaku.db-wal", "jitaku.db-shm", "serve.lock", "ports.json", "backup.json"):
        assert not (restored.dir / name).exists(), name
    stored = _subjects(restored.dir / "jitaku.db")
    newest = stored[listed["newest"]]
    # every message acknowledged before the backup began is in it, with none missing before its newest one and
    # none that was never acknowledged
    assert set(range(before)) <= set(stored.values())
    assert sorted(stored.values()) == list(range(newest + 1)) and newest < len(acknowledged)
    assert len(stored) == listed["messages"]

    restored.start()
    wait_for_port(restored.imap_port)
    imap = imaplib.IMAP4("127.0.0.1", restored.imap_port, timeout=10)
    imap.login(READER, PASSWORD)
    status, count = imap.select("INBOX")
    assert status == "OK" and int(count[0] or 0) == len(stored)
    status, fetched = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert status == "OK"
    subjects = [email.message_from_bytes(part[1])["Subject"] for part in fetched if isinstance(part, tuple)]
    assert sorted(int(subject) for subject in subjects) == list(range(newest + 1))
    imap.logout()

    verified = box.cli("backup", "verify")
    assert f"snapshot {snapshot} verified" in verified.stdout


def test_verify_fails_naming_the_snapshot_whose_pack_is_damaged(box: Jitaku, tmp_path: Path) -> None:
    box.start()
    deliver(box, "one", "two", "three")
    snapshot = box.cli("backup", "now").stdout.split(":")[0].removeprefix(SNAPSHOT)
    assert f"snapshot {snapshot} verified" in box.cli("backup", "verify", snapshot).stdout

    packs = sorted((tmp_path / "repo" / "data").rglob("*"), key=lambda path: path.stat().st_size)
    damaged = packs[-1]  # the largest: the database's pages
    with open(damaged, "r+b") as pack:
        pack.seek(damaged.stat().st_size // 2)
        pack.write(b"\xff" * 64)
    failed = box.cli("backup", "verify", check=False)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith(f"jitaku: snapshot {snapshot} failed verification: restic restore could not read /")
    assert failed.stderr.count("\n") == 1 and "Traceback" not in failed.stderr


def test_verify_fails_when_a_snapshot_holds_less_than_its_record_says(box: Jitaku, tmp_path: Path) -> None:
    box.start()
    deliver(box, "one", "two")
    box.stop()
    # a snapshot made by hand as `backup now` makes one, but for its record, which counts a message more
    made = tmp_path / "made"
    made.mkdir()
    shutil.copy2(box.dir / "jitaku.db", made / "jitaku.db")
    counts = {"messages": 3, "mailboxes": {f"{READER}/INBOX": 3}, "posts": 0, "comments": 0, "members": 0, "newest": 2}
    (made / "backup.json").write_text(json.dumps({"counts": counts}))
    tags = [f"--tag={tag}" for tag in ("jitaku", "messages=3", "newest=2", "posts=0", "comments=0", "members=0")]
    environment = {**os.environ, "RESTIC_REPOSITORY": str(tmp_path / "repo")}
    environment["RESTIC_PASSWORD_FILE"] = str(box.dir / "backup.secret")
    sent = subprocess.run(["restic", "backup", "--json", *tags, "."], cwd=made, env=environment, capture_output=True)
    assert sent.returncode == 0, sent.stderr
    snapshot = json.loads(sent.stdout.splitlines()[-1])["snapshot_id"]
    failed = box.cli("backup", "verify", check=False)
    assert failed.returncode == 1
    assert failed.stderr == (
        f"jitaku: snapshot {snapshot} failed verification: it does not hold what was recorded: "
        f"{READER}/INBOX has 2 messages, 3 recorded\n"
    )


def test_a_wrong_password_file_is_one_line_and_leaves_nothing(box: Jitaku, tmp_path: Path) -> None:
    (box.dir / "backup.secret").write_text("not the password\n")
    for command in (["backup", "now"], ["backup", "list"], ["backup", "verify"]):
        refused = box.cli(*command, check=False)
        assert refused.returncode == 1 and refused.stdout == ""
        assert refused.stderr == (
            f"jitaku: restic cannot open the repository {tmp_path / 'repo'} with {box.dir / 'backup.secret'}: "
            "wrong password?\n"
        )
    assert not (box.dir / "backup" / "staging").exists()


def test_a_missing_repository_or_restic_says_what_to_do(jitaku_factory: Any, tmp_path: Path) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["backup"] = {"target": str(tmp_path / "nowhere")}
    server.write_config()
    server.init(READER)
    (server.dir / "backup.secret").write_text("a password\n")
    missing = server.cli("backup", "list", check=False)
    assert (missing.returncode, missing.stderr) == (
        1,
        f"jitaku: no restic repository at {tmp_path / 'nowhere'}: run `jitaku backup init`\n",
    )
    without = subprocess.run(
        [*JITAKU, "backup", "now", "--dir", str(server.dir)],
        capture_output=True,
        text=True,
        env={**os.environ, "PATH": "/nonexistent"},
        timeout=60,
    )
    assert (without.returncode, without.stderr) == (
        1,
        "jitaku: restic is not installed: `apt install restic` (Debian), or put it on PATH\n",
    )
    assert not (server.dir / "backup" / "staging").exists()


def test_a_restore_into_a_directory_that_holds_anything_is_refused(box: Jitaku, tmp_path: Path) -> None:
    snapshot = box.cli("backup", "now").stdout.split(":")[0].removeprefix(SNAPSHOT)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine\n")
    refused = box.cli("backup", "restore", snapshot, "--to", str(occupied), check=False)
    assert refused.returncode == 1 and "not an empty directory" in refused.stderr
    unknown = box.cli("backup", "restore", "0123abcd", "--to", str(tmp_path / "new"), check=False)
    assert (
        unknown.stderr == f"jitaku: 0123abcd is no snapshot in {tmp_path / 'repo'}: `jitaku backup list` shows them\n"
    )
    assert not (tmp_path / "new").exists()
    assert [path.name for path in occupied.iterdir()] == ["notes.txt"]
    assert (occupied / "notes.txt").read_text() == "mine\n"


@pytest.mark.timeout(KILL_TIMEOUT)
def test_a_backup_killed_with_9_lists_as_nothing_and_the_next_one_succeeds(box: Jitaku, tmp_path: Path) -> None:
    (box.dir / "large.bin").write_bytes(os.urandom(LARGE))
    packs = tmp_path / "repo" / "data"
    written = _files(packs)
    with _killed_after([*JITAKU, "backup", "now", "--dir", str(box.dir)]) as running:
        restic = wait_until(lambda: _child(running.pid, "restic"), timeout=WAIT, interval=0.02)
        # stopped once it has sent a pack, part of the file
        _cut_short(restic, box.dir / "backup" / "staging" / "large.bin", lambda: len(_files(packs)) > len(written))
        running.send_signal(signal.SIGKILL)
        running.wait(timeout=WAIT)
        assert running.returncode == -signal.SIGKILL, "the backup ended before it was killed: this test proves nothing"
        wait_until(lambda: _ended(restic), timeout=WAIT)  # restic does not carry on alone
    assert len(_files(packs)) > len(written)  # part of a snapshot was sent
    assert json.loads(box.cli("backup", "list", "--json").stdout) == []

    taken = box.cli("backup", "now")
    snapshot = taken.stdout.split(":")[0].removeprefix(SNAPSHOT)
    assert [listed["id"] for listed in json.loads(box.cli("backup", "list", "--json").stdout)] == [snapshot]
    assert not (box.dir / "backup" / "staging").exists()
    assert f"snapshot {snapshot} verified" in box.cli("backup", "verify").stdout


@pytest.mark.timeout(KILL_TIMEOUT)
def test_a_restore_killed_with_9_leaves_nothing_serve_would_start_from(box: Jitaku, tmp_path: Path) -> None:
    (box.dir / "large.bin").write_bytes(os.urandom(LARGE))
    box.cli("backup", "now")
    to = tmp_path / "new"
    with _killed_after([*JITAKU, "backup", "restore", "latest", "--to", str(to), "--dir", str(box.dir)]) as restoring:
        restic = wait_until(lambda: _child(restoring.pid, "restic"), timeout=WAIT, interval=0.02)
        # stopped once it has written files back from a pack, part of the large one
        _cut_short(restic, tmp_path / "repo" / "data", lambda: _files(tmp_path / f".new.restoring-{restoring.pid}"))
        restoring.send_signal(signal.SIGKILL)
        restoring.wait(timeout=WAIT)
        assert restoring.returncode == -signal.SIGKILL, "the restore ended before it was killed: this proves nothing"
        wait_until(lambda: _ended(restic), timeout=WAIT)
    assert not to.exists()  # nothing `jitaku serve --dir` would take for a data directory

    box.cli("backup", "restore", "latest", "--to", str(to))
    assert (to / "large.bin").read_bytes() == (box.dir / "large.bin").read_bytes()
    assert not list(tmp_path.glob(".new.restoring-*"))  # the killed one's, removed by the next restore


def backed_up_while_mail_arrives(server: Jitaku, first: int, after: int) -> tuple[str, int, list[int]]:
    """`backup now` of SERVER while messages arrive over SMTP, FIRST of them before it and AFTER more once it
    ended: its snapshot's id, how many were acknowledged before it began, and the numbers of all acknowledged."""
    acknowledged: list[int] = []  # the numbers of the messages the MX said 250 to, in order
    stop = threading.Event()
    sender = threading.Thread(target=_send, args=(server.smtp_port, acknowledged, stop), daemon=True)
    sender.start()
    try:
        wait_until(lambda: len(acknowledged) >= first, timeout=60)
        before = len(acknowledged)  # every message acknowledged before the backup began
        taken = server.cli("backup", "now")
        during = len(acknowledged) - before
        wait_until(lambda: len(acknowledged) >= before + during + after, timeout=60)  # and mail goes on after it
    finally:
        stop.set()
        sender.join(timeout=60)
    assert during > 0, "no mail arrived while the backup ran: this test proves nothing"
    return taken.stdout.split(":")[0].removeprefix(SNAPSHOT), before, acknowledged


def _send(port: int, acknowledged: list[int], stop: threading.Event) -> None:
    """Messages numbered 0, 1, 2, ... to alice, one after another on one connection, until STOP; each number
    appended once the MX has said 250 to it."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        number = 0
        while not stop.is_set():
            body = f"Subject: {number}\r\nFrom: carol@remote.test\r\nTo: {READER}\r\n\r\nmessage {number}\r\n"
            client.sendmail("carol@remote.test", [READER], body.encode())
            acknowledged.append(number)
            number += 1


def _subjects(database: Path) -> dict[int, int]:
    """Each message's id in DATABASE and its subject's number."""
    with sqlite3.connect(f"{database.as_uri()}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT id, body FROM messages").fetchall()
    return {int(id): int(email.message_from_bytes(body)["Subject"]) for id, body in rows}


def _relative(directory: Path, under: str) -> list[str]:
    found = [str(path.relative_to(directory)) for path in (directory / under).iterdir()]
    assert found, f"nothing in {directory / under}"
    return found


def _files(directory: Path) -> set[Path]:
    return {path for path in directory.rglob("*") if path.is_file()}


@contextlib.contextmanager
def _killed_after(command: list[str]) -> Iterator[subprocess.Popen[bytes]]:
    """COMMAND started in a session of its own, and killed with all of its session (its restic too) at the end,
    however the test ends: a jitaku left waiting on a stopped restic would wait for restic's deadline of hours. A
    test that proves restic dies with its parent sees that before the end, which would kill it regardless."""
    started = subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        yield started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(started.pid, signal.SIGKILL)
        started.wait(timeout=WAIT)


def _cut_short(pid: int, reading: Path, done: Callable[[], Any], timeout: float = WAIT) -> None:
    """restic (process PID) let run until it has a file under READING open, then in slices of SLICE seconds,
    stopped between them, until DONE() says it got far enough; left stopped there. It is killed part-way through
    a file it takes a fraction of a second over, however fast or loaded the machine, where a watcher that let it
    run on would need a file of seconds. Back early if it ended meanwhile: the caller's check that its parent was
    killed then says the test proved nothing. Left running on any other way out (a deadline, an error, Ctrl-C),
    not stopped, nor its parent with it."""
    wait_until(lambda: _reading(pid, reading) or _ended(pid), timeout=timeout, interval=SLICE)
    deadline = time.monotonic() + timeout
    try:
        os.kill(pid, signal.SIGSTOP)
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError(f"restic did not get as far as {done} within {timeout:.0f} s")
            os.kill(pid, signal.SIGCONT)
            time.sleep(SLICE)
            os.kill(pid, signal.SIGSTOP)
    except ProcessLookupError:
        return
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
        raise


def _reading(pid: int, under: Path) -> bool:
    """Whether process PID has a file under UNDER open."""
    try:
        descriptors = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for descriptor in descriptors:
        try:
            if Path(os.readlink(descriptor)).is_relative_to(under):
                return True
        except OSError:  # closed meanwhile
            continue
    return False


def _ended(pid: int) -> bool:
    """Whether process PID has exited: gone, or a zombie that its new parent has not reaped yet (an orphan's
    reaper, PID 1 or a subreaper, may take a second or more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def _child(pid: int, name: str) -> int | None:
    """The pid of PID's child process named NAME, if it has one now."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    for child in children:
        try:
            if Path(f"/proc/{child}/comm").read_text().strip() == name:
                return int(child)
        except OSError:
            continue
    return None
