"""`[imap] workers = 2`: IMAP sessions are served by two processes (one core's worth of Python each, issue 20),
and a session sees what a session of the other process does (new mail, flags, expunges, IDLE) as it sees its
own process's; POP3 stays with the main process."""

from __future__ import annotations

import imaplib
import poplib
from typing import Any

import psutil

from tests.integration.harness import READER, Jitaku
from tests.peers import swaks, wait_for_port, wait_until

PASSWORD = "secret-password"


def serving_pid(server: Jitaku, client: imaplib.IMAP4) -> int:
    """The daemon process holding CLIENT's connection."""
    assert server.process is not None
    local = client.sock.getsockname()
    for process in [psutil.Process(server.process.pid), *psutil.Process(server.process.pid).children()]:
        if any(c.raddr and tuple(c.raddr) == local for c in process.net_connections("tcp")):
            return process.pid
    raise AssertionError(f"no daemon process holds {local}")


def test_two_imap_processes_see_each_others_changes(jitaku_factory: Any) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["imap"] = {"workers": 2}
    server.write_config()
    server.init(READER)
    server.start()
    wait_for_port(server.imap_port)
    wait_until(lambda: server.log().count("event=started") == 2)  # the main process and its IMAP worker
    assert server.process is not None
    assert len(psutil.Process(server.process.pid).children()) == 1

    # the kernel hands each connection to whichever process accepts first: connect until both have one
    clients: list[imaplib.IMAP4] = []
    by_process: dict[int, imaplib.IMAP4] = {}
    while len(by_process) < 2 and len(clients) < 40:
        clients.append(imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10))
        by_process.setdefault(serving_pid(server, clients[-1]), clients[-1])
    assert len(by_process) == 2, f"{len(clients)} connections, all to one process"
    one, other = by_process.values()
    for client in (one, other):
        client.login(READER, PASSWORD)
        client.select("INBOX")

    sent = swaks("--server", f"127.0.0.1:{server.smtp_port}", "--to", READER, "--header", "Subject: first")
    assert "250 2.0.0 Ok: queued as" in sent.stdout
    other.send(b"i1 IDLE\r\n")
    assert other.readline() == b"+ idling\r\n"
    assert one.append("INBOX", "", imaplib.Time2Internaldate(0), b"Subject: appended\r\n\r\nhi\r\n")[0] == "OK"
    seen = b""
    while b"EXISTS" not in seen:  # IDLE looks twice a second
        seen = other.readline()
    assert seen.startswith(b"* 2 EXISTS")
    other.send(b"DONE\r\n")
    while not (line := other.readline()).startswith(b"i1 "):
        pass
    assert line.startswith(b"i1 OK")

    assert one.store("1", "+FLAGS", "(\\Flagged)")[0] == "OK"
    assert one.store("2", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert one.expunge()[0] == "OK"
    other.untagged_responses.clear()
    assert other.noop()[0] == "OK"
    told = other.untagged_responses
    assert told.get("EXPUNGE") == [b"2"] and b"\\Flagged" in told["FETCH"][0], told
    told.clear()
    _status, flags = other.fetch("1:*", "(FLAGS)")
    assert flags == [b"1 (FLAGS (\\Flagged))"]
    for client in clients:
        client.logout()

    pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    pop.user(READER)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 1
    pop.quit()
