"""`jitaku failover` and `jitaku switchover` on a pair of managed clusters and daemons on loopback (each box's
`[ha] peer` names the other's web): with writers all along (mail over SMTP, flags over IMAP, and through a kill -9
blog comments over HTTP and list members added by the CLI), every message that got a 250 is on the new primary
exactly once, every answered flag change is there, and so is every comment answered "saved" and every member
whose `jitaku list add` succeeded, once each; failover takes mail again
within the issue's 30 s; a switchover leaves the old primary streaming from the new one; a failover fences a
primary that answers; an old primary restarted after a failover refuses mail (the split-brain guard); and a
standby with [ha] auto_after promotes itself once its primary is dead, and only once the witness cannot reach the
pair either."""

from __future__ import annotations

import contextlib
import imaplib
import json
import os
import re
import signal
import smtplib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Self

import httpx
import pytest

from tests.integration.harness import READER, Jitaku, stop_all
from tests.integration.test_buddy import TOKEN
from tests.integration.test_filter_lists_comments import blog_post
from tests.integration.test_ha_daemon import health_page
from tests.integration.test_lists import LIST
from tests.integration.test_managed_postgres import managed, postmaster
from tests.integration.test_standby import managed_port, no_cluster_left, status
from tests.peers import wait_until

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs PostgreSQL as another user: needs root (CI is)")
__all__ = ["no_cluster_left"]  # its autouse fixture stops the clusters this module's tests leave


def ha_pair(jitaku_factory: Any, shared_dir: Path, standby_ha: dict[str, Any] | None = None) -> tuple[Jitaku, Jitaku]:
    """Both daemons running, the standby streaming synchronously from the primary, each naming the other as
    its peer; STANDBY_HA: more of the standby's [ha] keys."""
    primary, port = managed(jitaku_factory, shared_dir)
    primary.cli("init", "--database", "postgresql")
    primary.add_user(READER)
    primary.cli("standby", "allow", "127.0.0.1")
    standby = jitaku_factory(name="standby", where=shared_dir)
    managed_port(standby)
    standby.cli("init", "--database", "postgresql")
    copy = shared_dir / "secret-copy"
    copy.write_bytes((primary.dir / "ha" / "replication.secret").read_bytes())
    copy.chmod(0o600)
    webs = primary.fixed_port("web"), standby.fixed_port("web")
    primary.settings["ha"] = {"peer": f"http://127.0.0.1:{webs[1]}"}
    standby.settings["ha"] = {"peer": f"http://127.0.0.1:{webs[0]}", **(standby_ha or {})}
    for server in (primary, standby):
        server.settings["database"]["managed"] = True  # as `init --database postgresql` wrote it
        server.write_config()
    primary.start()
    standby.cli("standby", "setup", "--primary", f"127.0.0.1:{port}", "--secret-file", str(copy))
    standby.start()
    # once synchronous, a 250 means the standby has the message
    wait_until(lambda: status(primary)["sync_state"] == "sync", timeout=30)
    return primary, standby


class Background:
    """A thread of work on whichever of TARGETS takes it, from the `with` until its end."""

    def __init__(self, *targets: Jitaku) -> None:
        self.targets = list(targets)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        raise NotImplementedError


class Writer(Background):
    """Sends mail to whichever of TARGETS takes it, recording the subject of each message that got a 250 (its
    Message-ID alike)."""

    def __init__(self, *targets: Jitaku) -> None:
        super().__init__(*targets)
        self.acknowledged: list[str] = []
        self.refused = 0

    def _run(self) -> None:
        number, which = 0, 0
        while not self._stop.is_set():
            number += 1
            subject = f"write-{number}-{time.monotonic_ns()}"
            try:
                send(self.targets[which], subject)
            except (OSError, smtplib.SMTPException):
                self.refused += 1
                which = (which + 1) % len(self.targets)
                time.sleep(0.05)
                continue
            self.acknowledged.append(subject)

    def wait_for(self, count: int) -> None:
        wait_until(lambda: len(self.acknowledged) >= count, timeout=30)


class Toggler(Background):
    """Sets and clears \\Flagged over IMAP on READER's first COUNT messages in turn, on whichever of TARGETS takes
    it, recording each message's flag as the last STORE that got its OK left it. A message whose last STORE got no
    answer (the server went) may be either way: it is left out until a later STORE is answered."""

    def __init__(self, count: int, *targets: Jitaku) -> None:
        super().__init__(*targets)
        self.flagged: dict[int, bool] = {}
        self.unsure: set[int] = set()
        self.acknowledged = 0
        self._count = count

    def _run(self) -> None:
        which, number = 0, 0
        while not self._stop.is_set():
            try:
                imap = imaplib.IMAP4("127.0.0.1", self.targets[which].imap_port, timeout=10)
                imap.login(READER, "secret-password")
                imap.select("INBOX")
            except (OSError, imaplib.IMAP4.error):
                which = (which + 1) % len(self.targets)
                time.sleep(0.05)
                continue
            while not self._stop.is_set():
                uid = number % self._count + 1
                setting = not self.flagged.get(uid, False)
                self.unsure.add(uid)
                try:
                    answer, _ = imap.uid("STORE", str(uid), "+FLAGS" if setting else "-FLAGS", "(\\Flagged)")
                except (OSError, imaplib.IMAP4.error):
                    answer = "NO"
                if answer != "OK":
                    which = (which + 1) % len(self.targets)
                    break
                self.flagged[uid] = setting
                self.unsure.discard(uid)
                self.acknowledged += 1
                number += 1
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imap.logout()

    def wait_for(self, count: int) -> None:
        wait_until(lambda: self.acknowledged >= count, timeout=30)

    def check(self, server: Jitaku) -> None:
        """SERVER has each message flagged as the last answered STORE left it."""
        found = flags(server)
        wrong = {
            uid: found.get(uid)
            for uid, flagged in self.flagged.items()
            if uid not in self.unsure and ("\\Flagged" in found.get(uid, "").split()) != flagged
        }
        assert self.acknowledged >= 10 and not wrong, (wrong, self.flagged)


class Commenter(Background):
    """Posts comments on the blog post POST_ID of whichever of TARGETS takes them, as browsers do (the post's
    page, then the form 2 s later: three at once, to make up for the wait), each from its own loopback address
    (one address may send 5 in 10 minutes), recording the author of each comment answered "saved"."""

    def __init__(self, post_id: int, *targets: Jitaku) -> None:
        super().__init__(*targets)
        self.acknowledged: list[str] = []
        self._post_id = post_id

    def _run(self) -> None:
        number, which = 0, 0
        while not self._stop.is_set():
            server = self.targets[which]
            browsers = []
            for _ in range(3):
                number += 1
                transport = httpx.HTTPTransport(local_address=f"127.0.{number // 250}.{number % 250 + 2}")
                browsers.append(
                    (
                        f"reader-{number}",
                        httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", transport=transport),
                    )
                )
            try:
                for _, browser in browsers:
                    browser.get("/2024/05/jitaku/", timeout=10).raise_for_status()
                time.sleep(2.1)  # the form's token must be 2 s old
                for name, browser in browsers:
                    form = {"name": name, "email": f"{name}@remote.test", "url": "", "website": "", "body": name}
                    if saved(browser.post(f"/comments/{self._post_id}", data=form, timeout=10)):
                        self.acknowledged.append(name)
            except httpx.HTTPError:
                which = (which + 1) % len(self.targets)
                time.sleep(0.05)
            finally:
                for _, browser in browsers:
                    browser.close()

    def wait_for(self, count: int) -> None:
        wait_until(lambda: len(self.acknowledged) >= count, timeout=30)

    def check(self, server: Jitaku) -> None:
        """SERVER has each comment answered "saved", once."""
        found = [c["author"] for c in json.loads(server.cli("blog", "comments", "--json").stdout)]
        wrong = {name: found.count(name) for name in self.acknowledged if found.count(name) != 1}
        assert len(self.acknowledged) >= 3 and not wrong, wrong


def saved(answer: httpx.Response) -> bool:
    """The comment form's answer once the comment is committed: the post (published) or "saved" (held)."""
    held = answer.status_code == 200 and ("Saved" in answer.text or "保存しました" in answer.text)
    return answer.status_code == 303 or held


class Joiner(Background):
    """Adds members to LIST as `jitaku list add` does (one transaction on the primary's PostgreSQL, whose
    synchronous commit waits for the standby), on whichever of TARGETS takes them, recording each member whose
    commit returned. Not the command itself: a command holds its box's managed cluster, and so would start the
    dead primary's again after the kill -9."""

    def __init__(self, *targets: Jitaku) -> None:
        super().__init__(*targets)
        self.acknowledged: list[str] = []

    def _run(self) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        from jitaku import config
        from jitaku.store import Database, lists
        from jitaku.store.errors import StoreError

        databases = [Database(config.load(target.dir).database_url) for target in self.targets]
        number, which = 0, 0
        try:
            while not self._stop.is_set():
                number += 1
                member = f"member-{number}@members.test"
                try:
                    with databases[which].transaction() as connection:
                        lists.add_members(connection, lists.get_list(connection, LIST).id, [member])
                except (SQLAlchemyError, StoreError):
                    which = (which + 1) % len(self.targets)
                    time.sleep(0.05)
                    continue
                self.acknowledged.append(member)
        finally:
            for database in databases:
                database.close()

    def wait_for(self, count: int) -> None:
        wait_until(lambda: len(self.acknowledged) >= count, timeout=30)

    def check(self, server: Jitaku) -> None:
        """SERVER has each member added, once."""
        found = [m["address"] for m in json.loads(server.cli("list", "members", LIST, "--json").stdout)]
        wrong = {member: found.count(member) for member in self.acknowledged if found.count(member) != 1}
        assert len(self.acknowledged) >= 3 and not wrong, wrong


def flags(server: Jitaku) -> dict[int, str]:
    """Each message's flags in READER's inbox on SERVER, as IMAP FETCH says them."""
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    try:
        imap.login(READER, "secret-password")
        imap.select("INBOX", readonly=True)
        _, lines = imap.uid("FETCH", "1:*", "(FLAGS)")
    finally:
        imap.logout()
    found = {}
    for line in lines:
        match = re.search(rb"UID (\d+) FLAGS \(([^)]*)\)|FLAGS \(([^)]*)\) UID (\d+)", line or b"")
        if match:
            uid = int(match.group(1) or match.group(4))
            found[uid] = (match.group(2) or match.group(3) or b"").decode()
    return found


def send(server: Jitaku, subject: str) -> None:
    message = (
        f"From: carol@remote.test\r\nTo: {READER}\r\nSubject: {subject}\r\nMessage-ID: <{subject}@remote.test>\r\n"
        f"\r\n{subject}\r\n"
    )
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.sendmail("carol@remote.test", [READER], message)


def subjects(server: Jitaku) -> list[str]:
    return [str(row["subject"]) for row in server.mailbox(READER)]


def assert_kept(server: Jitaku, acknowledged: list[str]) -> None:
    """Every acknowledged message on SERVER exactly once."""
    found = subjects(server)
    missing = [subject for subject in acknowledged if subject not in found]
    doubled = sorted({subject for subject in found if found.count(subject) > 1})
    assert not missing and not doubled, (missing, doubled)


def streaming(found: dict[str, Any]) -> bool:
    return bool(found["role"] == "standby" and found["sync_state"] == "streaming")


def greeting(server: Jitaku) -> bytes:
    with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=10) as smtp:
        return smtp.makefile("rb").readline()


@pytest.fixture
def stopped() -> Iterator[list[Jitaku]]:
    """The daemons a test started, stopped at its end whatever it did."""
    servers: list[Jitaku] = []
    yield servers
    stop_all(servers)


def test_failover_after_the_primary_dies_loses_nothing_and_the_old_primary_stays_fenced(
    jitaku_factory: Any, shared_dir: Path, stopped: list[Jitaku], tmp_path: Path
) -> None:
    alone = jitaku_factory(name="alone")
    refused = alone.cli("failover", check=False)
    assert refused.returncode == 1 and "not a PostgreSQL cluster of jitaku's own" in refused.stderr
    primary, standby = ha_pair(jitaku_factory, shared_dir)
    stopped += [primary, standby]
    on_primary = primary.cli("failover", check=False)
    assert on_primary.returncode == 1 and on_primary.stderr == "jitaku: this box is the primary already\n"

    post_id = blog_post(primary, tmp_path)
    primary.cli("list", "create", LIST, "--name", "SOTA Japan", "--owner", READER)

    with Writer(primary) as writer, Commenter(post_id, primary) as commenter, Joiner(primary) as joiner:
        writer.wait_for(20)
        with Toggler(20, primary) as toggler:
            toggler.wait_for(10)
            commenter.wait_for(3)
            joiner.wait_for(3)
            primary.kill9()
        cluster = postmaster(primary)
        assert cluster is not None
        os.kill(cluster, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{cluster}").exists(), timeout=10)
    dead = primary.cli("failover", check=False)
    assert dead.returncode == 1 and dead.stderr.endswith(": start jitaku serve first\n"), dead.stderr
    assert postmaster(primary) == cluster  # the refusal left the old primary's cluster down

    started = time.monotonic()
    done = standby.cli("failover", check=False)
    assert done.returncode == 0, done.stderr + standby.log()[-3000:]
    send(standby, "after-failover")
    seconds = time.monotonic() - started
    assert seconds <= 30, seconds
    said = done.stdout.splitlines()[-1]
    assert said.startswith("this box is the primary and accepts mail: ") and said.endswith(" s to the first 220")
    assert float(said.split(": ")[1].split()[0]) <= seconds
    assert "not fenced" in done.stdout  # the old primary did not answer
    assert status(standby)["role"] == "primary"
    assert_kept(standby, [*writer.acknowledged, "after-failover"])
    toggler.check(standby)
    commenter.check(standby)
    joiner.check(standby)

    again = standby.cli("failover", check=False)
    assert again.returncode == 1 and again.stderr == "jitaku: this box is the primary already\n"

    # a command on the old primary, its daemon still dead, asks the peer before it writes: fenced, read-only
    written = primary.cli("alias", "add", "sales@example.test", READER, check=False)
    assert written.returncode == 1, written.stderr
    assert "was promoted while this box was away: this box is fenced" in written.stderr
    assert "database is read-only" in written.stderr
    assert json.loads((primary.dir / "ha" / "fenced").read_text())["purpose"] == "split-brain"
    # the old primary restarted: it sees the peer's newer timeline and refuses mail
    primary.start()
    assert greeting(primary).startswith(b"421 4.3.2 "), primary.log()[-3000:]
    assert greeting(standby).startswith(b"220")
    assert "Traceback" not in primary.log() + standby.log()


def test_switchover_and_back_twice_with_writers_loses_nothing_then_failover_fences_the_live_primary(
    jitaku_factory: Any, shared_dir: Path, stopped: list[Jitaku]
) -> None:
    one, two = ha_pair(jitaku_factory, shared_dir)
    stopped += [one, two]
    with Writer(one, two) as writer:
        writer.wait_for(10)
        with Toggler(10, one, two) as toggler:
            for old, new in ((one, two), (two, one), (one, two), (two, one)):
                done = new.cli("switchover", check=False)
                assert done.returncode == 0, done.stderr + new.log()[-2000:] + old.log()[-2000:]
                assert "the old primary streams from this box" in done.stdout, done.stdout
                assert greeting(new).startswith(b"220")
                wait_until(lambda old=old: streaming(status(old)), timeout=30)
                writer.wait_for(len(writer.acknowledged) + 5)
                toggler.wait_for(toggler.acknowledged + 5)
    assert_kept(one, writer.acknowledged)
    toggler.check(one)
    wait_until(lambda: status(two)["lag_bytes"] == 0, timeout=30)
    assert_kept(two, writer.acknowledged)

    # a failover with the primary up fences it first: it refuses mail from then on, saying why
    done = two.cli("failover", check=False)
    assert done.returncode == 0, done.stderr
    assert f"old primary: fenced at http://127.0.0.1:{one.web_port}" in done.stdout
    assert greeting(one).startswith(b"421 4.3.2 ") and greeting(two).startswith(b"220")
    assert_kept(two, writer.acknowledged)
    assert "Traceback" not in one.log() + two.log()


class Forwarded:
    """A port that greets "220" to every connection while open: the pair's public SMTP as the home router forwards
    it, seen answering from outside (a box of the pair serving still, to the witness)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._open = threading.Event()
        self._open.set()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while self._open.is_set():
            with contextlib.suppress(TimeoutError):
                connection, _ = self.sock.accept()
                with connection:
                    connection.sendall(b"220 forwarded ESMTP\r\n")

    def close(self) -> None:
        self._open.clear()
        self._thread.join(timeout=5)
        self.sock.close()


def witness_box(jitaku_factory: Any) -> Jitaku:
    """A jitaku at a friend's place (on SQLite), whose buddy probe the pair's witness keys name, running."""
    witness = jitaku_factory(name="witness")
    witness.settings["health"] = {"buddy": {"token": TOKEN}}
    witness.fixed_port("web")
    witness.init()
    witness.start()
    return witness


def test_the_standby_promotes_itself_only_once_the_witness_cannot_reach_the_pair_either(
    jitaku_factory: Any, shared_dir: Path, stopped: list[Jitaku]
) -> None:
    witness = witness_box(jitaku_factory)
    stopped.append(witness)
    forwarded = Forwarded()
    automatic = {
        "auto_after": 4,
        # the witness sees the forwarded port answer for up to ~25 s after the primary's last answer: a primary
        # that waits 60 s for a silent standby acknowledged nothing without it meanwhile
        "sync_timeout": 60,
        "witness": f"http://127.0.0.1:{witness.web_port}",
        "witness_token": TOKEN,
        "witness_targets": [f"127.0.0.1:{forwarded.port}"],
    }
    try:
        primary, standby = ha_pair(jitaku_factory, shared_dir, automatic)
        stopped += [primary, standby]
        send(primary, "before-the-kill")
        wait_until(lambda: "this box synchronous True" in standby.log(), timeout=30)  # as its primary said
        primary.kill9()
        cluster = postmaster(primary)
        assert cluster is not None
        os.kill(cluster, signal.SIGKILL)
        killed = time.monotonic()

        # the witness still reaches the pair's port: a cut between the boxes, not a dead primary
        wait_until(lambda: "a cut between the boxes" in standby.log(), timeout=30)
        time.sleep(max(0.0, killed + 4 + 8 - time.monotonic()))
        assert status(standby)["role"] == "standby"
        assert greeting(standby).startswith(b"421 4.3.2 ")
    finally:
        forwarded.close()
    # nothing answers the witness now: the standby, synchronous when contact was lost, promotes itself
    wait_until(lambda: greets(standby), timeout=45, interval=0.5)
    assert status(standby)["role"] == "primary"
    assert "before-the-kill" in subjects(standby)
    said = standby.log()
    assert re.search(r"event=ha_failover .*automatic=True", said), said[-3000:]
    # the new primary's alert says it promoted itself, and why (recorded: no [alerts] urls here)
    wait_until(lambda: "promoted itself automatically" in health_page(standby), timeout=30)
    assert "Traceback" not in said


def greets(server: Jitaku) -> bool:
    """Whether SERVER's MX greets with 220 now (a standby's says 421; one changing its part may cut us off)."""
    try:
        return greeting(server).startswith(b"220")
    except OSError:
        return False


WAITING = b"is waiting for the other box of the pair (cold start)"


def start(server: Jitaku) -> Callable[[], str]:
    """Start SERVER's daemon; what its log said since then."""
    mark = len(server.log())
    server.start()
    return lambda: server.log()[mark:]


def rebooted(server: Jitaku) -> None:
    """As if SERVER's box booted since it last served as the primary (jitaku.ha.boot): its daemon stopped."""
    (server.dir / "ha" / "boot_id").write_text("00000000-another-boot\n")


def test_after_a_cold_start_the_primary_waits_for_its_peer_or_the_wait_and_the_witness_before_taking_mail(
    jitaku_factory: Any, shared_dir: Path, stopped: list[Jitaku]
) -> None:
    primary, standby = ha_pair(jitaku_factory, shared_dir)
    stopped += [primary, standby]
    primary.stop()  # the power cut: both boxes down
    standby.stop()
    primary.settings["ha"].update({"cold_start_wait": 5, "sync_timeout": 2})
    primary.write_config()
    rebooted(primary)

    # alone: it waits cold_start_wait seconds, says why to every client, then takes mail (no witness to ask)
    started = time.monotonic()
    since = start(primary)
    said = greeting(primary)
    assert said.startswith(b"421 4.3.2 ") and WAITING in said, said + primary.log()[-3000:].encode()
    wait_until(lambda: greeting(primary).startswith(b"220"), timeout=60, interval=0.5)
    assert time.monotonic() - started >= 5
    send(primary, "after-the-cold-start")
    assert "after-the-cold-start" in subjects(primary)
    assert "why=alone" in since() and "no witness configured" in since(), since()[-3000:]
    assert status(primary)["fenced"] is False

    # both back, the primary first: it serves once it sees its peer, long before its wait is over
    primary.stop()
    primary.settings["ha"]["cold_start_wait"] = 600
    primary.write_config()
    rebooted(primary)
    since = start(primary)
    assert WAITING in greeting(primary)
    standby.start()
    wait_until(lambda: greeting(primary).startswith(b"220"), timeout=60, interval=0.5)
    assert "event=ha_wait_over" in since() and "why=alone" not in since(), since()[-3000:]
    send(primary, "after-both-came-back")

    # alone again, the witness reaching the pair's public service (another box may serve it): it waits past
    # cold_start_wait, until the witness no longer sees it
    witness = witness_box(jitaku_factory)
    stopped.append(witness)
    other = Forwarded()
    try:
        primary.stop()
        standby.stop()
        primary.settings["ha"].update(
            {
                "cold_start_wait": 3,
                "witness": f"http://127.0.0.1:{witness.web_port}",
                "witness_token": TOKEN,
                "witness_targets": [f"127.0.0.1:{other.port}"],
            }
        )
        primary.write_config()
        rebooted(primary)
        since = start(primary)
        wait_until(lambda: "event=ha_witness_answers" in since(), timeout=60)
        assert WAITING in greeting(primary)
        other.close()
        wait_until(lambda: greeting(primary).startswith(b"220"), timeout=60, interval=0.5)
        assert f"reaches none of 127.0.0.1:{other.port}" in since()
    finally:
        other.close()  # closed already, unless a step failed
    assert "Traceback" not in primary.log() + standby.log()
