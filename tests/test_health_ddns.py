"""The ddns and relay checks, judged from the updater's state rows: what `jitaku check` says and how grave."""

from __future__ import annotations

from pathlib import Path

import pytest

from jitaku.config import Settings, parse
from jitaku.health import ddns, relay
from jitaku.health.result import State
from jitaku.store.ddns import State as RecordState

NOW = 1_800_000_000.0
MYDNS = '[[ddns]]\nprovider = "mydns"\nname = "home.example.org"\nusername = "mydns1"\npassword = "pw"\n'


def settings(more: str = MYDNS) -> Settings:
    return parse('domains = ["example.org"]\n' + more, Path("jitaku.toml"))


def row(**fields: object) -> RecordState:
    values: dict[str, object] = {"address": "203.0.113.7", "address_at": NOW - 30, "sent_address": "203.0.113.7"}
    values["published"] = "203.0.113.7"
    values.update(fields)
    return RecordState("home.example.org", 4, "mydns", "key", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "expected", "sentence", "ja"),
    [
        (
            row(),
            State.OK,
            "home.example.org (IPv4) points at 203.0.113.7.",
            "home.example.org (IPv4) は 203.0.113.7 を指しています。",
        ),
        (
            None,
            State.WARNING,
            "home.example.org (IPv4) has not been checked yet.",
            "home.example.org (IPv4) はまだ確認されていません。",
        ),
        (
            row(address_at=NOW - 3600),
            State.WARNING,
            "the updater has not checked home.example.org (IPv4) for 60 minutes.",
            "DDNS の更新処理が home.example.org (IPv4) を 60 分間確認していません。",
        ),
        (
            row(published="192.0.2.1", sent_address="192.0.2.1", error="MyDNS unreachable: ConnectError"),
            State.CRITICAL,
            "DNS answers 192.0.2.1 for home.example.org (IPv4), but we are at 203.0.113.7 (MyDNS unreachable: ConnectError).",
            "home.example.org (IPv4) の DNS の答えは 192.0.2.1 ですが、このサーバーのアドレスは 203.0.113.7 です"
            "（MyDNS unreachable: ConnectError）。",
        ),
        (
            row(fatal=True, error="MyDNS refused the master ID and password (HTTP 401)"),
            State.CRITICAL,
            "home.example.org (IPv4) is no longer updated: MyDNS refused the master ID and password (HTTP 401); "
            "mend [[ddns]] or run `jitaku ddns update --force`.",
            "home.example.org (IPv4) はもう更新されていません: MyDNS refused the master ID and password (HTTP 401)。"
            "[[ddns]] を直すか、`jitaku ddns update --force` を実行してください。",
        ),
        (
            row(error="no authoritative server answered for home.example.org"),
            State.WARNING,
            "home.example.org (IPv4): no authoritative server answered for home.example.org.",
            "home.example.org (IPv4): no authoritative server answered for home.example.org。",
        ),
    ],
)
def test_ddns_check_judges_each_record(state: RecordState | None, expected: State, sentence: str, ja: str) -> None:
    result = ddns.check(settings(), [state] if state else [], NOW)
    assert result is not None
    assert (result.check, result.state, result.sentence, result.ja) == ("ddns", expected, sentence, ja)
    assert result.metrics == {"records": 1.0, "wrong": float(expected != State.OK)}


def test_ddns_check_names_only_what_is_wrong_and_is_absent_without_records() -> None:
    both = settings(MYDNS + "ipv6 = true\n")
    v6 = RecordState("home.example.org", 6, "mydns", "key", "2001:db8::7", NOW - 30, published="2001:db8::1")
    result = ddns.check(both, [row(), v6], NOW)
    assert result is not None and result.state == State.CRITICAL and result.metrics == {"records": 2.0, "wrong": 1.0}
    assert result.sentence == "DNS answers 2001:db8::1 for home.example.org (IPv6), but we are at 2001:db8::7."
    assert result.ja == (
        "home.example.org (IPv6) の DNS の答えは 2001:db8::1 ですが、このサーバーのアドレスは 2001:db8::7 です。"
    )
    assert ddns.check(settings(""), [], NOW) is None


RELAY = '[relay]\nhost = "relay.mydns.jp"\nport = 587\n'


def test_mydns_relay_without_a_mydns_updater_is_a_warning() -> None:
    result = relay.check(settings(RELAY), [])
    assert result is not None and result.state == State.WARNING
    assert result.sentence == (
        "the relayhost relay.mydns.jp takes mail only from the address MyDNS last heard from, "
        'and no [[ddns]] record with provider = "mydns" tells it ours.'
    )
    assert result.ja.startswith("リレーホスト relay.mydns.jp は、MyDNS に最後に通知されたアドレスからのメールしか")
    assert 'provider = "mydns" の [[ddns]] レコードがなく' in result.ja


def test_mydns_relay_with_a_failing_or_behind_updater_is_a_warning_and_ok_once_it_has_told() -> None:
    config = settings(RELAY + MYDNS)
    failing = relay.check(config, [row(fatal=True, error="MyDNS refused the master ID and password (HTTP 401)")])
    assert failing is not None and failing.state == State.WARNING
    assert "updater is failing (home.example.org: MyDNS refused the master ID" in failing.sentence
    assert "MyDNS の更新が失敗しています（home.example.org: MyDNS refused the master ID" in failing.ja
    behind = relay.check(config, [row(sent_address="192.0.2.1")])
    assert (
        behind is not None and behind.state == State.WARNING and "not told our current address yet" in behind.sentence
    )
    assert "home.example.org: まだ現在のアドレスを通知していません" in behind.ja
    told = relay.check(config, [row()])
    assert told is not None and told.state == State.OK and "heard 203.0.113.7 from us" in told.sentence
    assert told.ja.endswith("MyDNS には home.example.org として 203.0.113.7 を通知済みです。")


def test_other_relays_and_logged_in_mydns_relays_are_not_this_checks_business() -> None:
    assert relay.check(settings('[relay]\nhost = "smtp.example.net"\n'), []) is None
    logged_in = '[relay]\nhost = "relay.mydns.jp"\nusername = "u"\npassword = "p"\n'
    assert relay.check(settings(logged_in), []) is None
