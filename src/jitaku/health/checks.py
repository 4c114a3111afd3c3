"""Every check, run once (`jitaku check`)."""

from __future__ import annotations

import time

from jitaku.config import Settings
from jitaku.health import ddns, relay
from jitaku.health.result import Result
from jitaku.store import Database
from jitaku.store import ddns as ddns_rows


async def run_all(settings: Settings, database: Database) -> list[Result]:
    states = await database.read(ddns_rows.all_states)
    results = [ddns.check(settings, states, time.time()), relay.check(settings, states)]
    return [result for result in results if result is not None]
