"""Debian's pebble (an ACME CA for tests) and pebble-challtestsrv (a DNS server whose TXT records a test sets), as
peers a test starts: `pebble_factory` and `challtestsrv` in tests/integration/conftest.py.

Pebble serves its directory over HTTPS with a certificate of ours, for 127.0.0.1 and localhost, signed by a test
CA whose PEM is `Pebble.directory_ca` (what jitaku's `[acme] directory_ca` names). It validates for real: HTTP-01
by connecting to the address its `-dnsserver` gives for a name, on port 80; DNS-01 by asking that server for TXT
records. It signs certificates with a root of its own, a new one each start: `roots()`.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.peers import free_port, stop_process, wait_for_port

PEBBLE_ENV = {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0"}


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def ca_files(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate it signed for 127.0.0.1 and localhost, in DIRECTORY: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitaku tests' pebble CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(_pem(key))
    return paths


class Pebble:
    """`pebble` on 127.0.0.1, validating names through the DNS server at DNS_PORT (127.0.0.1). VALIDITY: seconds
    its certificates last (its default: 5 years). HTTP-01 is fetched from each name's address on `http_port`, a
    port of this test's own rather than 80: the challenge route answers on every web port, and port 80 on a shared
    address would collide with other checkouts' tests."""

    def __init__(self, dns_port: int, validity: int | None = None) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jitaku-pebble-"))
        self.directory_ca, cert, key = ca_files(self.dir)
        self.log_path = self.dir / "pebble.log"
        self.http_port = free_port()
        for _attempt in range(3):  # a port found free may be taken before pebble binds it: it exits, and we retry
            self.port, self.management_port = free_port(), free_port()
            settings: dict[str, object] = {
                "listenAddress": f"127.0.0.1:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.management_port}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": self.http_port,
                "tlsPort": 443,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
            if validity is not None:
                settings["certificateValidityPeriod"] = validity
            config = self.dir / "pebble.json"
            config.write_text(json.dumps({"pebble": settings}))
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    ["pebble", "-config", str(config), "-dnsserver", f"127.0.0.1:{dns_port}"],
                    stdout=log,
                    stderr=log,
                    env={**os.environ, **PEBBLE_ENV},
                )
            if self._listening():
                break
        else:
            raise RuntimeError(f"pebble would not start: {self.log()}")
        self.directory = f"https://127.0.0.1:{self.port}/dir"

    def _listening(self, timeout: float = 20.0) -> bool:
        """Whether pebble listens on both its ports; False once it has exited (a port taken)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                for port in (self.port, self.management_port):
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        if self.process.poll() is None:
            raise TimeoutError(f"pebble did not listen within {timeout:.0f} s: {self.log()}")
        return False

    def roots(self) -> str:
        """The PEM of the root that pebble's certificates chain to (new each start)."""
        context = ssl.create_default_context(cafile=str(self.directory_ca))
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=context, timeout=10) as answer:
            return str(answer.read().decode())

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.dir, ignore_errors=True)


class ChallTestSrv:
    """`pebble-challtestsrv` as a DNS server alone (on 127.0.0.1:dns_port, UDP and TCP), answering every A query
    with ADDRESS and the TXT records set by set_txt; a pebble started with its dns_port asks it."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        self.dns_port, self.management_port = free_port(), free_port()
        self.process = subprocess.Popen(
            [
                "pebble-challtestsrv",
                "-http01", "",
                "-https01", "",
                "-tlsalpn01", "",
                "-dns01", f"127.0.0.1:{self.dns_port}",
                "-management", f"127.0.0.1:{self.management_port}",
                "-defaultIPv4", address,
                "-defaultIPv6", "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.management_port)

    def _post(self, path: str, body: dict[str, str]) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.management_port}{path}", data=json.dumps(body).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def set_txt(self, host: str, value: str) -> None:
        """HOST: a name with or without its final dot (_acme-challenge.mail.example.test)."""
        self._post("/set-txt", {"host": host.rstrip(".") + ".", "value": value})

    def clear_txt(self, host: str) -> None:
        self._post("/clear-txt", {"host": host.rstrip(".") + "."})

    def close(self) -> None:
        stop_process(self.process)
