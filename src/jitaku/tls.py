"""TLS material: a self-signed certificate at init (ACME comes later) and the server context."""

from __future__ import annotations

import datetime
import errno
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CERT = "cert.pem"
KEY = "key.pem"


def ensure_self_signed(tls_dir: Path, hostname: str) -> bool:
    """Create TLS_DIR/cert.pem and key.pem for HOSTNAME unless present; True if created."""
    cert_path, key_path = tls_dir / CERT, tls_dir / KEY
    if cert_path.exists() and key_path.exists():
        return False
    tls_dir.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    write_secret(
        key_path,
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )
    _write(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)  # public, ours to replace
    return True


def server_context(tls_dir: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tls_dir / CERT, tls_dir / KEY)
    return context


def write_secret(path: Path, data: bytes) -> None:
    """Write a private key or password file readable by its owner only (0600 from the first byte)."""
    _write(path, data, 0o600)


def _write(path: Path, data: bytes, mode: int) -> None:
    """Write PATH whole (on disk before we return) with MODE, whatever the umask or the mode of a file that was
    there (O_TRUNC keeps it), set before the first byte. A symbolic link where PATH should be is refused (ELOOP),
    never written through: in a data directory others could once write to, one may point at /etc/shadow, which
    `jitaku init` as root would otherwise overwrite with a key and make 0600 (provision.tighten reports it).
    O_NOFOLLOW looks at the last name only, so a link in place of the directory (tls/, dkim/) is refused too."""
    if path.parent.is_symlink():
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(path.parent))
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(descriptor, mode)
        file.write(data)
        file.flush()
        os.fsync(descriptor)
