"""DKIM keys and signing: RSA-2048 always, Ed25519 (RFC 8463) as an optional second signature.

Importing it also hands dkimpy's RSA, signing and verifying, to OpenSSL (`cryptography`): dkimpy does
the arithmetic in pure Python. The seams are dkimpy's own function names (pyproject bounds its version).
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import dkim
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa, utils
from dkim.canonicalization import CanonicalizationPolicy

from jitaku.tls import write_secret

# The headers DMARC receivers and people look at; From is signed twice so a
# second From cannot be added after signing (RFC 6376 §8.15 "oversigning").
SIGNED_HEADERS = [
    b"from",
    b"from",
    b"to",
    b"cc",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"in-reply-to",
    b"references",
    b"mime-version",
    b"content-type",
    b"content-transfer-encoding",
    b"list-id",
    b"list-post",
    b"list-help",
    b"list-subscribe",
    b"list-owner",
    b"list-archive",  # RFC 6376 §5.4.1 names the List-* fields; Archived-At (RFC 5064) is of the same kind
    b"archived-at",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
]


# Each list member's own header lines (their one-click link): DKIM covers them, the shared ARC set does not.
PER_COPY_HEADERS = frozenset({b"list-unsubscribe", b"list-unsubscribe-post"})
# What an ARC-Message-Signature covers for list mail: one ARC set serves every member's copy.
ARC_SIGNED_HEADERS = [name for name in dict.fromkeys(SIGNED_HEADERS) if name not in PER_COPY_HEADERS]


@lru_cache(maxsize=16)
def _openssl_key(modulus: int, public_exponent: int, private_exponent: int, p: int, q: int) -> rsa.RSAPrivateKey:
    public = rsa.RSAPublicNumbers(public_exponent, modulus)
    numbers = rsa.RSAPrivateNumbers(
        p,
        q,
        private_exponent,
        rsa.rsa_crt_dmp1(private_exponent, p),
        rsa.rsa_crt_dmq1(private_exponent, q),
        rsa.rsa_crt_iqmp(p, q),
        public,
    )
    return numbers.private_key()


def _rsa_sign(digest: Any, key: dict[str, int]) -> bytes:
    """dkimpy's RSA step, done by OpenSSL: byte-for-byte the same PKCS#1 v1.5 signature, in 0.4 ms
    rather than the 10 ms of dkimpy's pure-Python arithmetic (a list post needs one per member)."""
    private = _openssl_key(key["modulus"], key["publicExponent"], key["privateExponent"], key["prime1"], key["prime2"])
    algorithm = hashes.SHA256() if digest.name == "sha256" else hashes.SHA1()
    return private.sign(digest.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))


@lru_cache(maxsize=16)
def _loaded_rsa_key(pem: bytes) -> rsa.RSAPrivateKey:
    """PEM to an OpenSSL key, once per key: loading checks the key, 36 ms of a list post's CPU each time."""
    private = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ValueError("CopySigner signs with RSA keys")
    return private


@lru_cache(maxsize=256)
def openssl_public_key(modulus: int, public_exponent: int) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(public_exponent, modulus).public_key()


_pure_python_verify = dkim.RSASSA_PKCS1_v1_5_verify


def _rsa_verify(digest: Any, signature: bytes, key: dict[str, int]) -> bool:
    """dkimpy's RSA check of a DKIM or ARC signature, done by OpenSSL: a quarter of the cost of verifying
    signed mail was dkimpy's pure-Python modular exponentiation. A key OpenSSL will not load (too small
    for it, a strange exponent) gets dkimpy's own check, so the verdict is dkimpy's either way."""
    try:
        public = openssl_public_key(key["modulus"], key["publicExponent"])
    except ValueError:
        return bool(_pure_python_verify(digest, signature, key))
    algorithm = hashes.SHA256() if digest.name == "sha256" else hashes.SHA1()
    try:
        public.verify(signature, digest.digest(), padding.PKCS1v15(), utils.Prehashed(algorithm))
    except InvalidSignature:
        return False
    return True


dkim.RSASSA_PKCS1_v1_5_sign = _rsa_sign
dkim.RSASSA_PKCS1_v1_5_verify = _rsa_verify
# ... and it parses the PEM key in Python for every signature (a third of the rest).
dkim.parse_pem_private_key = lru_cache(maxsize=16)(dkim.parse_pem_private_key)
_RELAXED = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str
    algorithm: str  # "rsa" or "ed25519"
    private_pem: bytes

    @property
    def record_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    def record_value(self) -> str:
        """The TXT value to publish (RFC 6376 §3.6.1; RFC 8463 for ed25519)."""
        key = serialization.load_pem_private_key(self.private_pem, password=None)
        if isinstance(key, ed25519.Ed25519PrivateKey):
            raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
        der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def key_path(dkim_dir: Path, domain: str, selector: str) -> Path:
    return dkim_dir / f"{domain}.{selector}.key"


def ed25519_selector(selector: str) -> str:
    return f"{selector}e"


def ensure_keys(dkim_dir: Path, domain: str, selector: str, with_ed25519: bool) -> list[Path]:
    """Create the missing private keys for DOMAIN (0600); return the paths created."""
    dkim_dir.mkdir(parents=True, exist_ok=True)
    created = []
    wanted: list[tuple[str, object]] = [(selector, "rsa")]
    if with_ed25519:
        wanted.append((ed25519_selector(selector), "ed25519"))
    for name, kind in wanted:
        path = key_path(dkim_dir, domain, name)
        if path.exists():
            continue
        key = rsa.generate_private_key(65537, 2048) if kind == "rsa" else ed25519.Ed25519PrivateKey.generate()
        write_secret(
            path,
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
        )
        created.append(path)
    return created


def load_keys(dkim_dir: Path, domain: str, selector: str, with_ed25519: bool) -> list[DkimKey]:
    keys = []
    names = [(selector, "rsa")] + ([(ed25519_selector(selector), "ed25519")] if with_ed25519 else [])
    for name, kind in names:
        path = key_path(dkim_dir, domain, name)
        if path.exists():
            keys.append(DkimKey(domain, name, kind, path.read_bytes()))
    return keys


class Signer:
    """Signs outgoing mail of our domains with every key each domain has."""

    def __init__(self, keys: list[DkimKey]) -> None:
        self._keys: dict[str, list[tuple[DkimKey, bytes]]] = {}
        for key in keys:
            self._keys.setdefault(key.domain, []).append((key, _dkimpy_key(key)))

    def signs_for(self, domain: str) -> bool:
        return domain.lower() in self._keys

    def sign(self, message: bytes, domain: str) -> bytes:
        """Return MESSAGE with DKIM-Signature headers prepended (relaxed/relaxed)."""
        headers = b""
        for key, private in self._keys.get(domain.lower(), []):
            headers += dkim.sign(
                message,
                key.selector.encode(),
                key.domain.encode(),
                private,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=SIGNED_HEADERS,
                signature_algorithm=b"ed25519-sha256" if key.algorithm == "ed25519" else b"rsa-sha256",
            )
        return headers + message

    def _rsa(self, domain: str) -> tuple[DkimKey, bytes] | None:
        """DOMAIN's RSA key: the one ARC and list copies use (Ed25519 is not widely verified)."""
        return next(
            ((key, private) for key, private in self._keys.get(domain.lower(), []) if key.algorithm == "rsa"), None
        )

    def copy_signer(self, shared: bytes, domain: str, personal: frozenset[bytes]) -> CopySigner | None:
        """A signer for many copies of SHARED under DOMAIN's RSA key (None: no key for DOMAIN)."""
        found = self._rsa(domain)
        return CopySigner(found[0], shared, personal, int(time.time())) if found else None

    def seal(self, message: bytes, domain: str, authserv_id: str) -> bytes:
        """The next ARC set (RFC 8617) for MESSAGE as we pass it on, recording our
        Authentication-Results; empty when there are none of ours or the chain cannot continue."""
        found = self._rsa(domain)
        if found is None:
            return b""
        key, private = found
        headers = dkim.arc_sign(
            message,
            key.selector.encode(),
            key.domain.encode(),
            private,
            authserv_id.encode(),
            include_headers=ARC_SIGNED_HEADERS,
        )
        return b"".join(headers)


def _dkimpy_key(key: DkimKey) -> bytes:
    """dkimpy wants RSA keys as PEM and Ed25519 keys as the base64 raw private key."""
    if key.algorithm == "rsa":
        return key.private_pem
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    raw = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return base64.b64encode(raw)


class CopySigner:
    """RSA DKIM signatures for the copies of one message that differ only in header lines on top.

    A post to 1,000 members needs 1,000 signatures over the same body and the
    same headers but each member's List-Unsubscribe. dkimpy would hash the body
    and canonicalize every header again each time; here that is done once, with
    dkimpy's own parser and canonicalization, and each copy costs one hash of a
    few lines and one RSA signature, made by OpenSSL outside the GIL, so copies
    can be signed on several threads at once.
    """

    def __init__(self, key: DkimKey, shared: bytes, personal: frozenset[bytes], timestamp: int) -> None:
        self._key = _loaded_rsa_key(key.private_pem)
        self._personal = personal
        headers, body = dkim.rfc822_parse(shared)
        self._shared = _canonical_fields(headers)
        body_hash = base64.b64encode(hashlib.sha256(_RELAXED.canonicalize_body(body)).digest()).decode()
        names = [name.decode() for name in SIGNED_HEADERS]
        folded = ":\r\n  ".join(":".join(names[i : i + 6]) for i in range(0, len(names), 6))
        self._tags = (
            f"v=1; a=rsa-sha256; c=relaxed/relaxed; d={key.domain}; s={key.selector};\r\n"
            f" t={timestamp}; h={folded};\r\n bh={body_hash};\r\n b="
        ).encode()
        ((_name, value),) = _RELAXED.canonicalize_headers([(b"DKIM-Signature", b" " + self._tags)])
        self._signature_field = b"dkim-signature:" + value.rstrip(b"\r\n")

    def sign(self, prefix: bytes) -> bytes:
        """The DKIM-Signature line for the copy made of PREFIX (its own header lines) and the shared message."""
        own = _canonical_fields(dkim.rfc822_parse(prefix + b"\r\n")[0])
        digest = hashlib.sha256()
        for index, name in enumerate(SIGNED_HEADERS):
            digest.update(own[index] if name in self._personal else self._shared[index])
        digest.update(self._signature_field)
        signature = base64.b64encode(
            self._key.sign(digest.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        )
        folded = b"\r\n ".join(signature[i : i + 72] for i in range(0, len(signature), 72))
        return b"DKIM-Signature: " + self._tags + folded + b"\r\n"


def _canonical_fields(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """Per entry of SIGNED_HEADERS, its relaxed form as RFC 6376 §5.4.2 picks it: instances of a name
    from the bottom up, and nothing once they run out (which is what makes the second "from" a seal)."""
    remaining: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for name, value in headers:
        remaining.setdefault(name.lower(), []).append((name, value))
    fields = []
    for name in SIGNED_HEADERS:
        instances = remaining.get(name)
        if instances:
            ((canonical_name, value),) = _RELAXED.canonicalize_headers([instances.pop()])
            fields.append(canonical_name + b":" + value)
        else:
            fields.append(b"")
    return fields
