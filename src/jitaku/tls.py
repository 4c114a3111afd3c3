"""TLS material: a self-signed certificate at init (ACME or certbot replace it), the server context, and whether
the certificate served is a real one."""

from __future__ import annotations

import datetime
import errno
import os
import ssl
from dataclasses import dataclass
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
    """The real certificate TLS_DIR's pair serves, if it does: cert.pem not self-signed (`jitaku init`'s is), not
    expired, and key.pem its key, whoever put them there (ACME, certbot, a person). A cert.pem beside another key
    is no real one: the listeners refuse such a pair (jitaku.tls_reload) and go on serving the one before, often
    the self-signed one. Asked on every web request (port 80 redirects to HTTPS and HTTPS responses carry HSTS only
    then, or browsers would be sent to, and held at, a certificate they refuse): the files are read again only when
    either one's (inode, mtime, size) changes. stat follows a symbolic link, as certbot users make them."""

    def __init__(self, tls_dir: Path) -> None:
        self.paths = (tls_dir / CERT, tls_dir / KEY)
        self._seen: tuple[int, ...] | None = None
        self._real: _Served | None = None

    def __call__(self) -> bool:
        return bool(self.names())

    def names(self) -> tuple[str, ...]:
        """The DNS names the real certificate carries, lower-cased; none while no real one is served."""
        try:
            found = [path.stat() for path in self.paths]
        except OSError:
            return ()
        stamp = tuple(number for item in found for number in (item.st_ino, item.st_mtime_ns, item.st_size))
        if stamp != self._seen:
            self._seen, self._real = stamp, _served(*self.paths)
        if self._real is None or datetime.datetime.now(datetime.UTC) >= self._real.until:
            return ()
        return self._real.names


@dataclass(frozen=True)
class _Served:
    until: datetime.datetime
    names: tuple[str, ...]


def _served(cert_path: Path, key_path: Path) -> _Served | None:
    """CERT_PATH's first certificate unless it is self-signed or KEY_PATH is not its key; files that do not parse
    are no real certificate (tls_reload says why they are not served)."""
    try:
        cert, key = cert_path.read_bytes(), key_path.read_bytes()
        certificate = x509.load_pem_x509_certificate(cert)
    except (OSError, ValueError):
        return None
    if certificate.issuer == certificate.subject or not pair_matches(cert, key):
        return None
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None  # a CA puts every name in the SANs (RFC 6125); without them no browser takes it
    dns_names = tuple(dict.fromkeys(name.lower() for name in names.get_values_for_type(x509.DNSName)))
    return _Served(certificate.not_valid_after_utc, dns_names) if dns_names else None


def pair_matches(cert: bytes, key: bytes) -> bool:
    """Whether the TLS key is the certificate's (the first of the chain): a pair caught half renewed is not."""
    try:
        public = x509.load_pem_x509_certificate(cert).public_key()
        private = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        return False
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return public.public_bytes(*spki) == private.public_key().public_bytes(*spki)


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
