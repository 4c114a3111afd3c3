"""The filters as `jitaku check` and the web admin show them (issue 23): a real `jitaku serve` with a real
clamd, rspamd and spamd; one health result per engine, named by it, ok while it answers its ping and a warning
(exit 1) when it does not; the day's counts of what the filters did, as tallied by the daemon; and the allow and
block lists on /admin/filters, added and removed with the checks of `jitaku filter`, each form behind its CSRF
token, the page in Chromium on a phone and a desktop with no serious finding of axe-core."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jitaku.mail.policy import DIRECTORY_CHECK_SECONDS
from tests.integration.browser import Chromium
from tests.integration.engines.clamav import Clamd, clamd  # noqa: F401 (a fixture)
from tests.integration.engines.rspamd import Rspamd, rspamd_engine  # noqa: F401 (a fixture)
from tests.integration.engines.spamd import Spamd, spamd  # noqa: F401 (a fixture)
from tests.integration.forms import submit
from tests.integration.harness import Jitaku
from tests.integration.test_admin_moderation import ARTIFACTS, LAYOUT, SIZES
from tests.integration.test_filters import ALICE, BOB, GTUBE, engines_on, rule, send, start_filtered
from tests.peers import Zone, free_port, rejection, wait_until

ENGINES = ("rspamd", "spamassassin", "clamav")


def check(server: Jitaku, *names: str) -> tuple[int, dict[str, dict[str, Any]]]:
    """`jitaku check --json` (of NAMES only, when given): its exit code and its results by name."""
    done = server.cli("check", *names, "--json", check=False)
    assert done.returncode in (0, 1, 2), done.stderr
    return done.returncode, {r["check"]: r for r in json.loads(done.stdout)}


@pytest.fixture
def filtered(
    jitaku_factory: Any,
    dns_zone: tuple[Zone, int],
    clamd: Clamd,  # noqa: F811
    rspamd_engine: Rspamd,  # noqa: F811
    spamd: Spamd,  # noqa: F811
) -> Iterator[Jitaku]:
    """The three engines on; the monitor checks, and the tallies reach the store, each second."""
    filters = engines_on(clamd, rspamd_engine, spamd, timeout=5)
    yield start_filtered(jitaku_factory, dns_zone, filters, health={"interval": 1})


def test_each_engine_is_a_check_result_with_the_days_counts(filtered: Jitaku) -> None:
    code, results = check(filtered)
    for name in ENGINES:
        assert results[name]["state"] == "ok", results[name]
        assert "answers" in results[name]["sentence"]
        assert results[name]["metrics"] == {"rejected": 0, "junked": 0, "viruses": 0, "unchecked": 0, "greylisted": 0}
    assert "filters" not in results
    assert check(filtered, "filters")[0] == 0
    refused = send(filtered, "--header", "Subject: test", "--body", GTUBE)
    assert rejection(refused.stdout).startswith("550 5.7.1"), refused.stdout
    rule(filtered, "allow", "--user", BOB, "someone@remote.example")
    junked = send(filtered, "--header", "Subject: test", "--body", GTUBE, to=(ALICE, BOB))
    assert junked.returncode == 0, junked.stdout  # Bob allows the sender: Alice's copy goes to Junk

    def counted() -> dict[str, Any] | None:
        metrics = check(filtered, "filters")[1]["rspamd"]["metrics"]
        return metrics if metrics["junked"] else None

    metrics = wait_until(counted, timeout=15, interval=0.5)
    assert metrics == {"rejected": 1, "junked": 1, "viruses": 0, "unchecked": 0, "greylisted": 0}
    sentence = check(filtered, "filters")[1]["clamav"]["sentence"]
    assert "1 rejected, 1 junked" in sentence and "greylisted" not in sentence  # greylisting is off

    def shown() -> dict[str, dict[str, Any]]:  # the dashboard, from what the daemon's monitor found
        web = f"http://127.0.0.1:{filtered.web_port}"
        found = {c["check"]: c for c in httpx.get(f"{web}/api/health").json()["checks"]}
        return found if all(found.get(n, {}).get("metrics", {}).get("junked") for n in ENGINES) else {}

    dashboard = wait_until(shown, timeout=15, interval=0.5)
    assert {dashboard[n]["state"] for n in ENGINES} == {"ok"}
    page = httpx.get(f"http://127.0.0.1:{filtered.web_port}/admin/health")
    assert page.status_code == 200 and all(f"{n} at " in page.text for n in ENGINES)


def test_an_engine_that_does_not_answer_is_a_warning_naming_it(
    jitaku_factory: Any,
    clamd: Clamd,  # noqa: F811
    rspamd_engine: Rspamd,  # noqa: F811
    spamd: Spamd,  # noqa: F811
) -> None:
    server: Jitaku = jitaku_factory()
    server.settings["filters"] = engines_on(clamd, rspamd_engine, spamd, timeout=5)
    server.settings["filters"]["spamassassin"] = {"address": f"127.0.0.1:{free_port()}"}
    server.settings["health"] = {"enabled": False, "interval": 1}
    server.write_config()
    server.init(ALICE)
    server.start()
    code, results = check(server, "filters")
    assert code == 1
    assert results["spamassassin"]["state"] == "warning" and "connection refused" in results["spamassassin"]["sentence"]
    assert results["rspamd"]["state"] == "ok" and results["clamav"]["state"] == "ok"
    assert send(server, "--body", "hello").returncode == 0  # delivered unchecked, and counted so
    metrics = wait_until(lambda: check(server, "filters")[1]["rspamd"]["metrics"]["unchecked"] or None, timeout=15)
    assert metrics == 1
    server.stop()
    server.settings["filters"]["rspamd"]["url"] = f"http://127.0.0.1:{free_port()}"
    server.write_config()
    code, results = check(server, "filters")
    assert code == 1 and results["rspamd"]["state"] == "warning"


def test_with_no_engine_on_the_check_says_it_watches_nothing(jitaku_factory: Any) -> None:
    server: Jitaku = jitaku_factory()
    server.init(ALICE)
    code, results = check(server, "filters")
    assert code == 0 and list(results) == ["filters"]
    assert results["filters"]["state"] == "ok" and results["filters"]["metrics"]["watching"] is False
    assert "not watching" in results["filters"]["sentence"]


@pytest.fixture
def admin_site(jitaku_factory: Any) -> Iterator[Jitaku]:
    server: Jitaku = jitaku_factory()
    server.init(ALICE, BOB)
    server.cli("filter", "block", "spam.example")
    server.cli("filter", "allow", "--user", BOB, "friend@remote.example")
    server.cli("filter", "allow", "--domain", "example.test", "partner.example")
    server.start()
    yield server


def rules(server: Jitaku) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(server.cli("filter", "list", "--json").stdout)
    return found


def test_the_lists_are_added_and_removed_on_the_web_with_the_checks_of_jitaku_filter(admin_site: Jitaku) -> None:
    server = admin_site
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", timeout=30) as client:
        page = client.get("/admin/filters")
        assert page.status_code == 200
        for shown in ("spam.example", "friend@remote.example", BOB, "partner.example", "everyone"):
            assert shown in page.text
        assert 'href="/admin/filters"' in page.text
        before = rules(server)
        for data, why in (
            ({"scope": "user", "owner": "nobody@example.test", "action": "block", "pattern": "x.example"}, "no user"),
            ({"scope": "domain", "owner": "other.example", "action": "block", "pattern": "x.example"}, "not one of"),
            ({"scope": "global", "owner": "", "action": "block", "pattern": "not a pattern"}, "not an address nor"),
            ({"scope": "global", "owner": "", "action": "delete", "pattern": "x.example"}, "allow or block"),
            ({"scope": "world", "owner": "", "action": "block", "pattern": "x.example"}, "global, domain or user"),
        ):
            refused = submit(client, "/admin/filters", data)
            assert refused.status_code == 400 and why in refused.text.lower() and "nothing changed" in refused.text
        assert submit(client, "/admin/filters", {"id": "x1"}, action="/admin/filters/remove").status_code == 400
        assert submit(client, "/admin/filters", {"id": "99999"}, action="/admin/filters/remove").status_code == 404
        client.get("/admin/filters")
        forged = {"scope": "global", "owner": "", "action": "block", "pattern": "forged.example"}
        assert client.post("/admin/filters", data=forged).status_code == 403
        assert client.post("/admin/filters/remove", data={"id": str(before[0]["id"])}).status_code == 403
        assert rules(server) == before
        added = submit(
            client, "/admin/filters", {"scope": "user", "owner": ALICE, "action": "block", "pattern": "@Bad.Example"}
        )
        assert added.status_code == 303 and "Rule saved." in client.get(added.headers["location"]).text
        new = [r for r in rules(server) if r not in before]
        assert [(r["scope"], r["owner"], r["action"], r["pattern"]) for r in new] == [
            ("user", ALICE, "block", "bad.example")
        ]
        removed = submit(client, "/admin/filters", {"id": str(new[0]["id"])}, action="/admin/filters/remove")
        assert removed.status_code == 303 and rules(server) == before
    refused = send(server, "--body", "hi", sender="x@spam.example")  # what the page lists is what SMTP applies
    assert rejection(refused.stdout) == "550 5.7.1 Message refused: sender blocked", refused.stdout


def test_a_rule_changed_while_the_daemon_runs_counts_for_the_mail_a_second_after(admin_site: Jitaku) -> None:
    server = admin_site
    blocked = send(server, "--body", "hi", sender="x@spam.example")
    assert rejection(blocked.stdout) == "550 5.7.1 Message refused: sender blocked", blocked.stdout
    (spam,) = [r for r in rules(server) if r["pattern"] == "spam.example"]
    rule(server, "remove", str(spam["id"]))
    taken = send(server, "--body", "hi", sender="x@spam.example")
    assert taken.returncode == 0, taken.stdout
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}", timeout=30) as client:
        added = submit(
            client, "/admin/filters", {"scope": "global", "owner": "", "action": "block", "pattern": "late.example"}
        )
        assert added.status_code == 303
    time.sleep(DIRECTORY_CHECK_SECONDS)
    late = send(server, "--body", "hi", sender="x@late.example")
    assert rejection(late.stdout) == "550 5.7.1 Message refused: sender blocked", late.stdout


def test_the_filters_page_reads_well_on_a_phone_and_a_desktop(admin_site: Jitaku) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with Chromium(timeout=120) as browser:
        for size, width, mobile in SIZES:
            shot = ARTIFACTS / f"admin-filters-{size}.png"
            shot.unlink(missing_ok=True)
            browser.open(f"http://127.0.0.1:{admin_site.web_port}/admin/filters", width, mobile=mobile)
            page = browser.evaluate(LAYOUT)
            browser.screenshot(shot)
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5_000
            assert "partner.example" in page["text"], size
            assert (page["scrollWidth"], page["past"]) == (width, []), size
            found = [v for v in browser.accessibility_violations() if v["impact"] in ("serious", "critical")]
            assert found == [], (size, found)
