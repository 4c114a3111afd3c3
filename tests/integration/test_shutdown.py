"""SIGTERM with sessions open (issue 17, point 6): each client hears its protocol's goodbye before its connection
closes, whatever the session was doing: IMAP "* BYE" (RFC 3501 §7.1.5), SMTP 421 (RFC 5321 §3.8) on the MX and
submission, in every worker process, POP3 "-ERR [SYS/TEMP]" (RFC 3206). A message in DATA is not acknowledged,
the daemon stops promptly even when a client does not read, and the log holds events, not tracebacks."""

from __future__ import annotations

import imaplib
import poplib
import signal
import socket
import time
from typing import Any

from tests.integration.harness import READER, Jitaku, RawSession

PASSWORD = "secret-password"
BYE = b"* BYE server shutting down\r\n"
SMTP_GOODBYE = b"421 4.3.2 mail.example.test service shutting down\r\n"
POP3_GOODBYE = b"-ERR [SYS/TEMP] server shutting down\r\n"
PROMPT = 15.0  # seconds to stop: far less than the 300 s a client may leave a response unread while we serve


def terminate(server: Jitaku) -> float:
    """SIGTERM to the daemon; the seconds it took to exit."""
    assert server.process is not None
    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=60)
    return time.monotonic() - started


def assert_events_only(server: Jitaku) -> None:
    log = server.log()
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert "event=stopped" in log


def imap(server: Jitaku, logged_in: bool = True) -> imaplib.IMAP4:
    client = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    if logged_in:
        client.login(READER, PASSWORD)
        client.select("INBOX")
    return client


def test_imap_clients_hear_bye_idling_in_a_command_or_before_login(mailhost: Jitaku) -> None:
    idling = imap(mailhost)
    idling.send(b"i1 IDLE\r\n")
    assert idling.readline() == b"+ idling\r\n"
    appending = imap(mailhost)  # in the middle of an APPEND: the server waits for the rest of its literal
    appending.send(b"a1 APPEND INBOX {100}\r\n")
    assert appending.readline().startswith(b"+ ")
    appending.send(b"Subject: half a message\r\n\r\n")
    greeted = imap(mailhost, logged_in=False)
    assert terminate(mailhost) < PROMPT
    for client in (idling, appending, greeted):
        assert client.readline() == BYE
        assert client.readline() == b""  # and then the server closed the connection
    assert_events_only(mailhost)
    assert mailhost.mailbox(READER) == []  # the half-sent message was not stored


def test_smtp_sessions_hear_421_in_every_worker_and_a_message_in_data_is_not_acknowledged(jitaku_factory: Any) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["smtp"]["workers"] = 2  # sessions on the MX are accepted by either process
    server.write_config()
    server.init(READER)
    server.start()
    greeted = [RawSession(server.smtp_port) for _ in range(6)]
    for session in greeted[:3]:
        assert session.command(b"EHLO client.test").startswith(b"250 ")
    sending = RawSession(server.smtp_port)
    assert sending.start_data().startswith(b"354")
    sending.sock.sendall(b"Subject: half a message\r\n\r\nthe rest never comes\r\n")
    submitting = RawSession(server.submission_port)
    assert submitting.command(b"EHLO client.test").startswith(b"250 ")
    assert terminate(server) < PROMPT
    for session in [*greeted, sending, submitting]:
        with session:
            assert session.stream.readline() == SMTP_GOODBYE
            assert session.stream.readline() == b""
    assert_events_only(server)
    assert server.mailbox(READER) == []


def test_pop3_clients_hear_a_temporary_error_logged_in_or_not(mailhost: Jitaku) -> None:
    logged_in = poplib.POP3("127.0.0.1", mailhost.pop3_port, timeout=10)
    logged_in.user(READER)
    assert logged_in.pass_(PASSWORD).startswith(b"+OK")
    greeted = poplib.POP3("127.0.0.1", mailhost.pop3_port, timeout=10)
    assert terminate(mailhost) < PROMPT
    for client in (logged_in, greeted):
        assert client.file.readline() == POP3_GOODBYE
        assert client.file.readline() == b""
    assert_events_only(mailhost)


def test_a_client_that_does_not_read_cannot_hold_the_stop(mailhost: Jitaku) -> None:
    """Its goodbye waits for it a second at most: the stop is not held for [imap] write_timeout (300 s)."""
    writer = imap(mailhost)
    writer.append("INBOX", None, None, b"Subject: large\r\n\r\n" + (b"z" * 998 + b"\r\n") * 8 * 1024)  # 8 MB
    stuck = socket.create_connection(("127.0.0.1", mailhost.imap_port), timeout=10)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(f'l LOGIN {READER} "{PASSWORD}"\r\ns SELECT INBOX\r\nf FETCH 1 BODY.PEEK[]\r\n'.encode())
    time.sleep(1.0)  # the response fills the socket's buffers, and the server waits for the client to read
    idling = imap(mailhost)
    idling.send(b"i1 IDLE\r\n")
    assert idling.readline() == b"+ idling\r\n"
    assert terminate(mailhost) < PROMPT
    assert idling.readline() == BYE  # a client that reads still hears it
    stuck.close()
    assert_events_only(mailhost)
