"""A certificate replaced on disk (as certbot renews) is served to new connections by every listener of a running
daemon, its workers' too, while a session opened before keeps working."""

from __future__ import annotations

import imaplib
import os
import smtplib
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from jitaku.health.services import reading_context
from jitaku.tls import ensure_self_signed
from tests.integration.harness import READER, Jitaku
from tests.peers import wait_until

WEB = ("127.0.11.11", 443)  # a loopback address of this test's own: port 443 is the web's HTTPS


def _name(der: bytes | None) -> str:
    assert der is not None
    [name] = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(name.value)


def _smtp(server: Jitaku) -> str:
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=10) as smtp:
        smtp.starttls(context=reading_context())
        return _name(smtp.sock.getpeercert(binary_form=True))  # type: ignore[union-attr]


def _imaps(server: Jitaku) -> str:
    imap = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=reading_context(), timeout=10)
    try:
        return _name(imap.sock.getpeercert(binary_form=True))  # type: ignore[attr-defined]
    finally:
        imap.logout()


def _https() -> str:
    with (
        socket.create_connection(WEB, timeout=10) as plain,
        reading_context().wrap_socket(plain, server_hostname="mail.example.test") as tls,
    ):
        return _name(tls.getpeercert(binary_form=True))


def _web_on_443() -> bool:
    probe = socket.socket()
    try:
        probe.bind(WEB)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def test_a_renewed_certificate_reaches_new_connections_and_an_open_session_keeps_working(
    jitaku_factory, tmp_path: Path
) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["smtp"]["workers"] = 2
    server.settings["imap"]["workers"] = 2
    server.settings["imaps"] = {"listen": ["127.0.0.1:0"]}
    web = _web_on_443()
    if web:
        server.settings["web"]["listen"].append(f"{WEB[0]}:{WEB[1]}")
    server.write_config()
    server.init(READER)
    server.start()
    listeners = [lambda: _smtp(server), lambda: _imaps(server)] + ([_https] if web else [])
    old = _name(ssl.PEM_cert_to_DER_cert((server.dir / "tls" / "cert.pem").read_text()))
    assert {served() for served in listeners} == {old}
    opened = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    opened.starttls(reading_context())

    ensure_self_signed(tmp_path / "renewed", "renewed.example.test")
    for name in ("key.pem", "cert.pem"):  # renamed into place, as certbot and our own writes do
        os.rename(tmp_path / "renewed" / name, server.dir / "tls" / name)

    # every process reloads its own contexts: a whole round of new connections, whichever worker takes each, gets
    # the new one (a single answer could come from the one worker that reloaded first)
    wait_until(lambda: {served() for served in listeners * 6} == {"renewed.example.test"}, timeout=60, interval=1)
    assert opened.noop()[0] == "OK"  # the session opened before, on the old certificate
    assert _name(opened.sock.getpeercert(binary_form=True)) == old  # type: ignore[attr-defined]
    opened.logout()
    assert "event=tls_reloaded" in server.log() and "Traceback" not in server.log()
