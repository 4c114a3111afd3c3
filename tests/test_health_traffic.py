"""The traffic check: rates from interface counters, judged against the same hour on earlier days."""

from __future__ import annotations

import time

from jitaku.config import TrafficCheckSettings
from jitaku.health import traffic
from jitaku.health.result import Result, State

NOW = time.mktime((2026, 11, 25, 14, 30, 0, 0, 0, -1))  # 14:30 local time
KIB = 1024.0


def earlier(days: int, rate: float, hour_offset: float = 0.0) -> tuple[float, Result]:
    at = NOW - days * 86400 + hour_offset * 3600
    return at, Result("traffic", State.OK, "", {"rx_rate": rate})


def last_round(received: float, sent: float = 0.0) -> Result:
    return Result("traffic", State.OK, "", {"rx_bytes": received, "tx_bytes": sent, "at": NOW - 60})


def mail(sessions: int) -> traffic.Mail:
    return traffic.Mail(sessions=sessions, mail_in=sessions // 2, mail_out=1)


HISTORY = [earlier(1, 100 * KIB), earlier(2, 120 * KIB), earlier(3, 110 * KIB)]  # 14:30 on the days before


def test_a_flat_graph_at_a_busy_hour_is_a_warning() -> None:
    result = traffic.check(
        TrafficCheckSettings(), 1_000_000 + 60 * 512, 0, mail(5), NOW, last_round(1_000_000), HISTORY
    )
    assert result.state == State.WARNING
    assert result.sentence == (
        "traffic in on every interface has fallen to 0.5 KiB/s, far below the usual 110.0 KiB/s at 14:00: "
        "are we still reachable from outside?"
    )
    assert result.ja == (
        "すべてのインターフェース の受信が 0.5 KiB/s に落ちています（14時台のいつもは 110.0 KiB/s）。"
        "外から届かなくなっていませんか？"
    )
    assert result.metrics["rx_rate"] == 512.0
    assert (result.metrics["smtp_sessions"], result.metrics["mail_in"], result.metrics["mail_out"]) == (5, 2, 1)


def test_usual_traffic_is_ok_and_a_quiet_hour_is_judged_by_its_own_past() -> None:
    busy = traffic.check(TrafficCheckSettings(), 60 * 105 * 1024, 0, mail(5), NOW, last_round(0), HISTORY)
    assert busy.state == State.OK
    assert busy.sentence == (
        "105.0 KiB/s in on every interface (usual at 14:00: 110.0 KiB/s); 5 SMTP sessions in the last hour."
    )
    night = NOW - 10 * 3600  # 04:30, when the usual 1 KiB/s is below min_usual: a drop then says nothing
    nights = [earlier(1, 1 * KIB, -10), earlier(2, 1 * KIB, -10)]
    at_night = Result("traffic", State.OK, "", {"rx_bytes": 0.0, "tx_bytes": 0.0, "at": night - 60})
    quiet = traffic.check(TrafficCheckSettings(), 6, 0, mail(0), night, at_night, nights)
    assert quiet.state == State.OK and "(usual at 04:00: 1.0 KiB/s); 0 SMTP sessions" in quiet.sentence


def test_an_hour_without_smtp_sessions_at_a_busy_hour_is_a_warning_even_with_traffic() -> None:
    history = [(at, Result("traffic", State.OK, "", {**r.metrics, "smtp_sessions": 12.0})) for at, r in HISTORY]
    busy = 60 * 105 * 1024
    quiet = traffic.check(TrafficCheckSettings(), busy, 0, mail(0), NOW, last_round(0), history)
    assert quiet.state == State.WARNING and quiet.metrics["smtp_sessions"] == 0.0
    assert quiet.sentence == (
        "no SMTP session has come in for an hour, where 12 usually do at 14:00: are we still reachable from outside?"
    )
    assert quiet.ja == (
        "この1時間、SMTP の接続が一つもありません（14時台のいつもは 12 件）。外から届かなくなっていませんか？"
    )
    assert traffic.check(TrafficCheckSettings(), busy, 0, mail(4), NOW, last_round(0), history).state == State.OK
    first_look = traffic.check(TrafficCheckSettings(), busy, 0, mail(0), NOW, None, history)
    assert first_look.state == State.WARNING  # sessions need no rate: a restart does not hide a silent MX


def test_the_usual_is_this_hour_on_each_of_the_seven_days_before() -> None:
    windows = traffic.same_hour(NOW)
    assert len(windows) == 7 and all(end - start == 3600 for start, end in windows)
    for days, (start, end) in enumerate(windows, 1):
        assert start <= NOW - days * 86400 < end  # no DST change in the week before NOW
        assert time.localtime(start).tm_hour == 14 and time.localtime(start).tm_min == 0


def test_it_learns_first_and_survives_a_counter_reset() -> None:
    learning = traffic.check(TrafficCheckSettings(), 6000, 0, mail(1), NOW, last_round(0), HISTORY[:1])
    assert learning.state == State.OK
    assert learning.sentence == (
        "0.1 KiB/s in on every interface, still learning what is usual; 1 SMTP session in the last hour."
    )
    first = traffic.check(TrafficCheckSettings(interface="eth0"), 10, 0, mail(0), NOW, None, HISTORY)
    assert first.sentence.startswith("counting the traffic on eth0;") and "rx_rate" not in first.metrics
    assert first.ja == "eth0 の通信量を数え始めました。この1時間の SMTP 接続は 0 件です。"
    rebooted = traffic.check(TrafficCheckSettings(), 10, 0, mail(0), NOW, last_round(5_000_000), HISTORY)
    assert rebooted.state == State.OK and "rx_rate" not in rebooted.metrics


def test_counters_come_from_the_interfaces() -> None:
    received, sent = traffic.counters("lo")
    assert received >= 0 and sent >= 0
    try:
        traffic.counters("nosuch0")
    except LookupError as missing:
        assert "there is no interface nosuch0" in str(missing)
    else:
        raise AssertionError("an unknown interface must be named")
