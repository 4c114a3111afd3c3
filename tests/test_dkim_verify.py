"""Verifying DKIM signatures with OpenSSL's RSA (mail/dkim.py's seam in dkimpy): a signature another
implementation made still verifies, a tampered message still fails, Ed25519 still works."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

import dkim
import dkim.crypto
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

import jitaku.mail.dkim  # noqa: F401  (installs the seam, as the daemon does)

SIGNER = Path(__file__).parent / "integration" / "dkim_sign.pl"
MESSAGE = (
    b"From: Carol <carol@remote.test>\r\nTo: alice@example.test\r\nSubject: signed\r\n"
    b"Date: Wed, 25 Nov 2026 10:00:00 +0000\r\n\r\nHello from a signed message.\r\n"
)


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A 2048-bit key file for Mail::DKIM and the TXT record that publishes it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "s1.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)


def dns(record: bytes) -> Any:
    def lookup(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.remote.test."
        return record

    return lookup


@pytest.fixture
def no_pure_python_rsa(monkeypatch: pytest.MonkeyPatch) -> None:
    """dkimpy's own RSA would now be a failure: the check must go to OpenSSL."""

    def refuse(*args: object) -> bytes:
        raise AssertionError("dkimpy's pure-Python RSA was used")

    monkeypatch.setattr(dkim.crypto, "rsa_encrypt", refuse)


def perl_signed(key: Path) -> bytes:
    return subprocess.run(
        ["perl", str(SIGNER), "remote.test", "s1", str(key)], input=MESSAGE, check=True, capture_output=True
    ).stdout


@pytest.mark.usefixtures("no_pure_python_rsa")
def test_a_mail_dkim_signature_verifies(rsa_key: tuple[Path, bytes]) -> None:
    key, record = rsa_key
    assert dkim.verify(perl_signed(key), dnsfunc=dns(record))


@pytest.mark.usefixtures("no_pure_python_rsa")
def test_a_tampered_header_fails(rsa_key: tuple[Path, bytes]) -> None:
    key, record = rsa_key
    tampered = perl_signed(key).replace(b"Subject: signed", b"Subject: signeD")
    assert not dkim.verify(tampered, dnsfunc=dns(record))


@pytest.mark.usefixtures("no_pure_python_rsa")
def test_a_signature_by_another_key_fails(rsa_key: tuple[Path, bytes]) -> None:
    key, _ = rsa_key
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = other.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert not dkim.verify(perl_signed(key), dnsfunc=dns(b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)))


def test_ed25519_still_verifies() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signature = dkim.sign(MESSAGE, b"s1", b"remote.test", base64.b64encode(seed), signature_algorithm=b"ed25519-sha256")
    record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(public)
    assert dkim.verify(signature + MESSAGE, dnsfunc=dns(record))
    assert not dkim.verify(signature + MESSAGE.replace(b"Hello", b"Jello"), dnsfunc=dns(record))
