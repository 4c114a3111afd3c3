"""The health dashboard and its JSON API: over HTTP (httpx), behind an admin login, and drawn by headless
Chromium at a phone's and a desktop's width (screenshots in artifacts/screenshots/)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.browser import Chromium
from tests.integration.forms import submit
from tests.integration.harness import Jitaku
from tests.peers import swaks, wait_until

ARTIFACTS = Path(__file__).parent.parent.parent / "artifacts" / "screenshots"


@pytest.fixture
def watched(jitaku_factory, dns_zone) -> Jitaku:
    """A running jitaku whose monitor checks every second, with admin alice and plain user bob; its DNS is
    `dns_zone`, empty until a test publishes."""
    server: Jitaku = jitaku_factory(dns_zone[1])
    server.settings["health"] = {"interval": 1}
    server.write_config()
    server.init("alice@example.test", "bob@example.org")
    server.start()
    return server


def base(server: Jitaku) -> str:
    return f"http://127.0.0.1:{server.web_port}"


def test_the_dashboard_shows_each_checks_state_sentence_and_graphs(watched: Jitaku) -> None:
    def checked() -> dict[str, dict[str, str]]:
        found = {check["check"]: check for check in httpx.get(base(watched) + "/api/health").json()["checks"]}
        return found if {"services", "queue"} <= set(found) else {}

    by_name = wait_until(checked, timeout=10)
    assert by_name["services"]["state"] == "ok" and by_name["services"]["sentence"] == "all 5 listeners answer."
    assert by_name["queue"]["sentence"] == "the outbound queue is empty."
    assert set(by_name["queue"]) == {"check", "state", "sentence", "metrics", "at"}
    for _ in range(2):  # two strangers' messages to the MX
        sent = swaks("--server", f"127.0.0.1:{watched.smtp_port}", "--to", "alice@example.test", "--from", "a@x.test")
        assert sent.returncode == 0, sent.stdout
    time.sleep(2.5)  # a few rounds of graphs, and the tallies' flush (every interval here)
    graphs = httpx.get(base(watched) + "/api/graphs?range=24h").json()
    queue = next(g for g in graphs if g["title"] == "Queue, messages")
    assert queue["lines"][0]["label"] == "size" and {value for _at, value in queue["lines"][0]["points"]} == {0.0}
    mail = next(g for g in graphs if g["title"].startswith("Mail per hour"))
    today = {line["label"]: sum(value for _at, value in line["points"]) for line in mail["lines"]}
    assert today == {"in": 2.0, "out": 0.0, "SMTP sessions": 2.0}  # wait_for_port's bare connects are no sessions
    assert httpx.get(base(watched) + "/api/graphs?range=1y").status_code == 400
    page = httpx.get(base(watched) + "/admin/health?range=7d")
    assert page.status_code == 200
    assert "all 5 listeners answer." in page.text and "<polyline" in page.text and "Traffic in, KiB/s" in page.text
    assert "jitaku._domainkey.example.test" in page.text and "missing" in page.text  # every record we need
    assert "log out" not in page.text  # let in for being on loopback: nobody logged in


def test_the_dashboard_shows_every_dns_record_we_need_beside_what_dns_serves(watched: Jitaku, dns_zone) -> None:
    zone, _ = dns_zone
    zone.add(watched.cli("dns", "records").stdout)  # as `jitaku dns records` prints them
    zone.records = [record for record in zone.records if str(record.rname) != "_dmarc.example.org."]
    zone.add('_dmarc.example.org. 300 IN TXT "v=DMARC1; p=none"')
    shown = {(d["name"], d["type"]): d for d in httpx.get(base(watched) + "/api/health").json()["dns"]}
    assert shown["jitaku._domainkey.example.test", "TXT"]["state"] == "ok"
    assert (
        shown["example.org", "MX"]["state"] == "ok" and shown["example.org", "MX"]["value"] == "10 mail.example.test."
    )
    assert (shown["_dmarc.example.org", "TXT"]["state"], shown["_dmarc.example.org", "TXT"]["served"]) == (
        "wrong",
        ["v=DMARC1; p=none"],
    )
    assert shown["mail.example.test", "A"]["state"] == "unknown" and shown[None, "PTR"]["value"] == "mail.example.test."
    assert len(shown) == 10  # A, PTR, and MX, SPF, DKIM, DMARC for each domain
    page = httpx.get(base(watched) + "/admin/health").text
    assert '<td class="data critical"><span class="state">wrong</span>: v=DMARC1; p=none</td>' in page


def test_from_another_address_the_dashboard_needs_an_admins_login(network_namespace, jitaku_factory) -> None:
    """The web listener on the LAN address of a namespace of our own: the client comes from 192.0.2.10, not
    from loopback, so the default trust of loopback does not apply."""
    network_namespace.ip("addr", "add", "192.0.2.10/24", "dev", "home0")
    server: Jitaku = jitaku_factory()
    port = server.fixed_port("web")  # the same on both addresses
    server.settings["web"]["listen"] = [f"192.0.2.10:{port}", f"127.0.0.1:{port}"]
    server.write_config()
    server.init("alice@example.test", "bob@example.org")
    server.start()
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{server.web_port}/api/health").status_code == 200, timeout=10)
    with httpx.Client(base_url=f"http://192.0.2.10:{server.web_port}") as client:
        assert client.get("/api/health").status_code == 401
        assert client.get("/admin/status.json").status_code == 401
        away = client.get("/admin/health")
        assert away.status_code == 303 and away.headers["location"] == "/login?next=/admin/health"
        assert "Log in with an admin" in client.get("/login").text
        form = {"address": "alice@example.test", "password": "wrong", "next": "/admin/health"}
        assert submit(client, "/login", form).status_code == 401
        not_admin = {"address": "bob@example.org", "password": "secret-password", "next": "/admin/health"}
        assert submit(client, "/login", not_admin).status_code == 401
        good = {"address": "alice@example.test", "password": "secret-password", "next": "//evil.example/"}
        in_ = submit(client, "/login", good)
        assert in_.status_code == 303 and in_.headers["location"] == "/admin/health"  # never off-site
        assert "samesite=strict" in in_.headers["set-cookie"].lower() and "httponly" in in_.headers["set-cookie"]
        assert client.get("/admin/health").status_code == 200 and client.get("/api/health").status_code == 200
        assert "log out" in client.get("/admin/health").text
        assert client.get("/admin/").status_code == 200
        submit(client, "/login", {}, action="/logout")
        assert client.get("/api/health").status_code == 401
        for _ in range(5):
            submit(client, "/login", form)
        assert submit(client, "/login", good).status_code == 429  # five failures: this client waits
    assert "event=web_login client=192.0.2.10 user=alice@example.test" in server.log()
    assert (server.dir / "web.secret").stat().st_mode & 0o777 == 0o600
    assert "secret-password" not in server.log()


def test_trust_loopback_false_asks_loopback_clients_to_log_in_too(jitaku_factory) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["web"]["trust_loopback"] = False
    server.write_config()
    server.init("alice@example.test")
    server.start()
    assert httpx.get(base(server) + "/api/health").status_code == 401
    assert httpx.get(base(server) + "/admin/health").headers["location"] == "/login?next=/admin/health"


# Read from the page as laid out: each graph's marks (drawn: with a size) and those outside its box, the elements
# whose right edge passes the viewport, the page's width, and whether it offers to log out.
LAYOUT = """(() => {
  const within = (mark, box) => mark.left >= box.left - 0.5 && mark.right <= box.right + 0.5
    && mark.top >= box.top - 0.5 && mark.bottom <= box.bottom + 0.5;
  const graphs = [...document.querySelectorAll("figure svg")].map(svg => {
    const box = svg.getBoundingClientRect();
    const marks = [...svg.querySelectorAll("polyline, circle")].map(mark => mark.getBoundingClientRect());
    return {
      title: svg.getAttribute("aria-label"),
      drawn: marks.filter(mark => mark.width > 0 || mark.height > 0).length,
      outside: marks.filter(mark => !within(mark, box)).length,
    };
  });
  const past = [...document.body.querySelectorAll("*")]
    .filter(element => element.getBoundingClientRect().right > document.documentElement.clientWidth + 0.5)
    .map(element => element.outerHTML.slice(0, 100));
  return {graphs, past, scrollWidth: document.documentElement.scrollWidth, text: document.body.innerText};
})()"""


def test_headless_chromium_draws_the_dashboard_from_the_first_point_on_a_phone_and_a_desktop(watched: Jitaku) -> None:
    """A server seconds old has one point in each graph (its first samples share one of the 24 hours' 120
    buckets, its first message one hour): each is drawn, within its box, on a page no wider than a phone's
    screen, which offers no "log out" to a visitor who never logged in (here: trusted on loopback)."""
    sent = swaks("--server", f"127.0.0.1:{watched.smtp_port}", "--to", "alice@example.test", "--from", "a@x.test")
    assert sent.returncode == 0, sent.stdout

    def first_points() -> dict[str, list[int]]:
        found = httpx.get(base(watched) + "/api/graphs?range=24h").json()
        counts = {graph["title"]: [len(line["points"]) for line in graph["lines"]] for graph in found}
        mail = next(title for title in counts if title.startswith("Mail per hour"))
        return counts if counts["Traffic in, KiB/s"] == [1] and 1 in counts[mail] else {}

    counts = wait_until(first_points, timeout=15)
    assert {count for lines in counts.values() for count in lines} <= {0, 1}  # one point, or none yet
    with_data = {title for title, lines in counts.items() if any(lines)}
    assert {"Traffic in, KiB/s", "Queue, messages"} <= with_data
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    url = base(watched) + "/admin/health"
    with Chromium() as browser:
        for name, width, mobile in (("phone", 375, True), ("desktop", 1280, False)):
            shot = ARTIFACTS / f"dashboard-{name}.png"
            shot.unlink(missing_ok=True)
            browser.open(url, width, mobile=mobile)
            page = browser.evaluate(LAYOUT)
            browser.screenshot(shot)
            assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert "all 5 listeners answer." in page["text"] and "log out" not in page["text"]
            assert {graph["title"] for graph in page["graphs"]} == set(counts)
            assert {graph["title"] for graph in page["graphs"] if graph["drawn"]} == with_data, name
            assert [graph for graph in page["graphs"] if graph["outside"]] == [], name
            assert (page["scrollWidth"], page["past"]) == (width, []), name
    # the page as served, under its Content-Security-Policy (no script, inline styles): Chromium reports no violation
    chromium = ["chromium", "--headless", "--no-sandbox", "--disable-gpu"]
    shown = subprocess.run(
        [*chromium, "--enable-logging=stderr", "--v=0", "--dump-dom", url], capture_output=True, text=True, timeout=90
    )
    assert "all 5 listeners answer." in shown.stdout and "<svg" in shown.stdout
    assert [line for line in shown.stderr.splitlines() if "Content Security Policy" in line] == []
