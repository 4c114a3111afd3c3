"""A real certificate, as far as jitaku can tell: one a test CA signed (not self-signed, as `jitaku init`'s is),
written into a data directory's tls/ the way certbot or ACME replace the pair (each file renamed into place)."""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def signed_by_test_ca(tls_dir: Path, names: Sequence[str], days: float = 90) -> x509.Certificate:
    """TLS_DIR's cert.pem and key.pem replaced by a pair for NAMES that a new test CA signed, valid for DAYS from
    now (negative: expired that long ago); the CA's certificate is returned."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("jitaku test CA"))
        .issuer_name(_name("jitaku test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=400))
        .not_valid_after(now + datetime.timedelta(days=400))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    ends = now + datetime.timedelta(days=days)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(names[0]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(min(now, ends) - datetime.timedelta(days=1))
        .not_valid_after(ends)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name) for name in names]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    for file, data in (
        ("key.pem", key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())),
        ("cert.pem", certificate.public_bytes(pem) + ca.public_bytes(pem)),
    ):
        (tls_dir / f".{file}.new").write_bytes(data)
        (tls_dir / f".{file}.new").chmod(0o600 if file == "key.pem" else 0o644)  # as `jitaku init` made them
        os.replace(tls_dir / f".{file}.new", tls_dir / file)
    return ca
