"""The MX port, driven by swaks and raw sockets: local delivery, refusals, limits, trace headers."""

from __future__ import annotations

import base64
import select
import smtplib
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.harness import Jitaku, RawSession
from tests.peers import rejection, swaks

ISO2022_SUBJECT = "=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?="  # こんにちは


def mx(server: Jitaku, *args: str) -> str:
    result = swaks("--server", f"127.0.0.1:{server.smtp_port}", *args)
    return result.stdout + result.stderr


@pytest.mark.both_databases
def test_mail_for_a_user_lands_in_the_mailbox_with_trace_headers(server: Jitaku, dns_zone) -> None:
    zone, _ = dns_zone
    zone.add('remote.test. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"')
    out = mx(
        server,
        "--to",
        "ALICE@Example.Test",
        "--from",
        "carol@remote.test",
        "--helo",
        "client.remote.test",
        "--header",
        f"Subject: {ISO2022_SUBJECT}",
    )
    assert "250 2.0.0 Ok: queued as" in out
    (entry,) = server.mailbox("alice@example.test")
    assert entry["subject"] == "こんにちは"
    assert entry["from"] == "carol@remote.test"
    stored = server.message("alice@example.test", entry["uid"])
    assert entry["size"] == len(stored)
    head = stored.split(b"\r\n\r\n", 1)[0]
    assert head.startswith(b"Return-Path: <carol@remote.test>\r\n")
    assert b"Received: from client.remote.test ([127.0.0.1])" in head
    assert b"Authentication-Results: mail.example.test;" in head
    assert b"spf=pass" in head and b"dkim=none" in head
    assert ISO2022_SUBJECT.encode() in head


def test_a_signature_made_by_mail_dkim_passes_and_aligns_for_dmarc(server: Jitaku, dns_zone, tmp_path) -> None:
    zone, _ = dns_zone
    key = tmp_path / "remote.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    value = "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode()
    zone.add(
        "s1._domainkey.remote.test. 300 IN TXT "
        + " ".join(f'"{value[i : i + 200]}"' for i in range(0, len(value), 200))
    )
    zone.add('_dmarc.remote.test. 300 IN TXT "v=DMARC1; p=reject"')
    message = (
        b"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: signed\r\n"
        b"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\nHello from a signed message.\r\n"
    )
    signed = subprocess.run(
        ["perl", str(Path(__file__).with_name("dkim_sign.pl")), "remote.test", "s1", str(key)],
        input=message,
        check=True,
        capture_output=True,
    ).stdout
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as smtp:
        smtp.sendmail("carol@remote.test", ["alice@example.test"], signed)
    head = server.message("alice@example.test", 1).split(b"\r\n\r\n")[0]
    assert b"dkim=pass" in head and b"header.d=remote.test" in head, head
    assert b"dmarc=pass" in head, head


def test_a_message_for_a_user_is_one_line_in_the_log(server: Jitaku) -> None:
    out = mx(server, "--to", "alice@example.test", "--from", "carol@remote.test")
    queue_id = out.split("queued as ", 1)[1].split()[0]
    lines = [line for line in server.log().splitlines() if queue_id in line]
    assert len(lines) == 1, lines
    assert "event=accepted" in lines[0] and "delivered=alice@example.test" in lines[0], lines


@pytest.mark.both_databases
def test_unknown_local_user_is_refused_at_rcpt(server: Jitaku) -> None:
    out = mx(server, "--to", "nobody@example.test", "--from", "carol@remote.test")
    assert rejection(out).startswith("550 5.1.1")


@pytest.mark.parametrize(
    "recipient",
    [
        "victim@remote.test",
        "victim@REMOTE.test",
        "victim%remote.test@example.test",
        "remote.test!victim@example.test",
        "@example.test:victim@remote.test",
        '"victim@remote.test"@example.test',
        '"victim%remote.test"@example.test',
        "victim@remote.test@example.test",
        "alice@[127.0.0.1]",
        "victim@[127.0.0.1]",
        "alice@example.test.",
        "victim@remote.test.",
        "victim@example.test.remote.test",
        "alice@example.test@remote.test",
    ],
)
def test_relay_tricks_are_refused_with_5_7_1(server: Jitaku, recipient: str) -> None:
    out = mx(server, "--to", recipient, "--from", "carol@remote.test")
    assert rejection(out).split(" ")[:2] in (["554", "5.7.1"], ["550", "5.7.1"]), out
    assert server.queue() == []


def test_role_accounts_go_to_the_first_user_unless_aliased(server: Jitaku) -> None:
    for role in ("postmaster@example.test", "abuse@example.org", "PostMaster@example.org"):
        assert "250 2.0.0" in mx(server, "--to", role, "--from", "carol@remote.test")
    assert len(server.mailbox("alice@example.test")) == 3
    server.cli("alias", "add", "abuse@example.org", "bob@example.org")
    time.sleep(1.2)  # a running server sees changed routes within a second
    assert "250 2.0.0" in mx(server, "--to", "abuse@example.org", "--from", "carol@remote.test")
    assert len(server.mailbox("bob@example.org")) == 1


def test_alias_to_a_local_user(server: Jitaku) -> None:
    server.cli("alias", "add", "info@example.test", "alice@example.test")
    assert "250 2.0.0" in mx(server, "--to", "info@example.test", "--from", "carol@remote.test")
    assert len(server.mailbox("alice@example.test")) == 1
    assert "info@example.test" in server.cli("alias", "list").stdout


def test_size_is_advertised_and_enforced(server: Jitaku) -> None:
    server.settings["smtp"]["max_message_size"] = 10_000
    server.write_config()
    server.restart()
    ehlo = mx(server, "--quit-after", "EHLO")
    assert "250-SIZE 10000" in ehlo or "250 SIZE 10000" in ehlo
    big = mx(server, "--to", "alice@example.test", "--from", "carol@remote.test", "--body", ("y" * 70 + "\n") * 300)
    assert rejection(big).startswith("552 5.3.4"), big
    assert server.mailbox("alice@example.test") == []


def test_too_many_recipients_get_452_4_5_3(server: Jitaku) -> None:
    recipients = ",".join(["alice@example.test"] * 101)
    out = mx(server, "--to", recipients, "--from", "carol@remote.test", "--header", "To: alice@example.test")
    assert "452 4.5.3" in out
    # the 100 accepted recipients still got the message (one copy: same mailbox)
    assert "250 2.0.0" in out


def test_bare_lf_in_data_is_refused(server: Jitaku) -> None:
    with RawSession(server.smtp_port) as session:
        assert session.start_data().startswith(b"354")
        # the smuggling shape: a bare-LF "end of data" followed by a second message
        reply = session.command(
            b"Subject: one\r\n\r\nhello\n.\nMAIL FROM:<x@remote.test>\nRCPT TO:<alice@example.test>\r\n."
        )
        assert reply.startswith(b"554 5.6.0"), reply
    assert server.mailbox("alice@example.test") == []


def test_garbage_never_kills_the_server(server: Jitaku) -> None:
    junk = [
        b"\x00\xff\xfe",
        b"MAIL FROM:<<<>>>",
        b"RCPT TO:",
        b"A" * 5000,
        b"DATA",
        b"AUTH PLAIN",
        b"EHLO " + "日本".encode(),
        b"RSET",
    ]
    with RawSession(server.smtp_port) as session:
        replies = [session.command(line) for line in junk]
    assert all(reply[:1] in b"2345" for reply in replies), replies
    assert "250 2.0.0" in mx(server, "--to", "alice@example.test", "--from", "carol@remote.test")


def test_idle_clients_are_disconnected(server: Jitaku) -> None:
    server.settings["smtp"]["timeout"] = 1.5
    server.write_config()
    server.restart()
    with socket.create_connection(("127.0.0.1", server.smtp_port), timeout=10) as sock:
        assert sock.recv(1024).startswith(b"220")
        started = time.monotonic()
        rest = b""
        while chunk := sock.recv(1024):
            rest += chunk
        assert time.monotonic() - started < 8
    assert "250 2.0.0" in mx(server, "--to", "alice@example.test", "--from", "carol@remote.test")


def test_slow_clients_that_dribble_data_are_disconnected(server: Jitaku) -> None:
    """A client sending a byte of DATA every quarter second is never idle for [smtp] timeout, and is cut off as an
    idle one is: the timer runs from the last command, not the last byte.

    Timed against an idle client watched in the same loop, not against the clock: on a loaded machine both are cut
    late (issue 17: "within 6 s" failed once under the suite's load), never far apart."""
    timeout = 2.0
    server.settings["smtp"]["timeout"] = timeout
    server.write_config()
    server.restart()
    with RawSession(server.smtp_port) as idle, RawSession(server.smtp_port) as dribbling:
        data_at: dict[socket.socket, float] = {}
        for session in (idle, dribbling):
            assert session.start_data().startswith(b"354")
            data_at[session.sock] = time.monotonic()
        cut: dict[socket.socket, float] = {}
        while len(cut) < 2 and time.monotonic() - data_at[idle.sock] < 30 * timeout:  # 30 timeouts: never cut
            if dribbling.sock not in cut:
                try:
                    dribbling.sock.sendall(b"x")
                except OSError:
                    cut[dribbling.sock] = time.monotonic()
            watched = [sock for sock in data_at if sock not in cut]
            for sock in select.select(watched, [], [], 0.25)[0]:
                if _closed_by_peer(sock):
                    cut[sock] = time.monotonic()
        assert dribbling.sock in cut, "the server kept a client that dribbles for 30 times [smtp] timeout"
        assert idle.sock in cut
        lasted = {sock: cut[sock] - data_at[sock] for sock in cut}
        assert lasted[dribbling.sock] < lasted[idle.sock] + timeout, lasted
    assert server.mailbox("alice@example.test") == []


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the peer closed SOCK (readable): an end of stream, or a reset."""
    try:
        return sock.recv(1024) == b""
    except OSError:
        return True


def test_forged_authentication_results_are_removed(server: Jitaku) -> None:
    out = mx(
        server,
        "--to",
        "alice@example.test",
        "--from",
        "carol@remote.test",
        "--header",
        "Authentication-Results: mail.example.test; dkim=pass header.d=bank.test",
    )
    assert "250 2.0.0" in out
    stored = server.message("alice@example.test", 1)
    assert b"header.d=bank.test" not in stored
