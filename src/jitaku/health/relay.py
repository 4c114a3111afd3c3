"""MyDNS's relay takes mail without a login, from the address MyDNS last heard from: so it works only
while a MyDNS updater keeps telling it ours (the story's ISP closed port 25 and a relayhost was needed)."""

from __future__ import annotations

from collections.abc import Sequence

from jitaku.config import Settings
from jitaku.health.result import Result, State
from jitaku.store.ddns import State as RecordState

MYDNS = "mydns.jp"


def _ip_authenticated_mydns(settings: Settings) -> bool:
    relay = settings.relay
    if relay is None or relay.username:
        return False
    host = relay.host.lower().rstrip(".")
    return host == MYDNS or host.endswith("." + MYDNS)


def check(settings: Settings, states: Sequence[RecordState]) -> Result | None:
    if not _ip_authenticated_mydns(settings):
        return None
    assert settings.relay is not None
    relay = f"the relayhost {settings.relay.host} takes mail only from the address MyDNS last heard from"
    relay_ja = f"リレーホスト {settings.relay.host} は、MyDNS に最後に通知されたアドレスからのメールしか受け付けません"
    records = [record for record in settings.ddns if record.provider == "mydns" and record.ipv4]
    if not records:
        return Result(
            "relay",
            State.WARNING,
            f'{relay}, and no [[ddns]] record with provider = "mydns" tells it ours.',
            ja=f'{relay_ja}。しかし provider = "mydns" の [[ddns]] レコードがなく、'
            "このサーバーのアドレスを MyDNS に通知していません。",
        )
    known = {state.name: state for state in states if state.family == 4}
    for record in records:
        state = known.get(record.name)
        if state is not None and state.address and state.sent_address == state.address and not state.fatal:
            return Result(
                "relay",
                State.OK,
                f"{relay}, and it has heard {state.address} from us for {record.name}.",
                ja=f"{relay_ja}。MyDNS には {record.name} として {state.address} を通知済みです。",
            )
    errors = [(record.name, known[record.name].error if record.name in known else None) for record in records]
    why = "; ".join(f"{name}: {error or 'not told our current address yet'}" for name, error in errors)
    why_ja = "、".join(f"{name}: {error or 'まだ現在のアドレスを通知していません'}" for name, error in errors)
    return Result(
        "relay",
        State.WARNING,
        f"{relay}, and the MyDNS updater is failing ({why}).",
        ja=f"{relay_ja}。しかし MyDNS の更新が失敗しています（{why_ja}）。",
    )
