"""Admin sessions and what every response tells the browser (issue 15, point 12), over HTTP with httpx: a
cookie copied before log out is refused after it, a new password or a revoked right ends every session,
the cookie is Secure over HTTPS, a proxy's headers never pass for this machine, and the security headers
are on every response (test_dashboard.py renders the dashboard under them in headless Chromium)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.forms import submit
from tests.integration.harness import Jitaku
from tests.peers import wait_for_port

ADMIN = {"address": "alice@example.test", "password": "secret-password", "next": "/admin/health"}
HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def guarded(jitaku_factory) -> Jitaku:
    """A running jitaku whose pages need a login from loopback too, with admin alice and plain user bob."""
    server: Jitaku = jitaku_factory()
    server.settings["web"]["trust_loopback"] = False
    server.write_config()
    server.init("alice@example.test", "bob@example.org")
    server.start()
    server.cli("list", "create", "sota@example.test")
    return server


def base(server: Jitaku) -> str:
    return f"http://127.0.0.1:{server.web_port}"


@contextlib.contextmanager
def logged_in(server: Jitaku) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base(server)) as client:
        assert submit(client, "/login", ADMIN).status_code == 303
        assert client.get("/api/health").status_code == 200
        yield client


def copy_of(client: httpx.Client) -> httpx.Client:
    """Another browser holding the same cookie, as one stolen or left on a shared computer would be."""
    return httpx.Client(base_url=str(client.base_url), cookies=dict(client.cookies))


def test_log_out_ends_the_session_and_every_copy_of_its_cookie(guarded: Jitaku) -> None:
    with logged_in(guarded) as browser, copy_of(browser) as copy, logged_in(guarded) as elsewhere:
        assert copy.get("/api/health").status_code == 200
        assert submit(browser, "/login", {}, action="/logout").status_code == 303
        assert browser.get("/api/health").status_code == 401
        assert copy.get("/api/health").status_code == 401  # the copy taken before log out
        assert elsewhere.get("/api/health").status_code == 401  # every session of that admin
        with logged_in(guarded) as again:
            assert submit(copy, "/login", {}, action="/logout").status_code == 303  # an ended session's: ends nothing
            assert again.get("/admin/health").status_code == 200
    assert "event=web_logout user=alice@example.test" in guarded.log()


def test_a_new_password_or_a_revoked_right_ends_every_session(guarded: Jitaku) -> None:
    with logged_in(guarded) as browser:
        guarded.cli("user", "passwd", "alice@example.test", "--password-stdin", input="secret-password\n")
        assert browser.get("/api/health").status_code == 401  # the same password again still ends it
    with logged_in(guarded) as browser, copy_of(browser) as copy:
        guarded.cli("user", "admin", "alice@example.test", "--revoke")
        assert browser.get("/api/health").status_code == 401
        guarded.cli("user", "admin", "alice@example.test")
        assert copy.get("/api/health").status_code == 401  # made admin again: the old cookie stays dead
    with logged_in(guarded) as browser:
        assert browser.get("/admin/").status_code == 200


def test_a_proxys_headers_from_loopback_never_pass_for_this_machine(jitaku_factory) -> None:
    server: Jitaku = jitaku_factory()
    server.init("alice@example.test")
    server.start()
    assert httpx.get(base(server) + "/api/health").status_code == 200  # this machine, trusted by default
    for name, value in (
        ("X-Forwarded-Host", "mail.example.test"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-For", "192.0.2.1"),
        ("Forwarded", "for=192.0.2.1"),
        ("X-Real-IP", "192.0.2.1"),
        ("Via", "1.1 proxy"),
    ):
        assert httpx.get(base(server) + "/api/health", headers={name: value}).status_code == 401, name


def test_every_response_carries_the_security_headers(guarded: Jitaku) -> None:
    with httpx.Client(base_url=base(guarded)) as client:
        answers = [
            client.get("/login"),
            submit(client, "/login", {**ADMIN, "password": "wrong"}),
            client.get("/admin/health"),
            client.get("/api/health"),
            client.get("/lists/sota@example.test/subscribe"),
            client.get("/lists/confirm/nothing"),
            client.get("/nothing-here"),
            client.post("/login", content=b"x" * 100_000),
            submit(client, "/login", ADMIN),
            client.get("/admin/health"),
            client.get("/"),  # the blog's home, drawn
            client.get("/"),  # and answered from the kept pages, ahead of the middlewares
        ]
    for answer in answers:
        for name, value in HEADERS.items():
            assert answer.headers.get(name) == value, (answer.request.url, name)
        policy = answer.headers.get("content-security-policy", "")
        assert "frame-ancestors 'none'" in policy and "default-src 'none'" in policy and "script-src" not in policy
    assert [answer.status_code for answer in answers] == [200, 401, 303, 401, 200, 404, 404, 413, 303, 200, 200, 200]


def test_the_session_cookie_is_secure_over_https(network_namespace, jitaku_factory) -> None:
    """Port 443 of a network namespace of our own (always free) serves TLS; the plain port does not."""
    server: Jitaku = jitaku_factory()
    server.settings["web"]["listen"].append("127.0.0.1:443")
    server.settings["web"]["trust_loopback"] = False
    server.write_config()
    server.init("alice@example.test")
    server.start()
    tls = ssl.create_default_context(cafile=str(server.dir / "tls" / "cert.pem"))
    tls.check_hostname = False
    wait_for_port(443)
    with httpx.Client(base_url="https://127.0.0.1", verify=tls) as client:
        assert "; secure" in client.get("/login").headers["set-cookie"].lower()  # the CSRF cookie (web/csrf.py)
        cookie = submit(client, "/login", ADMIN).headers["set-cookie"].lower()
        assert "; secure" in cookie and "samesite=strict" in cookie and "httponly" in cookie
        assert client.get("/api/health").status_code == 200
    with httpx.Client(base_url=base(server)) as client:
        assert "secure" not in submit(client, "/login", ADMIN).headers["set-cookie"].lower()


def test_no_redirect_leads_to_another_site(guarded: Jitaku) -> None:
    """A Location a browser reads as another site (`//evil.example`, `/\\evil.example`) would make this one a
    springboard for phishing: the login's `next`, the old /health and a path not in NFC all stay here."""
    with httpx.Client(base_url=base(guarded)) as client:
        for target in ("//evil.example/", "/\\evil.example/", "/\t/evil.example/", "https://evil.example/"):
            answer = submit(client, "/login", ADMIN | {"next": target})
            location = answer.headers["location"]
            assert answer.status_code == 303 and location.startswith("/") and location[1] not in "/\\\t", target
        moved = client.get("/health?range=7d&x=//evil.example")
        assert moved.status_code == 301 and moved.headers["location"].startswith("/admin/health?range=7d")
        assert client.get("/admin/health?x=1").status_code == 200
    moved = httpx.get(base(guarded) + "//evil.example/e%CC%81")
    assert moved.status_code == 301 and moved.headers["location"] == "/evil.example/%C3%A9"
