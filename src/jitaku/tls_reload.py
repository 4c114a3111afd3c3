"""A certificate changed on disk served without a restart (issue 25).

Each process that serves TLS watches tls/cert.pem and key.pem (read and hashed every RELOAD_EVERY seconds: two small
files, cheap; a stat would miss a rewrite in place of the same size within one timestamp tick) and, on a change, loads
the new pair into a context of its own that the SSLContext objects its listeners hold hand every new handshake to
(their sni_callback, called for each ClientHello, SNI or not): new handshakes get the new certificate, open
connections keep theirs. Not load_cert_chain into the listeners' contexts again: OpenSSL keeps a certificate per key
type there, so an RSA pair replaced by an ECDSA one (certbot's default since 2.0) or back would go on being served to
the clients that ask for the old type, past its expiry. Whoever changes the files counts: certbot renewing (a symbolic
link moved to a new file), a person rewriting them in place, the standby mirroring its primary's (ha/secret_files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import ssl
from collections.abc import Iterable, Iterator
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from jitaku import log
from jitaku.tls import CERT, KEY

RELOAD_EVERY = 5.0  # seconds between two looks at the files

Contents = bytes | str  # a file's bytes, or why it cannot be read
Stamp = tuple[str, str]  # each file's sha256, or why it cannot be read


def _read(path: Path) -> Contents:
    """Follows a symbolic link: certbot's renewal points live/cert.pem at a new file."""
    try:
        return path.read_bytes()
    except OSError as error:
        return _reason(error)


def _stamp(cert: Contents, key: Contents) -> Stamp:
    """What says the pair changed, however it was written: renamed into place or rewritten in place."""
    return tuple(  # type: ignore[return-value]
        hashlib.sha256(found).hexdigest() if isinstance(found, bytes) else found for found in (cert, key)
    )


class Reloader:
    """One process's TLS contexts, whose new handshakes get TLS_DIR's pair as it is on disk, without a restart."""

    def __init__(self, tls_dir: Path, contexts: Iterable[ssl.SSLContext] = ()) -> None:
        self.cert, self.key = tls_dir / CERT, tls_dir / KEY
        self.contexts = list(contexts)
        self.current: ssl.SSLContext | None = None  # the newest pair's, once one was reloaded
        self.loaded = _stamp(_read(self.cert), _read(self.key))  # as the contexts were made, at the start
        self.failed: tuple[Stamp, str] | None = None  # the pair and error last logged as not loading

    def add(self, context: ssl.SSLContext) -> None:
        self.contexts.append(context)
        if self.current is not None:
            context.sni_callback = self._hand_over

    def _hand_over(self, connection: ssl.SSLObject, _name: str | None, _context: ssl.SSLContext) -> None:
        """A new handshake's certificate: the newest pair's."""
        connection.context = self.current  # type: ignore[assignment]  # set before any handshake hands over

    async def run(self) -> None:
        """Never ends on a failed look: the daemon's other services run in the same task group."""
        while True:
            await asyncio.sleep(RELOAD_EVERY)
            try:
                await asyncio.to_thread(self.check)  # the reads block; the loads take a few ms
            except Exception as error:  # the old pair stays served; the next look tries again
                log.event("tls_reload_failed", logging.WARNING, file=str(self.cert), error=_reason(error))

    def check(self) -> bool:
        """Load the pair if either file changed since it was last loaded; True if the contexts now serve it.

        A pair that does not load (a half-written file, a key that is not the certificate's, garbage, no memory
        left) leaves the contexts as they were, serving the old one; it is tried again at every look, as the cause
        may pass (the key written a moment after the certificate), and logged once for the same pair and error."""
        cert, key = _read(self.cert), _read(self.key)  # once: a file changed meanwhile is the next look's
        now = _stamp(cert, key)
        if now == self.loaded:
            return False
        try:
            certificate = self._certificate(_bytes(self.cert, cert), _bytes(self.key, key))
            self._load(_bytes(self.cert, cert), _bytes(self.key, key))
        except _Refused as refused:
            if self.failed != (now, refused.reason):
                self.failed = (now, refused.reason)
                log.event("tls_reload_failed", logging.WARNING, file=str(refused.path), error=refused.reason)
            return False
        self.loaded, self.failed = now, None
        if not self.contexts:
            log.event("tls_restart_needed", logging.WARNING, reason="no certificate at the start: TLS is off")
            return False
        log.event(
            "tls_reloaded",
            subject=certificate.subject.rfc4514_string(),
            not_after=certificate.not_valid_after_utc.isoformat(),
        )
        return True

    def _certificate(self, cert: bytes, key: bytes) -> x509.Certificate:
        """The new certificate, for the log; each file checked alone so that the log names the bad one."""
        try:
            certificate = x509.load_pem_x509_certificate(cert)
        except ValueError as error:
            raise _Refused(self.cert, _reason(error)) from None
        try:
            serialization.load_pem_private_key(key, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as error:  # TypeError: one that asks for a password
            raise _Refused(self.key, _reason(error)) from None
        return certificate

    def _load(self, cert: bytes, key: bytes) -> None:
        """A context made as server_context makes one, for the listeners' contexts to hand new handshakes to; a key
        that is not the certificate's is refused here, before any listener sees it. Only the certificate is handed
        over: no listener sets ALPN protocols today (a server context's would have to be set on FRESH too)."""
        fresh = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            with _in_memory(cert) as cert_path, _in_memory(key) as key_path:
                fresh.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as error:
            if error.reason == "KEY_VALUES_MISMATCH":
                raise _Refused(self.key, f"does not match {self.cert.name}") from None
            raise _Refused(self.cert, error.reason or str(error)) from None
        except OSError as error:  # memfd_create, write or open: no memory or descriptors left
            raise _Refused(self.cert, _reason(error)) from None
        self.current = fresh
        for context in self.contexts:
            context.sni_callback = self._hand_over


class _Refused(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


def _bytes(path: Path, found: Contents) -> bytes:
    if isinstance(found, str):
        raise _Refused(path, found)
    return found


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


@contextlib.contextmanager
def _in_memory(data: bytes) -> Iterator[str]:
    """DATA as a file that load_cert_chain can open by name and no other process can: the private key never
    written to a disk again."""
    descriptor = os.memfd_create("jitaku-tls")
    try:
        os.write(descriptor, data)
        yield f"/proc/self/fd/{descriptor}"
    finally:
        os.close(descriptor)
