"""The Prometheus exposition of one reading of the store: every family named jitaku_*, with HELP and TYPE,
units in the names, one sample per disk, array and DDNS record, read back by prometheus_client's parser."""

from __future__ import annotations

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from jitaku.health.result import Result, State, not_watching
from jitaku.store import tallies
from jitaku.store.ddns import State as RecordState
from jitaku.store.queue import Backlog
from jitaku.web.metrics import Exposition, Figures

NOW = 1_800_000_000.0


def exposed(figures: Figures) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Each sample's value by its name and labels."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(Exposition(figures, NOW)).decode()):
        assert family.name.startswith("jitaku_") and family.documentation and family.type in ("counter", "gauge")
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_disks_arrays_checks_and_ddns_records_each_get_their_samples() -> None:
    smart = Result(
        "smart", State.WARNING, "…", {"sda.temperature": 41.0, "sda.reallocated": 8.0, "sdb.temperature": 30}
    )
    diskage = Result("diskage", State.OK, "…", {"sda.hours": 100.0})
    raid = Result("raid", State.WARNING, "…", {"md1.working": 1.0, "md1.wanted": 2.0, "md1.progress": 27.5})
    figures = Figures(
        Backlog(3, NOW - 90, "4.4.1 connection refused"),
        {tallies.MAIL_IN: 5, tallies.MAIL_OUT: 4, tallies.BOUNCED: 1},
        {
            "smart": (NOW - 10, smart),
            "diskage": (NOW - 10, diskage),
            "raid": (NOW - 5, raid),
            "dns": (NOW - 5, not_watching("dns", "no resolvers", "リゾルバがありません")),
        },
        [
            RecordState(
                "home.example.org", 4, "mydns", "k", address="192.0.2.1", address_at=NOW - 30, published="192.0.2.1"
            ),
            RecordState(
                "home.example.org", 6, "mydns", "k", address="2001:db8::1", published="2001:db8::2", error="401"
            ),
            RecordState("new.example.org", 4, "mydns", "k"),
        ],
    )
    found = exposed(figures)
    assert found["jitaku_messages_received_total"] == {(): 5.0} and found["jitaku_smtp_sessions_total"] == {(): 0.0}
    assert found["jitaku_deliveries_total"] == {
        (("outcome", "delivered"),): 4.0,
        (("outcome", "bounced"),): 1.0,
        (("outcome", "deferred"),): 0.0,
    }
    assert found["jitaku_queue_messages"] == {(): 3.0} and found["jitaku_queue_oldest_age_seconds"] == {(): 90.0}
    assert found["jitaku_check_state"] == {
        (("check", "diskage"),): 0.0,
        (("check", "dns"),): 0.0,
        (("check", "raid"),): 1.0,
        (("check", "smart"),): 1.0,
    }
    assert found["jitaku_check_watching"][(("check", "dns"),)] == 0.0
    assert found["jitaku_check_watching"][(("check", "raid"),)] == 1.0
    assert found["jitaku_check_timestamp_seconds"][(("check", "raid"),)] == NOW - 5
    assert found["jitaku_disk_temperature_celsius"] == {(("disk", "sda"),): 41.0, (("disk", "sdb"),): 30.0}
    assert found["jitaku_disk_reallocated_sectors"] == {(("disk", "sda"),): 8.0}
    assert found["jitaku_disk_power_on_seconds"] == {(("disk", "sda"),): 360_000.0}
    assert found["jitaku_raid_members_working"] == {(("array", "md1"),): 1.0}
    assert found["jitaku_raid_sync_ratio"] == {(("array", "md1"),): 0.275}
    v4, v6 = (("family", "ipv4"), ("name", "home.example.org")), (("family", "ipv6"), ("name", "home.example.org"))
    fresh = (("family", "ipv4"), ("name", "new.example.org"))
    assert found["jitaku_ddns_published_right"] == {v4: 1.0, v6: 0.0}  # the new record's answer is not known yet
    assert found["jitaku_ddns_update_failing"] == {v4: 0.0, v6: 1.0, fresh: 0.0}
    assert found["jitaku_ddns_checked_timestamp_seconds"] == {v4: NOW - 30}


def test_an_empty_store_is_zeros_not_missing_families() -> None:
    found = exposed(Figures(Backlog(0, None, None), {}, {}, []))
    assert found["jitaku_queue_messages"] == {(): 0.0} and found["jitaku_queue_oldest_age_seconds"] == {(): 0.0}
    assert found["jitaku_deliveries_total"][(("outcome", "delivered"),)] == 0.0
    assert "jitaku_check_state" not in found  # no check has run: no samples, though its HELP and TYPE are there
