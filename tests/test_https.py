"""Port 80 sends browsers to HTTPS and HTTPS carries HSTS once a real certificate is served, never before; ACME's
challenges stay on plain HTTP; a forged Host never makes the redirect point elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from jitaku.config import parse
from jitaku.tls import RealCertificate, ensure_self_signed
from jitaku.web.headers import SecurityHeaders
from jitaku.web.https import Hsts, ToHttps
from tests.certificates import signed_by_test_ca

SETTINGS = parse(
    'hostname = "mail.example.test"\ndomains = ["example.test"]\n[web]\nurl = "https://www.example.test/"\n'
    '[acme]\nemail = "owner@example.test"\nnames = ["mail.example.test", "www.example.test", "blog.example.test"]\n',
    Path("jitaku.toml"),
)


async def _page(request: Request) -> PlainTextResponse:
    return PlainTextResponse(f"{request.method} {request.url.path} {request.url.query}")


APP = SecurityHeaders(Starlette(routes=[Route("/{path:path}", _page, methods=["GET", "HEAD", "POST", "PUT"])]))


@pytest.fixture
def tls_dir(tmp_path: Path) -> Path:
    ensure_self_signed(tmp_path / "tls", "mail.example.test")  # as `jitaku init` leaves it
    return tmp_path / "tls"


def port_80(tls_dir: Path) -> TestClient:
    return TestClient(ToHttps(APP, RealCertificate(tls_dir), SETTINGS), follow_redirects=False)


def port_443(tls_dir: Path) -> TestClient:
    return TestClient(Hsts(APP, RealCertificate(tls_dir)), base_url="https://mail.example.test", follow_redirects=False)


def test_only_a_certificate_a_ca_signed_and_still_valid_counts_as_real(tls_dir: Path, tmp_path: Path) -> None:
    real = RealCertificate(tls_dir)
    assert not real()  # init's self-signed one
    signed_by_test_ca(tls_dir, ["mail.example.test"])
    assert real()
    signed_by_test_ca(tls_dir, ["mail.example.test"], days=-1)
    assert not real()
    (tls_dir / "cert.pem").write_text("not a certificate\n")
    assert not real()
    (tls_dir / "cert.pem").unlink()
    assert not real()


def test_a_certificate_certbot_links_in_place_counts_and_its_renewal_is_seen(tls_dir: Path, tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    ensure_self_signed(live, "mail.example.test")
    for name in ("cert.pem", "key.pem"):
        (tls_dir / name).unlink()
        (tls_dir / name).symlink_to(live / name)
    real = RealCertificate(tls_dir)
    assert not real()
    signed_by_test_ca(live, ["mail.example.test"])  # the link's target replaced, the link itself untouched
    assert real()


def test_before_a_real_certificate_port_80_serves_the_site_as_it_is(tls_dir: Path) -> None:
    answer = port_80(tls_dir).get("/2026/12/a-post?page=2", headers={"host": "www.example.test"})
    assert (answer.status_code, answer.text) == (200, "GET /2026/12/a-post page=2")


def test_with_a_real_certificate_port_80_redirects_to_the_same_place_on_https(tls_dir: Path) -> None:
    signed_by_test_ca(tls_dir, ["mail.example.test", "www.example.test", "blog.example.test"])
    client = port_80(tls_dir)
    answer = client.get("/2026/12/a%20post?page=2&q=%C3%A9", headers={"host": "blog.example.test:80"})
    assert answer.status_code == 301
    assert answer.headers["location"] == "https://blog.example.test/2026/12/a%20post?page=2&q=%C3%A9"
    assert answer.headers["x-frame-options"] == "DENY" and "strict-transport-security" not in answer.headers
    assert client.head("/", headers={"host": "MAIL.example.test"}).headers["location"] == "https://mail.example.test/"
    posted = client.post("/comments/", data={"text": "hello"}, headers={"host": "www.example.test"})
    assert (posted.status_code, posted.headers["location"]) == (308, "https://www.example.test/comments/")
    assert client.put("/x", headers={"host": "www.example.test"}).status_code == 308


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "mail.example.test.evil.example", "[::1]:80", ""])
def test_a_host_not_ours_is_sent_to_the_web_urls_host(tls_dir: Path, host: str) -> None:
    signed_by_test_ca(tls_dir, ["mail.example.test", "www.example.test"])
    answer = port_80(tls_dir).get("/feed.xml", headers={"host": host})
    assert (answer.status_code, answer.headers["location"]) == (301, "https://www.example.test/feed.xml")


def test_acme_challenges_and_the_pairs_requests_stay_on_plain_http(tls_dir: Path) -> None:
    signed_by_test_ca(tls_dir, ["mail.example.test"])
    client = port_80(tls_dir)
    answer = client.get("/.well-known/acme-challenge/tok3n", headers={"host": "mail.example.test"})
    assert (answer.status_code, answer.text) == (200, "GET /.well-known/acme-challenge/tok3n ")
    asked = client.post("/api/ha/state", content=b"{}", headers={"host": "192.168.1.11"})  # the peer, by address
    assert (asked.status_code, asked.text) == (200, "POST /api/ha/state ")


def test_hsts_on_https_only_once_the_certificate_is_real(tls_dir: Path) -> None:
    client = port_443(tls_dir)
    assert "strict-transport-security" not in client.get("/").headers
    signed_by_test_ca(tls_dir, ["mail.example.test"])
    answer = client.get("/")
    assert answer.headers.get_list("strict-transport-security") == ["max-age=31536000"]
    assert answer.headers.get_list("x-frame-options") == ["DENY"]
    assert "strict-transport-security" not in port_80(tls_dir).get("/.well-known/acme-challenge/t").headers


def test_a_certificate_beside_a_key_not_its_own_is_not_real(tls_dir: Path) -> None:
    """A pair the listeners refuse (certbot's cert.pem copied without its key, a renewal caught half way): they go
    on serving the self-signed one, so no browser may be sent there nor told to insist on it."""
    signed_by_test_ca(tls_dir, ["mail.example.test", "www.example.test"])
    real = RealCertificate(tls_dir)
    assert real()
    other = ec.generate_private_key(ec.SECP256R1())
    (tls_dir / "key.pem").write_bytes(
        other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    assert not real()
    answer = port_80(tls_dir).get("/", headers={"host": "www.example.test"})
    assert answer.status_code == 200 and "location" not in answer.headers
    assert "strict-transport-security" not in port_443(tls_dir).get("/").headers


def test_a_name_the_certificate_does_not_carry_is_sent_to_one_it_does(tls_dir: Path) -> None:
    """blog.example.test is among the names asked for, but the CA left it out: its https:// would fail."""
    signed_by_test_ca(tls_dir, ["mail.example.test", "www.example.test"])
    answer = port_80(tls_dir).get("/a", headers={"host": "blog.example.test"})
    assert (answer.status_code, answer.headers["location"]) == (301, "https://www.example.test/a")
    signed_by_test_ca(tls_dir, ["mail.example.test"])  # not even the web URL's host
    answer = port_80(tls_dir).get("/a", headers={"host": "www.example.test"})
    assert (answer.status_code, answer.headers["location"]) == (301, "https://mail.example.test/a")
