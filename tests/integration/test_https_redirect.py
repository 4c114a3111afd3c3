"""A browser opening http:// of the site lands on https:// once a real certificate is served (one a CA signed, put in
tls/ as certbot or ACME would), and stays on http:// while the self-signed one of `jitaku init` is all there is."""

from __future__ import annotations

import httpx

from tests.certificates import signed_by_test_ca
from tests.integration.browser import Chromium
from tests.integration.harness import Jitaku
from tests.peers import wait_until

HOST = "127.0.11.31"  # a loopback address of this test's own: ports 80 and 443 are the web's plain and HTTPS ones
NAME = "mail.example.test"
FLAGS = [
    f"--host-resolver-rules=MAP {NAME} {HOST}",
    "--ignore-certificate-errors",  # the test CA is not one Chromium trusts
    "--disable-features=HttpsUpgrades",  # Chromium's own try of https:// first would hide what port 80 answers
]


def _landed(browser: Chromium) -> tuple[str, str]:
    browser.open(f"http://{NAME}/", width=1000)
    return browser.evaluate("location.href"), browser.evaluate("document.querySelector('h1, title').textContent")


def test_a_browser_goes_over_to_https_once_the_certificate_is_real(jitaku_factory) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["web"]["listen"] += [f"{HOST}:80", f"{HOST}:443"]
    server.write_config()
    server.init()
    server.start()
    with Chromium(flags=FLAGS) as browser:
        browser.call("Network.enable")
        browser.call("Network.setCacheDisabled", cacheDisabled=True)  # the page of before is no answer of now
        where, heading = _landed(browser)
        assert where == f"http://{NAME}/" and heading.strip()

        signed_by_test_ca(server.dir / "tls", [NAME])
        wait_until(lambda: httpx.get(f"http://{HOST}/", headers={"host": NAME}).status_code == 301, timeout=30)
        assert _landed(browser) == (f"https://{NAME}/", heading)

    https = httpx.get(f"https://{HOST}/", headers={"host": NAME}, verify=False)
    assert https.headers["strict-transport-security"] == "max-age=31536000"
    local = httpx.get(f"http://127.0.0.1:{server.web_port}/", timeout=30)  # the loopback port of a default install
    assert local.status_code == 200 and "strict-transport-security" not in local.headers
    challenge = httpx.get(f"http://{HOST}/.well-known/acme-challenge/none", headers={"host": NAME}, timeout=30)
    assert challenge.status_code == 404  # answered on port 80, not sent to HTTPS


def test_port_80_alone_stays_plain_http_with_a_real_certificate(jitaku_factory) -> None:
    """No port 443 of ours (TLS ended by a router or a proxy, or the certificate only for mail): a redirect would
    send every visitor to an HTTPS where nothing listens."""
    alone = "127.0.11.61"  # this test's own loopback address
    server: Jitaku = jitaku_factory()
    server.settings["web"]["listen"] += [f"{alone}:80"]
    server.write_config()
    server.init()
    server.start()
    signed_by_test_ca(server.dir / "tls", [NAME])
    answer = httpx.get(f"http://{alone}/", headers={"host": NAME}, timeout=30)  # the certificate: looked at per request
    assert answer.status_code == 200 and "location" not in answer.headers
