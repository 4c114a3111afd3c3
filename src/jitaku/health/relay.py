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
    records = [record for record in settings.ddns if record.provider == "mydns" and record.ipv4]
    if not records:
        return Result("relay", State.WARNING, f'{relay}, and no [[ddns]] record with provider = "mydns" tells it ours.')
    known = {state.name: state for state in states if state.family == 4}
    for record in records:
        state = known.get(record.name)
        if state is not None and state.address and state.sent_address == state.address and not state.fatal:
            return Result("relay", State.OK, f"{relay}, and it has heard {state.address} from us for {record.name}.")
    failing = "; ".join(
        f"{record.name}: {(state.error if state else None) or 'not told our current address yet'}"
        for record in records
        for state in [known.get(record.name)]
    )
    return Result("relay", State.WARNING, f"{relay}, and the MyDNS updater is failing ({failing}).")
