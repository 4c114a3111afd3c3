"""Certificates by ACME from Debian's pebble, validating for real: HTTP-01 by fetching the token from jitaku's web
at the address the tests' DNS zone gives (on pebble's HTTP-01 port: the challenge route answers on every web port), DNS-01 by asking challtestsrv for the TXT record that
jitaku set through a Cloudflare stand-in. Then every listener serves a chain that verifies to pebble's root."""

from __future__ import annotations

import datetime
import json
import smtplib
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from jitaku.acme import state
from tests.integration.harness import Jitaku
from tests.integration.pebble import ChallTestSrv, Pebble, ca_files
from tests.peers import Zone, serve, stop_serving, wait_until

# each test's own loopback address: tests run side by side (xdist); ADDRESS's web takes port 443
ADDRESS = "127.0.11.21"
NO_PORT_80 = "127.0.11.22"
LEFT_OUT = "127.0.11.23"
NAMES = ["mail.example.test", "mta-sts.example.test"]


def _zone(zone: Zone, names: list[str] = NAMES, address: str = ADDRESS) -> None:
    zone.add("example.test. 1 IN SOA ns.example.test. hostmaster.example.test. 1 60 60 60 1")
    for name in names:
        zone.add(f"{name}. 1 IN A {address}")


def _acme(server: Jitaku, pebble: Pebble, **more: Any) -> None:
    server.settings["acme"] = {
        "email": "owner@example.test",
        "directory": pebble.directory,
        "directory_ca": str(pebble.directory_ca),
        **more,
    }
    server.write_config()


def _jitaku(jitaku_factory: Any, dns_port: int, web: list[str]) -> Jitaku:
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["web"]["listen"] = ["127.0.0.1:0", *web]
    server.write_config()
    server.init("alice@example.test")
    return server


def _verified_by(roots: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(roots))
    return context


def _submission(server: Jitaku, context: ssl.SSLContext) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", server.submission_port, timeout=10) as smtp:
            smtp.ehlo("client.example.test")
            smtp._host = "mail.example.test"  # the name the certificate is checked against
            smtp.starttls(context=context)
        return True
    except ssl.SSLCertVerificationError:
        return False


def _https(context: ssl.SSLContext) -> bool:
    try:
        with (
            socket.create_connection((ADDRESS, 443), timeout=10) as plain,
            context.wrap_socket(plain, server_hostname="mail.example.test"),
        ):
            return True
    except ssl.SSLCertVerificationError:
        return False


def _status(server: Jitaku) -> dict[str, Any]:
    return dict(json.loads(server.cli("cert", "status", "--json").stdout))


def test_http01_issues_a_certificate_that_every_listener_serves_and_renews_as_the_same_account(
    jitaku_factory, dns_zone, pebble_factory, tmp_path: Path
) -> None:
    zone, dns_port = dns_zone
    _zone(zone)
    pebble = pebble_factory(dns_port)
    server = _jitaku(jitaku_factory, dns_port, [f"{ADDRESS}:{pebble.http_port}", f"{ADDRESS}:443"])
    _acme(server, pebble)
    server.start()
    roots = tmp_path / "roots.pem"
    roots.write_text(pebble.roots())
    context = _verified_by(roots)
    assert not _https(context)  # the self-signed one, before

    renewed = server.cli("cert", "renew", check=False)
    assert renewed.returncode == 0, renewed.stderr + pebble.log()
    assert renewed.stdout.startswith("renewed: mail.example.test, mta-sts.example.test, valid until ")

    wait_until(lambda: _https(context) and _submission(server, context), timeout=30, interval=0.5)
    status = _status(server)
    assert "Pebble Intermediate" in status["issuer"] and status["names"] == NAMES
    assert status["not_after"] and status["last_error"] is None and status["last_success"]
    assert not list((server.dir / "acme" / "http-01").iterdir())  # the tokens withdrawn
    with pytest.raises(urllib.error.HTTPError) as gone:
        urllib.request.urlopen(f"http://{ADDRESS}:{pebble.http_port}/.well-known/acme-challenge/withdrawn", timeout=10)
    assert gone.value.code == 404 and gone.value.headers["Cache-Control"] == "no-store"

    account = json.loads((server.dir / "acme" / "account.json").read_text())["url"]
    assert server.cli("cert", "renew").stdout.startswith("not due: valid until ")
    assert server.cli("cert", "renew", "--force").stdout.startswith("renewed: ")
    assert json.loads((server.dir / "acme" / "account.json").read_text())["url"] == account
    assert (server.dir / "acme" / "account.json").stat().st_mode & 0o777 == 0o600
    assert "Traceback" not in server.log()


class CloudflareToChallTestSrv:
    """Cloudflare's API as jitaku calls it for DNS-01: a TXT record POSTed is set in challtestsrv (SPREAD seconds
    after the answer, as Cloudflare's own servers take a moment), DELETEd cleared."""

    def __init__(self, stand_in: Any, challtestsrv: ChallTestSrv, spread: float = 0.0) -> None:
        self.challtestsrv = challtestsrv
        self.spread = spread
        self.records: dict[str, str] = {}  # id -> name, while set
        self.deleted: list[str] = []
        self.api = stand_in(self._handle)

    def _handle(self, method: str, path: str, query: Any, headers: Any, body: bytes) -> tuple[int, Any]:
        if headers.get("Authorization") != "Bearer cf-token":
            return 403, {"success": False, "errors": [{"message": "Invalid API Token"}]}
        if path == "/zones":
            return 200, {"success": True, "result": [{"id": "zone1", "name": query["name"][0]}]}
        if method == "POST" and path == "/zones/zone1/dns_records":
            record = json.loads(body)
            assert record["type"] == "TXT" and record["ttl"] == 60
            record_id = f"txt{len(self.records) + len(self.deleted)}"
            self.records[record_id] = record["name"]
            later = threading.Timer(self.spread, self.challtestsrv.set_txt, (record["name"], record["content"]))
            later.start()
            if not self.spread:
                later.join()
            return 200, {"success": True, "result": {"id": record_id, **record}}
        if method == "DELETE" and path.startswith("/zones/zone1/dns_records/"):
            name = self.records.pop(path.rsplit("/", 1)[1])
            self.challtestsrv.clear_txt(name)
            self.deleted.append(name)
            return 200, {"success": True, "result": {"id": path.rsplit("/", 1)[1]}}
        return 404, {"success": False, "errors": [{"message": f"no {method} {path}"}]}


def _cloudflare(jitaku_factory: Any, cloudflare: CloudflareToChallTestSrv) -> Jitaku:
    """A jitaku whose [[ddns]] table sets its records through CLOUDFLARE and checks them where the CA asks."""
    server: Jitaku = jitaku_factory()
    server.settings["ddns"] = [
        {
            "provider": "cloudflare",
            "name": "home.example.test",
            "zone": "example.test",
            "password": "cf-token",
            "endpoint": cloudflare.api.url,
            "verify_nameservers": [f"127.0.0.1:{cloudflare.challtestsrv.dns_port}"],
        }
    ]
    server.init()
    return server


def test_dns01_through_cloudflare_issues_and_deletes_the_txt_records_after(
    jitaku_factory, pebble_factory, challtestsrv, stand_in
) -> None:
    cloudflare = CloudflareToChallTestSrv(stand_in, challtestsrv)
    pebble = pebble_factory(challtestsrv.dns_port, validity=3600)  # an hour: due with 20 minutes left
    server = _cloudflare(jitaku_factory, cloudflare)
    _acme(server, pebble, challenge="dns-01")

    renewed = server.cli("cert", "renew", check=False)
    assert renewed.returncode == 0, renewed.stderr + pebble.log()
    assert _status(server)["names"] == NAMES
    assert sorted(cloudflare.deleted) == [f"_acme-challenge.{name}" for name in NAMES]
    assert cloudflare.records == {}
    not_after = datetime.datetime.fromisoformat(_status(server)["not_after"])
    assert server.cli("cert", "renew").stdout.startswith(
        f"not due: valid until {not_after.isoformat()}; "
        f"renewal from {(not_after - datetime.timedelta(minutes=20)).isoformat()}"
    )

    # another CA: an account of its own, registered there
    first = json.loads((server.dir / "acme" / "account.json").read_text())
    other = pebble_factory(challtestsrv.dns_port)
    _acme(server, other, challenge="dns-01")
    assert server.cli("cert", "renew", "--force").stdout.startswith("renewed: ")
    second = json.loads((server.dir / "acme" / "account.json").read_text())
    assert second["directory"] == other.directory != first["directory"] and second["key"] != first["key"]
    assert "Pebble Intermediate" in _status(server)["issuer"]


def test_dns01_waits_for_the_txt_records_to_be_served_before_the_ca_looks(
    jitaku_factory, pebble_factory, challtestsrv, stand_in
) -> None:
    """Cloudflare answers the POST before its servers have the record; a CA told at once finds none."""
    cloudflare = CloudflareToChallTestSrv(stand_in, challtestsrv, spread=3.0)
    pebble = pebble_factory(challtestsrv.dns_port)
    server = _cloudflare(jitaku_factory, cloudflare)
    _acme(server, pebble, challenge="dns-01")
    renewed = server.cli("cert", "renew", check=False)
    assert renewed.returncode == 0, renewed.stderr + pebble.log()
    assert renewed.stdout.startswith("renewed: mail.example.test, mta-sts.example.test, valid until ")
    assert cloudflare.records == {}


Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


@pytest.fixture
def https_server(tmp_path: Path) -> Iterator[Any]:
    """make(answer) -> (its /dir URL, the CA to trust for it): an HTTPS server on 127.0.0.1 answering each request
    with ANSWER(method, path) -> Answer; a directory URL pointing at something that is not quite a CA."""
    servers: list[ThreadingHTTPServer] = []

    def make(answer: Any) -> tuple[str, Path]:
        ca, cert, key = ca_files(tmp_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                status, headers, body = answer(self.command, self.path)
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        serve(server)
        servers.append(server)
        return f"https://127.0.0.1:{server.server_address[1]}/dir", ca

    yield make
    for server in servers:
        stop_serving(server)


def _failed_renewal(jitaku_factory: Any, directory: str, ca: Path) -> tuple[Jitaku, str]:
    """A jitaku with ACME at DIRECTORY whose `cert renew` fails (exit 1) leaving its certificate as it was; what
    it said."""
    server: Jitaku = jitaku_factory()
    server.init()
    server.settings["acme"] = {"email": "owner@example.test", "directory": directory, "directory_ca": str(ca)}
    server.write_config()
    old = (server.dir / "tls" / "cert.pem").read_bytes()
    renewed = server.cli("cert", "renew", check=False)
    assert renewed.returncode == 1 and "Traceback" not in renewed.stderr
    assert (server.dir / "tls" / "cert.pem").read_bytes() == old
    return server, renewed.stderr


def test_a_directory_answering_garbage_keeps_the_old_certificate_and_says_when_the_next_try_is(
    jitaku_factory, https_server
) -> None:
    page = b"<html><body>Welcome to nginx!</body></html>"
    directory, ca = https_server(lambda method, path: (200, {"Content-Type": "text/html"}, page))
    server, stderr = _failed_renewal(jitaku_factory, directory, ca)
    said = f"the ACME server at {directory} answered something that is not ACME (text/html, not JSON)"
    assert stderr.startswith(f"jitaku: renewal failed: {said}; the next automatic try is at ")
    status = _status(server)
    assert status["last_error"] == said and status["next_try"] and status["last_success"] is None
    next_try = datetime.datetime.fromisoformat(status["next_try"]).timestamp()
    assert stderr.rstrip().endswith(f" is at {state.moment(next_try)}")  # as the certs check's alert says it


def test_a_rate_limit_waits_as_long_as_the_ca_asks(jitaku_factory, https_server) -> None:
    def ca(method: str, path: str) -> Answer:
        base = f"https://127.0.0.1:{port}"
        if path == "/dir":
            urls = {"newNonce": f"{base}/nonce", "newAccount": f"{base}/account", "newOrder": f"{base}/order"}
            return 200, {"Content-Type": "application/json"}, json.dumps(urls).encode()
        if path == "/nonce":
            return 200, {"Replay-Nonce": "bm9uY2U"}, b""
        problem = {"type": "urn:ietf:params:acme:error:rateLimited", "detail": "too many new accounts from this IP"}
        headers = {"Content-Type": "application/problem+json", "Retry-After": "7200", "Replay-Nonce": "bm9uY2U"}
        return 429, headers, json.dumps(problem).encode()

    directory, trusted = https_server(ca)
    port = int(directory.split(":")[2].split("/")[0])
    before = time.time()
    server, stderr = _failed_renewal(jitaku_factory, directory, trusted)
    assert stderr.startswith("jitaku: renewal failed: the CA limits our rate: too many new accounts from this IP;")
    next_try = datetime.datetime.fromisoformat(_status(server)["next_try"]).timestamp()
    assert before + 7200 - 1 <= next_try <= time.time() + 7200


def test_a_web_not_on_port_80_is_named_as_the_challenge_the_ca_could_not_fetch(
    jitaku_factory, dns_zone, pebble_factory
) -> None:
    zone, dns_port = dns_zone
    _zone(zone, address=NO_PORT_80)
    pebble = pebble_factory(dns_port)
    server = _jitaku(jitaku_factory, dns_port, [])  # nothing of ours at NO_PORT_80, on pebble's HTTP-01 port or any
    _acme(server, pebble)
    server.start()
    renewed = server.cli("cert", "renew", check=False)
    assert renewed.returncode == 1
    assert renewed.stderr.startswith(
        "jitaku: renewal failed: the CA could not fetch http://mail.example.test/.well-known/acme-challenge/ "
        "(port 80 must reach this box from the Internet): "
    ), renewed.stderr
    assert "connection refused" in renewed.stderr


def test_a_name_without_a_dns_record_is_left_out_and_the_rest_issued(jitaku_factory, dns_zone, pebble_factory) -> None:
    zone, dns_port = dns_zone
    _zone(zone, ["mail.example.test"], LEFT_OUT)  # mta-sts.example.test is not in DNS yet
    pebble = pebble_factory(dns_port)
    server = _jitaku(jitaku_factory, dns_port, [f"{LEFT_OUT}:{pebble.http_port}"])
    _acme(server, pebble)
    server.start()
    renewed = server.cli("cert", "renew", check=False)
    assert renewed.returncode == 0, renewed.stderr
    lines = renewed.stdout.splitlines()
    assert lines[0].startswith("renewed: mail.example.test, valid until ")
    assert lines[1].startswith("left out mta-sts.example.test: the CA could not fetch http://mta-sts.example.test/")
    status = _status(server)
    assert status["names"] == ["mail.example.test"] and "mta-sts.example.test" in status["left_out"]
