"""POP3 against real clients: Python's poplib for protocol detail, fetchmail and getmail6 as users run them.
Deletions happen only at QUIT; passwords only over TLS off loopback; the same users and failed-login
limits as submission."""

from __future__ import annotations

import base64
import contextlib
import imaplib
import os
import poplib
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitaku.health.services import reading_context
from tests.integration.harness import READER, Jitaku, deliver
from tests.integration.pressure import Pressure, still_serves
from tests.peers import wait_for_port

PASSWORD = "secret-password"
ALICE = READER


def logged_in(server: Jitaku) -> poplib.POP3:
    client = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    client.user(ALICE)
    client.pass_(PASSWORD)
    return client


def unique_ids(client: poplib.POP3) -> list[bytes]:
    return [line.split()[1] for line in client.uidl()[1]]


@pytest.mark.both_databases
def test_a_session_lists_reads_and_deletes_only_at_quit(mailhost: Jitaku) -> None:
    deliver(mailhost, "first", ".a line with a leading dot\nand one more", "third")
    client = logged_in(mailhost)
    assert client.stat()[0] == 3
    _, listing, _ = client.list()
    sizes = [int(line.split()[1]) for line in listing]
    stored = mailhost.stored_bodies(ALICE)
    assert sizes == [len(body) for body in stored]  # the exact octets RETR sends
    uids = unique_ids(client)
    _, lines, octets = client.retr(2)
    assert b"\r\n".join(lines) + b"\r\n" == stored[1] and octets == len(stored[1])  # dot-stuffing undone
    header, _, _ = client.top(1, 0)
    assert header == f"+OK {sizes[0]} octets".encode()
    client.dele(1)
    with pytest.raises(poplib.error_proto, match="already deleted"):
        client.retr(1)
    assert client.stat() == (2, sizes[1] + sizes[2])
    client.rset()
    client.dele(1)
    client.dele(3)
    client.sock.close()  # the connection drops before QUIT: nothing is removed
    assert len(mailhost.mailbox(ALICE)) == 3

    client = logged_in(mailhost)
    assert unique_ids(client) == uids  # the same ids in a new session
    client.dele(1)
    assert client.quit().startswith(b"+OK bye (1 message removed)")
    assert [m["uid"] for m in mailhost.mailbox(ALICE)] == [2, 3]
    mailhost.restart()
    wait_for_port(mailhost.pop3_port)
    assert unique_ids(logged_in(mailhost)) == uids[1:]  # and across a restart, though the numbers moved


def test_capabilities_errors_and_two_sessions_at_once(mailhost: Jitaku) -> None:
    deliver(mailhost, "one", "two")
    client = poplib.POP3("127.0.0.1", mailhost.pop3_port, timeout=10)
    assert client.getwelcome() == b"+OK jitaku POP3 server ready"
    capabilities = client.capa()
    assert {"TOP", "UIDL", "USER", "STLS", "RESP-CODES", "PIPELINING"} <= set(capabilities)
    assert capabilities["SASL"] == ["PLAIN"]
    with pytest.raises(poplib.error_proto, match="STAT is not valid now"):
        client._shortcmd("STAT")
    with pytest.raises(poplib.error_proto, match="XYZZY is not valid here"):
        client._shortcmd("XYZZY plugh")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\] authentication failed"):
        client.user(ALICE)
        client.pass_("wrong")
    client.user(ALICE)
    client.pass_(PASSWORD)
    for bad in ("RETR 0", "RETR 99", "RETR x", "DELE -1", "TOP 1", "LIST 1 2"):
        with pytest.raises(poplib.error_proto, match="-ERR"):
            client._shortcmd(bad)
    second = logged_in(mailhost)  # a phone and a laptop: no lock that a dead connection could leave behind
    client.dele(1)
    assert client.quit().startswith(b"+OK bye (1 message removed)")
    with pytest.raises(poplib.error_proto, match=r"\[SYS/PERM\] message 1 is gone"):
        second.retr(1)
    assert second.retr(2)[0].startswith(b"+OK")
    second.dele(1)
    assert second.quit().startswith(b"+OK bye (0 messages removed)")
    assert [m["uid"] for m in mailhost.mailbox(ALICE)] == [2]
    assert PASSWORD not in mailhost.log()


def test_a_user_has_at_most_ten_sessions_from_one_address(mailhost: Jitaku) -> None:
    sessions = [logged_in(mailhost) for _ in range(10)]
    eleventh = poplib.POP3("127.0.0.1", mailhost.pop3_port, timeout=10)
    eleventh.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\] too many sessions"):
        eleventh.pass_(PASSWORD)
    sessions.pop().quit()
    deadline = time.monotonic() + 5  # the server's end of that session closes just after its +OK
    while True:  # one closed: the same connection may try again
        eleventh.user(ALICE)
        try:
            eleventh.pass_(PASSWORD)
            break
        except poplib.error_proto:
            assert time.monotonic() < deadline, "the closed session still counts"
            time.sleep(0.05)
    for session in [*sessions, eleventh]:
        session.quit()


def test_sasl_plain_stls_and_implicit_tls(jitaku_factory) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["pop3s"] = {"listen": ["127.0.0.1:0"]}
    server.write_config()
    server.init(ALICE)
    server.start()
    pop3s = server.port("pop3s")
    client = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    client.stls(reading_context())
    assert "STLS" not in client.capa()
    assert client._shortcmd("AUTH PLAIN").startswith(b"+ ")  # asks for the response on its own line
    plain = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    assert client._shortcmd(plain).startswith(b"+OK alice@example.test has 0 messages")
    client.quit()
    implicit = poplib.POP3_SSL("127.0.0.1", pop3s, context=reading_context(), timeout=10)
    assert implicit._shortcmd(f"AUTH PLAIN {plain}").startswith(b"+OK")
    implicit.quit()
    other = base64.b64encode(f"bob@example.org\0{ALICE}\0{PASSWORD}".encode()).decode()
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\] logging in as another user"):
        poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)._shortcmd(f"AUTH PLAIN {other}")


def test_passwords_only_over_tls_from_another_address_and_failures_are_limited(
    network_namespace, jitaku_factory
) -> None:
    """A client on the LAN address of a namespace of our own, not loopback: USER is refused in the clear
    and taken after STLS; five failed logins lock that address out, as on submission."""
    network_namespace.ip("addr", "add", "192.0.2.10/24", "dev", "home0")
    server: Jitaku = jitaku_factory()
    server.settings["pop3"] = {"listen": ["192.0.2.10:0"]}
    server.write_config()
    server.init(ALICE)
    server.start()
    clear = poplib.POP3("192.0.2.10", server.pop3_port, timeout=10)
    assert "USER" not in clear.capa() and "SASL" not in clear.capa()
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\] passwords only over TLS"):
        clear.user(ALICE)
    clear.stls(reading_context())
    clear.user(ALICE)
    assert clear.pass_(PASSWORD).startswith(b"+OK")
    clear.quit()
    for _ in range(5):
        client = poplib.POP3("192.0.2.10", server.pop3_port, timeout=10)
        client.stls(reading_context())
        client.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
            client.pass_("wrong")
    client = poplib.POP3("192.0.2.10", server.pop3_port, timeout=10)
    client.stls(reading_context())
    with pytest.raises(poplib.error_proto, match=r"\[SYS/TEMP\] too many failed logins"):
        client.user(ALICE)
    assert server.log().count("event=auth_failed client=192.0.2.10") == 5


def test_a_line_too_long_or_garbage_gets_an_error_and_the_server_lives(mailhost: Jitaku) -> None:
    with socket.create_connection(("127.0.0.1", mailhost.pop3_port), timeout=10) as raw:
        reader = raw.makefile("rb")
        reader.readline()
        raw.sendall(b"\xff\xfe\x00 nonsense\r\n")
        assert reader.readline().startswith(b"-ERR")
        raw.sendall(b"USER " + b"a" * 5000 + b"\r\n")
        assert reader.readline() == b"-ERR line too long\r\n"
    assert logged_in(mailhost).stat() == (0, 0)


def test_a_client_that_stops_reading_a_retr_is_cut_off(jitaku_factory: Any) -> None:
    """A RETR of a large message to a client that read nothing waited on it for ever, holding the message and
    copies of it (POP3's writes had no timeout, where IMAP's are cut off after [imap] write_timeout)."""
    server: Jitaku = jitaku_factory()
    server.settings["pop3"]["write_timeout"] = 2.0
    server.write_config()
    server.init(ALICE)
    server.start()
    wait_for_port(server.imap_port)
    wait_for_port(server.pop3_port)
    body = b"Subject: large\r\n\r\n" + (b"z" * 998 + b"\r\n") * 16 * 1024  # 16 MB
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port)
    imap.login(ALICE, PASSWORD)
    assert imap.append("INBOX", None, None, body)[0] == "OK"
    imap.logout()
    readers = []
    with Pressure(server, probe_banner=False) as pressure:
        for _ in range(3):
            reader = socket.socket()
            reader.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            reader.settimeout(10)
            reader.connect(("127.0.0.1", server.pop3_port))
            reader.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\nRETR 1\r\n".encode())  # and read nothing
            readers.append(reader)
        time.sleep(1.0)
    print(pressure.report("stalled_pop3_readers"))
    time.sleep(3.0)  # past the write timeout: each reader is cut off before its RETR completes
    for reader in readers:
        received = b""
        with contextlib.suppress(OSError):
            while chunk := reader.recv(1 << 20):
                received += chunk
        assert b"+OK 16" in received and not received.endswith(b"\r\n.\r\n") and len(received) < len(body)
        reader.close()
    assert server.log().count("event=pop3_write_timeout") == 3
    assert logged_in(server).retr(1)[2] == len(body)  # a client that reads gets it all
    still_serves(server)


def run_fetchmail(server: Jitaku, home: Path, keep: bool) -> subprocess.CompletedProcess[str]:
    home.mkdir(exist_ok=True)
    rc = home / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 port {server.pop3_port} protocol POP3 auth password\n"
        f'  user "{ALICE}" password "{PASSWORD}" is root here\n'
        f'  {"keep" if keep else "nokeep"} fetchall sslproto "TLS1.2+" no sslcertck\n'
        f"  mda \"/bin/sh -c 'cat > {home}/mail.$$'\"\n"
    )
    rc.chmod(0o600)
    return subprocess.run(
        ["fetchmail", "-f", str(rc), "--pidfile", str(home / "pid"), "-v", "--nodetach"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"HOME": str(home), "PATH": "/usr/bin:/bin"},
    )


def test_fetchmail_fetches_over_stls_and_deletes_what_it_fetched(mailhost: Jitaku, tmp_path: Path) -> None:
    deliver(mailhost, "one for fetchmail", "two for fetchmail")
    kept = run_fetchmail(mailhost, tmp_path / "keep", keep=True)
    assert kept.returncode == 0, kept.stdout + kept.stderr
    said = kept.stdout + kept.stderr
    assert "POP3> STLS" in said and "2 messages for alice@example.test" in said, said
    assert len(mailhost.mailbox(ALICE)) == 2
    fetched = run_fetchmail(mailhost, tmp_path / "fetch", keep=False)
    assert fetched.returncode == 0, fetched.stdout + fetched.stderr
    got = sorted((tmp_path / "fetch").glob("mail.*"))
    assert len(got) == 2 and b"one for fetchmail" in b"".join(path.read_bytes() for path in got)
    assert mailhost.mailbox(ALICE) == []
    again = run_fetchmail(mailhost, tmp_path / "again", keep=False)
    assert again.returncode == 1  # fetchmail's "no mail"


def test_getmail6_retrieves_into_a_maildir(mailhost: Jitaku) -> None:
    deliver(mailhost, "for getmail, こんにちは")
    # getmail will not deliver as root: as root, it runs as nobody in a directory of nobody's
    home = Path(tempfile.mkdtemp(prefix="jitaku-getmail-"))
    maildir = home / "Maildir"
    for part in ("cur", "new", "tmp"):
        (maildir / part).mkdir(parents=True)
    rc = home / "getmailrc"
    rc.write_text(
        "[retriever]\ntype = SimplePOP3Retriever\nserver = 127.0.0.1\n"
        f"port = {mailhost.pop3_port}\nusername = {ALICE}\npassword = {PASSWORD}\n"
        f"[destination]\ntype = Maildir\npath = {maildir}/\n"
        "[options]\ndelete = true\nread_all = true\nverbose = 1\n"
    )
    command = ["getmail", "--getmaildir", str(home), "--rcfile", str(rc)]
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        for path in [home, *home.rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid)
        command = ["setpriv", f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups", *command]
    try:
        ran = subprocess.run(command, capture_output=True, text=True, timeout=60)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        (delivered,) = (maildir / "new").iterdir()
        assert "for getmail" in delivered.read_bytes().decode("utf-8", "replace")
    finally:
        shutil.rmtree(home)
    assert mailhost.mailbox(ALICE) == []  # delete = true: removed at its QUIT


VERBS = ["USER", "PASS", "AUTH", "AUTH PLAIN", "CAPA", "STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET", "NOOP"]
fuzz_lines = st.builds(
    lambda verb, argument: verb.encode() + argument,
    st.sampled_from([*VERBS, ""]),
    st.binary(max_size=80).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"")),
)


def multiline(command: bytes) -> bool:
    """Whether a +OK to COMMAND is followed by lines up to a ".", parsed as the server parses it."""
    verb, _, argument = command.decode("utf-8", "replace").partition(" ")
    verb, argument = verb.upper(), argument.strip()
    return verb in ("CAPA", "RETR", "TOP") or (verb in ("LIST", "UIDL", "AUTH") and not argument)


def test_random_command_lines_in_both_states_get_a_reply_and_the_server_lives(mailhost: Jitaku) -> None:
    deliver(mailhost, "something to list")

    def converse(commands: list[bytes], log_in: bool) -> None:
        with socket.create_connection(("127.0.0.1", mailhost.pop3_port), timeout=10) as raw:
            stream = raw.makefile("rb")
            assert stream.readline().startswith(b"+OK")
            if log_in:
                raw.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\n".encode())
                assert stream.readline().startswith(b"+OK") and stream.readline().startswith(b"+OK")
            for command in commands:
                raw.sendall(command + b"\r\n")
                reply = stream.readline()
                assert reply.startswith((b"+OK", b"-ERR", b"+ ")), (command, reply)
                if reply.startswith(b"+ "):  # AUTH PLAIN waits for its response: cancel it
                    raw.sendall(b"*\r\n")
                    assert stream.readline().startswith(b"-ERR")
                elif reply.startswith(b"+OK") and multiline(command):
                    while stream.readline() not in (b".\r\n", b""):
                        pass

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(fuzz_lines, max_size=10), st.booleans())
    def dialog(commands: list[bytes], log_in: bool) -> None:
        converse(commands, log_in)

    dialog()
    assert logged_in(mailhost).stat()[0] == 1  # nothing was deleted: no fuzzed session said QUIT
    assert "pop3_crashed" not in mailhost.log() and "Traceback" not in mailhost.log()
