"""A certificate changed on disk served without a restart (issue 25).

Each process that serves TLS watches tls/cert.pem and key.pem (a stat every RELOAD_EVERY seconds: cheap) and, on a
change, loads the new pair into a context of its own that the SSLContext objects its listeners hold hand every new
handshake to (their sni_callback, called for each ClientHello, SNI or not): new handshakes get the new certificate,
open connections keep theirs. Not load_cert_chain into the listeners' contexts again: OpenSSL keeps a certificate
per key type there, so an RSA pair replaced by an ECDSA one (certbot's default since 2.0) or back would go on being
served to the clients that ask for the old type, past its expiry. Whoever changes the files counts: certbot renewing
(a symbolic link moved to a new file), a person rewriting them in place, the standby mirroring its primary's
(ha/secret_files.py).
"""

from __future__ import annotations

import asyncio
import contextlib
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

Stamp = tuple[int, int, int] | None  # (mtime_ns, size, inode) of one file; None when it cannot be read


def _stamp(path: Path) -> Stamp:
    """What says a file changed, whether rewritten in place (mtime, size) or replaced by a rename (inode). stat
    follows a symbolic link: certbot's renewal points live/cert.pem at a new file, a new inode."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_mtime_ns, found.st_size, found.st_ino


class Reloader:
    """One process's TLS contexts, whose new handshakes get TLS_DIR's pair as it is on disk, without a restart."""

    def __init__(self, tls_dir: Path, contexts: Iterable[ssl.SSLContext] = ()) -> None:
        self.cert, self.key = tls_dir / CERT, tls_dir / KEY
        self.contexts = list(contexts)
        self.current: ssl.SSLContext | None = None  # the newest pair's, once one was reloaded
        self.loaded = (_stamp(self.cert), _stamp(self.key))  # as the contexts were made, at the start

    def add(self, context: ssl.SSLContext) -> None:
        self.contexts.append(context)
        if self.current is not None:
            context.sni_callback = self._hand_over

    def _hand_over(self, connection: ssl.SSLObject, _name: str | None, _context: ssl.SSLContext) -> None:
        """A new handshake's certificate: the newest pair's."""
        connection.context = self.current  # type: ignore[assignment]  # set before any handshake hands over

    async def run(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_EVERY)
            await asyncio.to_thread(self.check)  # the reads block; the loads take a few ms

    def check(self) -> bool:
        """Load the pair if either file changed since the last look; True if the contexts now serve it.

        A pair that does not load (a half-written file, a key that is not the certificate's, garbage) leaves the
        contexts as they were, serving the old one, and is logged; it is tried again at its next change, not at
        every look (the key written a moment after the certificate: that next change)."""
        now = (_stamp(self.cert), _stamp(self.key))
        if now == self.loaded:
            return False
        self.loaded = now
        try:
            cert, key = self._read(self.cert), self._read(self.key)  # once: a file changed meanwhile is the next look's
            certificate = self._certificate(cert, key)
            self._load(cert, key)
        except _Refused as refused:
            log.event("tls_reload_failed", logging.WARNING, file=str(refused.path), error=refused.reason)
            return False
        log.event(
            "tls_reloaded",
            subject=certificate.subject.rfc4514_string(),
            not_after=certificate.not_valid_after_utc.isoformat(),
        )
        return True

    @staticmethod
    def _read(path: Path) -> bytes:
        try:
            return path.read_bytes()
        except OSError as error:
            raise _Refused(path, _reason(error)) from None

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
        that is not the certificate's is refused here, before any listener sees it."""
        fresh = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        with _in_memory(cert) as cert_path, _in_memory(key) as key_path:
            try:
                fresh.load_cert_chain(cert_path, key_path)
            except ssl.SSLError as error:
                if error.reason == "KEY_VALUES_MISMATCH":
                    raise _Refused(self.key, f"does not match {self.cert.name}") from None
                raise _Refused(self.cert, error.reason or str(error)) from None
        self.current = fresh
        for context in self.contexts:
            context.sni_callback = self._hand_over


class _Refused(Exception):
    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(reason)
        self.path, self.reason = path, reason


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
