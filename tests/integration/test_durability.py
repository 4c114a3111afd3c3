"""kill -9 while clients send: every message that got 250 is there exactly once, none is half there."""

from __future__ import annotations

import hashlib
import imaplib
import random
import re
import smtplib
import subprocess
import threading
import time
from email.parser import BytesHeaderParser

import pytest

from tests.integration.harness import Jitaku
from tests.peers import wait_for_port, wait_until

CLIENTS = 8


def body_for(test_id: str) -> bytes:
    """A deterministic 20 KiB body, so a truncated or mixed-up message is recognisable."""
    seed = hashlib.sha256(test_id.encode()).hexdigest()
    return ("\r\n".join(f"{test_id} line {n} {seed}" for n in range(250)) + "\r\n").encode()


def message_for(test_id: str) -> bytes:
    return (
        f"From: carol@remote.test\r\nTo: alice@example.test\r\nSubject: {test_id}\r\nX-Test-Id: {test_id}\r\n\r\n".encode()
        + body_for(test_id)
    )


def sender(port: int, client: int, acknowledged: list[str], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
                while not stop.is_set():
                    test_id = f"c{client}-m{n}"
                    n += 1
                    smtp.sendmail("carol@remote.test", ["alice@example.test", "bob@example.org"], message_for(test_id))
                    acknowledged.append(test_id)  # only after the 250
        except (smtplib.SMTPException, OSError):
            time.sleep(0.05)  # the server is gone; try again until told to stop


@pytest.mark.both_databases
@pytest.mark.parametrize("workers", [1, 2])
def test_kill_9_loses_no_acknowledged_message(server: Jitaku, workers: int) -> None:
    if workers > 1:
        server.settings["smtp"]["workers"] = workers
        server.write_config()
        server.restart()
        wait_until(lambda: "role=worker" in server.log())
    acknowledged: list[str] = []
    stop = threading.Event()
    threads = [threading.Thread(target=sender, args=(server.smtp_port, c, acknowledged, stop)) for c in range(CLIENTS)]
    for thread in threads:
        thread.start()
    wait_until(lambda: len(acknowledged) >= 20, timeout=30)
    time.sleep(random.uniform(0.2, 1.5))
    server.kill9()
    stop.set()
    for thread in threads:
        thread.join()
    # workers die with the main process: nothing is left accepting mail
    wait_until(
        lambda: subprocess.run(["fuser", f"{server.smtp_port}/tcp"], capture_output=True).returncode != 0, timeout=10
    )
    server.start()
    parser = BytesHeaderParser()
    for mailbox in ("alice@example.test", "bob@example.org"):
        bodies = server.stored_bodies(mailbox)
        assert len(server.mailbox(mailbox)) == len(bodies)
        seen: dict[str, int] = {}
        for raw in bodies:
            test_id = parser.parsebytes(raw)["X-Test-Id"]
            assert test_id, raw[:300]
            seen[test_id] = seen.get(test_id, 0) + 1
            assert raw.endswith(message_for(test_id)), f"{test_id} is not whole in {mailbox}"
        missing = [i for i in acknowledged if i not in seen]
        assert not missing, f"{len(missing)} acknowledged messages lost in {mailbox}: {missing[:5]}"
        assert all(count == 1 for count in seen.values()), {k: v for k, v in seen.items() if v > 1}
        assert len(seen) >= len(acknowledged)


def test_queued_mail_survives_kill_9_and_goes_out_after_restart(server: Jitaku, dns_zone) -> None:
    zone, _ = dns_zone
    zone.add("remote.test. 300 IN MX 10 mx.remote.test.")
    zone.add("mx.remote.test. 300 IN A 127.0.0.1")
    with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as smtp:
        smtp.login("alice@example.test", "secret-password")
        for n in range(5):
            smtp.sendmail(
                "alice@example.test",
                ["dave@remote.test"],
                message_for(f"q{n}").replace(b"carol@remote.test", b"alice@example.test"),
            )
    wait_until(lambda: len(server.queue()) == 5 and all(e["attempts"] >= 1 for e in server.queue()))
    server.kill9()
    server.start()
    assert len(server.queue()) == 5


@pytest.mark.both_databases
def test_imap_flags_and_expunges_survive_kill_9(server: Jitaku) -> None:
    """They commit without an fsync (store/writer.py): a power cut may take the last back, a crash of jitaku
    must not."""
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        for n in range(3):
            smtp.sendmail("carol@remote.test", ["alice@example.test"], message_for(f"f{n}"))
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    imap.login("alice@example.test", "secret-password")
    imap.select("INBOX")
    assert imap.store("1", "+FLAGS", "(\\Flagged $Later)")[0] == "OK"
    assert imap.store("3", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert imap.expunge()[0] == "OK"
    server.kill9()
    server.start()
    wait_for_port(server.imap_port)
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    imap.login("alice@example.test", "secret-password")
    imap.select("INBOX")
    _status, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (X-TEST-ID)])")
    fetched = b" ".join(part[0] + part[1] if isinstance(part, tuple) else part for part in data)
    assert fetched.count(b"X-Test-Id:") == 2 and b"f2" not in fetched
    assert re.search(rb"1 \(FLAGS \((?=[^)]*\\Flagged)(?=[^)]*\$Later)", fetched), fetched
    imap.logout()


@pytest.mark.both_databases
def test_two_workers_delivering_to_the_same_mailboxes_give_each_message_its_250_and_a_uid_of_its_own(
    server: Jitaku,
) -> None:
    """Two SMTP workers commit at once on PostgreSQL, each copy taking the row lock of its mailbox's next UID
    until its batch commits: a batch of one worker delivering to alice then bob and one of the other to bob then
    alice may deadlock, and the writer runs the job the server undid again (tests/test_writer.py makes one
    happen), so that every message gets its 250 (never a 451 for a conflict of ours) and each copy a UID no
    other has."""
    server.settings["smtp"]["workers"] = 2
    server.write_config()
    server.restart()
    wait_until(lambda: "role=worker" in server.log())
    mailboxes = ("alice@example.test", "bob@example.org")
    sent: dict[str, list[str]] = {mailbox: [] for mailbox in mailboxes}
    refused: list[str] = []

    def send(client: int) -> None:
        with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as smtp:
            for n in range(16):
                test_id, mailbox = f"o{client}-m{n}", mailboxes[(client + n) % 2]
                try:
                    smtp.sendmail("carol@remote.test", [mailbox], message_for(test_id))
                    sent[mailbox].append(test_id)
                except smtplib.SMTPException as error:
                    refused.append(f"{test_id}: {error}")

    threads = [threading.Thread(target=send, args=(client,)) for client in range(2 * CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert refused == []
    parser = BytesHeaderParser()
    for mailbox in mailboxes:
        uids = [message["uid"] for message in server.mailbox(mailbox)]
        assert len(uids) == len(set(uids)) == len(sent[mailbox])
        stored = sorted(parser.parsebytes(raw)["X-Test-Id"] for raw in server.stored_bodies(mailbox))
        assert stored == sorted(sent[mailbox])
