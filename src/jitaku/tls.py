"""TLS material: a self-signed certificate at init (ACME or certbot replace it), the server context, and whether
the certificate served is a real one."""

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


class RealCertificate:
    """Whether TLS_DIR's certificate is a real one: not self-signed (`jitaku init`'s is) and not expired, whoever put
    it there (ACME, certbot, a person). Asked on every web request (port 80 redirects to HTTPS and HTTPS responses
    carry HSTS only then, or browsers would be sent to, and held at, a certificate they refuse): the file is parsed
    again only when its (inode, mtime, size) changes. stat follows a symbolic link, as certbot users make them."""

    def __init__(self, tls_dir: Path) -> None:
        self.path = tls_dir / CERT
        self._seen: tuple[int, int, int] | None = None
        self._until: datetime.datetime | None = None  # the real certificate's not-after; None: no real one

    def __call__(self) -> bool:
        try:
            found = self.path.stat()
        except OSError:
            return False
        stamp = (found.st_ino, found.st_mtime_ns, found.st_size)
        if stamp != self._seen:
            self._seen, self._until = stamp, _real_until(self.path)
        return self._until is not None and datetime.datetime.now(datetime.UTC) < self._until


def _real_until(path: Path) -> datetime.datetime | None:
    """The not-after of PATH's first certificate unless it is self-signed; a file that does not parse is no real
    certificate (tls_reload says why it is not served)."""
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return None if certificate.issuer == certificate.subject else certificate.not_valid_after_utc


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
