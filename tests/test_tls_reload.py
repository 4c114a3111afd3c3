"""A certificate changed on disk is served to new handshakes by the same SSLContext, without a restart."""

from __future__ import annotations

import asyncio
import datetime
import errno
import logging
import os
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from jitaku import tls_reload
from jitaku.tls import ensure_self_signed, server_context
from jitaku.tls_reload import Reloader


def _pair(where: Path, hostname: str) -> Path:
    ensure_self_signed(where, hostname)
    return where


def _rsa_pair(where: Path, hostname: str) -> Path:
    """A pair of the other key type than ensure_self_signed's (ECDSA)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=90))
        .sign(key, hashes.SHA256())
    )
    where.mkdir(parents=True)
    (where / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (where / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return where


def _replace(tls_dir: Path, new: Path) -> None:
    """As certbot or our own atomic writes do: each file renamed into place."""
    os.rename(new / "key.pem", tls_dir / "key.pem")
    os.rename(new / "cert.pem", tls_dir / "cert.pem")


def _served_name(context: ssl.SSLContext) -> str:
    """The common name of the certificate CONTEXT shows a new client, over a handshake in memory."""
    client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_context.check_hostname = False
    client_context.verify_mode = ssl.CERT_NONE
    pipes = [(ssl.MemoryBIO(), ssl.MemoryBIO()) for _ in range(2)]
    client = client_context.wrap_bio(*pipes[0], server_side=False)
    server = context.wrap_bio(*pipes[1], server_side=True)
    for _ in range(10):
        done = 0
        for end in (client, server):
            try:
                end.do_handshake()
                done += 1
            except ssl.SSLWantReadError:
                pass
        pipes[1][0].write(pipes[0][1].read())  # client's output to the server's input
        pipes[0][0].write(pipes[1][1].read())
        if done == 2:
            break
    der = client.getpeercert(binary_form=True)
    assert der is not None
    [name] = x509.load_der_x509_certificate(der).subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(name.value)


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    return _pair(tmp_path / "tls", "old.example.test")


def test_a_replaced_pair_is_served_to_new_handshakes_by_the_same_context(
    tls_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = server_context(tls_dir)
    reloader = Reloader(tls_dir, [context])
    assert _served_name(context) == "old.example.test"
    _replace(tls_dir, _pair(tmp_path / "new", "new.example.test"))
    with caplog.at_level(logging.INFO, logger="jitaku"):
        assert reloader.check()
    assert _served_name(context) == "new.example.test"
    [line] = [r.getMessage() for r in caplog.records if "tls_reloaded" in r.getMessage()]
    assert 'subject="CN=new.example.test"' in line and "not_after=" in line


@pytest.mark.parametrize("first", ["rsa", "ecdsa"])
def test_a_pair_of_another_key_type_replaces_the_old_one(first: str, tmp_path: Path) -> None:
    """OpenSSL keeps one certificate per key type in a context: the old type's must not go on being served."""
    makers = {"rsa": _rsa_pair, "ecdsa": _pair}
    then = "ecdsa" if first == "rsa" else "rsa"
    tls_dir = makers[first](tmp_path / "tls", "old.example.test")
    context = server_context(tls_dir)
    reloader = Reloader(tls_dir, [context])
    _replace(tls_dir, makers[then](tmp_path / "new", "new.example.test"))
    assert reloader.check()
    assert _served_name(context) == "new.example.test"


def test_a_context_added_after_a_reload_serves_the_new_pair(tls_dir: Path, tmp_path: Path) -> None:
    """The web's, made from the files as they were when it started."""
    late = server_context(tls_dir)
    reloader = Reloader(tls_dir, [server_context(tls_dir)])
    _replace(tls_dir, _pair(tmp_path / "new", "new.example.test"))
    assert reloader.check()
    reloader.add(late)
    assert _served_name(late) == "new.example.test"


def test_a_pair_rewritten_in_place_is_reloaded(tls_dir: Path, tmp_path: Path) -> None:
    """The same inode, the same size and the same timestamp (a rewrite within one tick of a coarse clock)."""
    context = server_context(tls_dir)
    reloader = Reloader(tls_dir, [context])
    new = _pair(tmp_path / "new", "new.example.test")  # as long a name as the old one's
    for name in ("key.pem", "cert.pem"):
        before = (tls_dir / name).stat()
        with open(tls_dir / name, "r+b") as file:
            file.truncate()
            file.write((new / name).read_bytes())
        os.utime(tls_dir / name, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert reloader.check()
    assert _served_name(context) == "new.example.test"


def test_an_unchanged_pair_is_not_reloaded(tls_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    reloader = Reloader(tls_dir, [server_context(tls_dir)])
    with caplog.at_level(logging.INFO, logger="jitaku"):
        assert not reloader.check()
        assert not reloader.check()
    assert not [r for r in caplog.records if "tls_reload" in r.getMessage()]


def test_a_pair_that_cannot_load_for_a_passing_cause_is_loaded_once_it_passes(
    tls_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No descriptor left for a moment: the old pair stays served, the daemon goes on, the next looks try again."""
    context = server_context(tls_dir)
    reloader = Reloader(tls_dir, [context])
    _replace(tls_dir, _pair(tmp_path / "new", "new.example.test"))

    def exhausted(_name: str) -> int:
        raise OSError(errno.EMFILE, "Too many open files")

    with monkeypatch.context() as patched, caplog.at_level(logging.INFO, logger="jitaku"):
        patched.setattr(tls_reload.os, "memfd_create", exhausted)
        assert not reloader.check()
        assert not reloader.check()
    [line] = [r.getMessage() for r in caplog.records if "tls_reload" in r.getMessage()]  # once for the same cause
    assert line.startswith("event=tls_reload_failed") and "Too many open files" in line
    assert _served_name(context) == "old.example.test"
    assert reloader.check()
    assert _served_name(context) == "new.example.test"


def test_a_look_that_fails_does_not_end_the_watch(
    tls_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """run() shares the daemon's task group: an error escaping it would stop every service."""
    reloader = Reloader(tls_dir, [server_context(tls_dir)])
    looks: list[int] = []

    def failing() -> bool:
        looks.append(1)
        raise RuntimeError("unexpected")

    monkeypatch.setattr(tls_reload, "RELOAD_EVERY", 0.01)
    monkeypatch.setattr(reloader, "check", failing)

    async def watch() -> None:
        task = asyncio.create_task(reloader.run())
        while len(looks) < 3 and not task.done():
            await asyncio.sleep(0.01)
        assert not task.done()
        task.cancel()

    with caplog.at_level(logging.INFO, logger="jitaku"):
        asyncio.run(asyncio.wait_for(watch(), timeout=30))
    assert "event=tls_reload_failed" in caplog.text and "unexpected" in caplog.text


def test_a_pair_that_appears_after_a_start_without_one_asks_for_a_restart(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No context was made at the start (STARTTLS off): none serves the new pair, so none is said reloaded."""
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    reloader = Reloader(tls_dir, [])
    with caplog.at_level(logging.INFO, logger="jitaku"):
        assert not reloader.check()
        _replace(tls_dir, _pair(tmp_path / "new", "new.example.test"))
        assert not reloader.check()
        assert not reloader.check()
    [line] = [r.getMessage() for r in caplog.records if "tls_re" in r.getMessage()]
    assert line.startswith("event=tls_restart_needed")


@pytest.mark.parametrize("broken", ["mismatched key", "garbage certificate", "half-written key"])
def test_a_pair_that_does_not_load_leaves_the_old_one_served_and_is_logged(
    broken: str, tls_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = server_context(tls_dir)
    reloader = Reloader(tls_dir, [context])
    new = _pair(tmp_path / "new", "new.example.test")
    if broken == "mismatched key":
        (tls_dir / "cert.pem").write_bytes((new / "cert.pem").read_bytes())  # its key not (yet) there
        file, reason = "key.pem", "does not match cert.pem"
    elif broken == "garbage certificate":
        (tls_dir / "cert.pem").write_bytes(b"not a certificate\n")
        file, reason = "cert.pem", "MalformedFraming"
    else:
        key = (new / "key.pem").read_bytes()
        (tls_dir / "key.pem").write_bytes(key[: len(key) // 2])
        file, reason = "key.pem", "MalformedFraming"
    with caplog.at_level(logging.INFO, logger="jitaku"):
        assert not reloader.check()
        assert not reloader.check()  # tried again at every look, logged once: one line
    [line] = [r.getMessage() for r in caplog.records if "tls_reload" in r.getMessage()]
    assert line.startswith("event=tls_reload_failed") and f"{file} " in line and reason in line
    assert "Traceback" not in caplog.text
    assert _served_name(context) == "old.example.test"
    _replace(tls_dir, new)  # the pair whole, at last
    assert reloader.check()
    assert _served_name(context) == "new.example.test"
