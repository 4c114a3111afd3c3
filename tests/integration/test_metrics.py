"""`/metrics` on a running `jitaku serve`, scraped with httpx as Prometheus does (a bearer token) and read
back with prometheus_client's own parser: mail in, deliveries by outcome, the queue, checks and disks."""

from __future__ import annotations

from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.harness import Jitaku
from tests.integration.test_health import Machine
from tests.integration.test_outbound import submit
from tests.peers import swaks, wait_until

TOKEN = "scrape-me-0123456789abcdef"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: Jitaku, **headers: str) -> httpx.Response:
    return httpx.get(f"http://127.0.0.1:{server.web_port}/metrics", headers=headers)


def samples(server: Jitaku) -> Samples:
    response = scrape(server, Authorization=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def one(found: Samples, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def test_metrics_count_mail_deliveries_queue_checks_and_disks(jitaku_factory, dns_zone, sink_factory, tmp_path) -> None:
    zone, dns_port = dns_zone
    taking = sink_factory()
    sink_factory("-f", "rcpt", host="127.0.0.2", port=taking.port)  # refuses for good: a bounce
    sink_factory("-r", "rcpt", host="127.0.0.3", port=taking.port)  # refuses for now: tried again in an hour
    for number, domain in enumerate(("remote.test", "refusing.test", "later.test"), start=1):
        zone.add(f"{domain}. 300 IN MX 10 mx.{domain}.")
        zone.add(f"mx.{domain}. 300 IN A 127.0.0.{number}")
    machine = Machine(tmp_path / "machine")
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["web"]["metrics_token"] = TOKEN
    server.settings["delivery"] = {"port": taking.port}
    server.settings["queue"] = {"retry_min": 3600, "retry_max": 7200}
    server.settings["health"] = {
        "interval": 1,
        "raid": {"mdstat": str(machine.mdstat), "lsblk": str(machine.lsblk)},
        "smart": {"smartctl": str(machine.smartctl)},
    }
    server.write_config()
    server.init("alice@example.test")
    server.start()

    sent = swaks("--server", f"127.0.0.1:{server.smtp_port}", "--to", "alice@example.test", "--from", "a@x.test")
    assert sent.returncode == 0, sent.stdout
    submit(server, "dave@remote.test,erin@refusing.test,fred@later.test")

    def counted() -> Samples | None:
        found = samples(server)
        outcomes = [one(found, "jitaku_deliveries_total", outcome=o) for o in ("delivered", "bounced", "deferred")]
        return found if outcomes == [1, 1, 1] and one(found, "jitaku_messages_received_total") == 1 else None

    found = wait_until(counted, timeout=15)
    assert one(found, "jitaku_smtp_sessions_total") == 1
    assert one(found, "jitaku_queue_messages") == len(server.queue()) == 1  # fred waits
    assert 0 < (one(found, "jitaku_queue_oldest_age_seconds") or 0) < 60

    def checked() -> Samples | None:
        found = samples(server)
        ran = {labels: value for (name, labels), value in found.items() if name == "jitaku_check_state"}
        return found if {"queue", "services", "raid", "smart", "diskage"} <= {dict(k)["check"] for k in ran} else None

    found = wait_until(checked, timeout=15)
    assert one(found, "jitaku_check_state", check="services") == 0  # ok
    assert (
        one(found, "jitaku_check_state", check="raid") == 0 and one(found, "jitaku_check_watching", check="raid") == 1
    )
    assert (
        one(found, "jitaku_raid_members_working", array="md1")
        == one(found, "jitaku_raid_members_wanted", array="md1")
        == 2
    )
    assert one(found, "jitaku_disk_temperature_celsius", disk="sda") == 34
    assert one(found, "jitaku_disk_reallocated_sectors", disk="sdb") == 0
    assert one(found, "jitaku_disk_power_on_seconds", disk="sda") == 12034 * 3600  # the fixture's power_on_time


def test_metrics_are_refused_without_the_token_and_absent_when_none_is_set(jitaku_factory, server: Jitaku) -> None:
    assert scrape(server).status_code == 404  # no [web] metrics_token: no /metrics
    guarded: Jitaku = jitaku_factory(name="guarded")  # a data directory of its own: one serve per directory
    guarded.settings["web"]["metrics_token"] = TOKEN
    guarded.write_config()
    guarded.init()
    guarded.start()
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}, {"Authorization": f"Basic {TOKEN}"}):
        refused = scrape(guarded, **headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
        assert "jitaku_" not in refused.text
    assert 'error="invalid_token"' in scrape(guarded, Authorization="Bearer wrong").headers["www-authenticate"]
    openmetrics = scrape(guarded, Authorization=f"Bearer {TOKEN}", Accept="application/openmetrics-text")
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.endswith("# EOF\n")
    families: dict[str, Any] = {
        f.name: f for f in text_string_to_metric_families(scrape(guarded, Authorization=f"Bearer {TOKEN}").text)
    }
    assert families["jitaku_messages_received"].type == "counter"
    assert families["jitaku_queue_messages"].type == "gauge" and families["jitaku_queue_messages"].documentation
