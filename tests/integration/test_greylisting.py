"""Greylisting at the MX's RCPT (issue 23), end to end: a real `jitaku serve` with `[filters.greylist]` on and a
delay of 2 seconds, mail sent with swaks as a stranger's server sends it. A first try of each recipient waits
(451 4.7.1), a retry within the delay still waits, a retry after it is delivered; each recipient of a
transaction waits on its own; submission after AUTH never waits; an exempt network passes at once; a big
sender's domain (greylist.BIG_SENDERS) whose SPF passes, published by the tests' DNS server, passes at once, and
the same domain failing SPF waits. The day's greylisted count is in `jitaku check` and on the dashboard."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from jitaku.mail.filters.greylist import REPLY
from jitaku.store import mailstore
from tests.integration.harness import Jitaku
from tests.peers import TEST_SOA, Zone, rejection, swaks, wait_until

ALICE, BOB = "alice@example.test", "bob@example.test"
STRANGER = "someone@remote.example"
DELAY = 2.0


def send(server: Jitaku, *to: str, sender: str = STRANGER) -> Any:
    return swaks("--server", f"127.0.0.1:{server.smtp_port}", "--from", sender, "--to", ",".join(to), "--body", "hi")


def inbox(server: Jitaku, address: str) -> int:
    return len(server.read(lambda s: mailstore.list_messages(s, address, "INBOX")))


def start(factory: Any, dns_port: int | None = None, **greylist: Any) -> Jitaku:
    server: Jitaku = factory(dns_port)
    server.settings["filters"] = {"greylist": {"enabled": True, "delay": DELAY, **greylist}}
    server.settings["health"] = {"interval": 1}  # the monitor checks, and the tallies reach the store, each second
    server.write_config()
    server.init(ALICE, BOB)
    server.start()
    return server


@pytest.fixture
def greylisting(jitaku_factory: Any) -> Iterator[Jitaku]:
    yield start(jitaku_factory)


def wait_out(since: float) -> None:
    time.sleep(max(0.0, since + DELAY + 0.2 - time.monotonic()))


def test_a_first_try_waits_a_retry_after_the_delay_is_delivered(greylisting: Jitaku) -> None:
    before = time.monotonic()
    first = send(greylisting, ALICE)
    tried = time.monotonic()  # the first try was recorded before this
    assert first.returncode != 0 and rejection(first.stdout) == REPLY, first.stdout
    again = send(greylisting, ALICE)
    if time.monotonic() - before < DELAY:  # both tries within the delay, as on any machine not overloaded
        assert rejection(again.stdout) == REPLY, again.stdout
    assert inbox(greylisting, ALICE) == 0
    wait_out(tried)
    later = send(greylisting, ALICE)
    assert later.returncode == 0, later.stdout
    assert inbox(greylisting, ALICE) == 1
    log = greylisting.log()
    assert "greylisted" in log and "client=127.0.0.1" in log and f"<{STRANGER}>" in log and ALICE in log, log

    # a passed triplet passes at once from then on; a second recipient of the same transaction waits on its own
    both = send(greylisting, ALICE, BOB)
    tried = time.monotonic()
    assert both.returncode == 0 and REPLY in both.stdout, both.stdout  # BOB's RCPT answered 451, ALICE's 250
    assert inbox(greylisting, ALICE) == 2 and inbox(greylisting, BOB) == 0
    wait_out(tried)
    assert send(greylisting, BOB).returncode == 0
    assert inbox(greylisting, BOB) == 1


def test_submission_after_auth_is_never_greylisted(greylisting: Jitaku) -> None:
    auth = ("--auth", "PLAIN", "--auth-user", ALICE, "--auth-password", "secret-password")  # the harness's password
    server = f"127.0.0.1:{greylisting.submission_port}"
    submitted = swaks("--server", server, *auth, "--from", ALICE, "--to", BOB, "--body", "hi")
    assert submitted.returncode == 0, submitted.stdout
    assert inbox(greylisting, BOB) == 1
    assert "greylisted" not in greylisting.log()


def test_an_exempt_network_passes_at_once(jitaku_factory: Any) -> None:
    server = start(jitaku_factory, exempt=["127.0.0.0/8"])
    result = send(server, ALICE, BOB)
    assert result.returncode == 0, result.stdout
    assert inbox(server, ALICE) == 1 and inbox(server, BOB) == 1


@pytest.mark.parametrize(
    ("sender", "spf", "waits"),
    [
        ("newsletter@gmail.com", "v=spf1 ip4:127.0.0.1 -all", False),  # a big sender, SPF passes: exempt
        ("newsletter@gmail.com", "v=spf1 ip4:192.0.2.1 -all", True),  # the same domain, SPF fails: not vouched for
        ("newsletter@remote.example", "v=spf1 ip4:127.0.0.1 -all", True),  # SPF passes, but not a big sender
    ],
)
def test_a_big_senders_domain_whose_spf_passes_is_not_greylisted(
    jitaku_factory: Any, dns_zone: tuple[Zone, int], sender: str, spf: str, waits: bool
) -> None:
    zone, port = dns_zone
    domain = sender.rpartition("@")[2]
    zone.add(f'{domain}. 300 IN TXT "{spf}"')
    zone.add(TEST_SOA)
    server = start(jitaku_factory, port)
    result = send(server, ALICE, sender=sender)
    if waits:
        assert result.returncode != 0 and rejection(result.stdout) == REPLY, result.stdout
        assert inbox(server, ALICE) == 0
    else:
        assert result.returncode == 0, result.stdout
        assert inbox(server, ALICE) == 1
        stored = server.message(ALICE, server.mailbox(ALICE)[0]["uid"])
        assert b"spf=pass" in stored  # the pipeline's own SPF check agrees with the one greylisting made


def test_the_days_greylisted_count_is_in_jitaku_check_and_on_the_dashboard(greylisting: Jitaku) -> None:
    assert rejection(send(greylisting, ALICE, BOB).stdout) == REPLY  # each recipient waits: 2 greylisted

    def counted() -> dict[str, Any] | None:
        done = greylisting.cli("check", "filters", "--json", check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        (result,) = json.loads(done.stdout)
        return result if result["metrics"]["greylisted"] == 2 else None

    result = wait_until(counted, timeout=15, interval=0.5)
    assert result["check"] == "filters" and result["state"] == "ok"
    assert result["metrics"].get("watching", True) is True  # greylisting alone is something to watch
    assert "greylisting is on" in result["sentence"] and "2 greylisted" in result["sentence"], result

    def shown() -> str | None:  # the dashboard, from what the daemon's monitor found
        page = httpx.get(f"http://127.0.0.1:{greylisting.web_port}/admin/health")
        return page.text if "2 greylisted" in page.text else None

    assert "greylisting is on" in wait_until(shown, timeout=15, interval=0.5)
