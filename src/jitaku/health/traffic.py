"""Traffic and incoming mail against their usual level for the hour: in the story the server was
unreachable from outside all night and the only sign was a flat graph, noticed next morning. This
notices the flat graph for you.

The usual level is the median of the same hour on earlier days (a week of results is kept), so a quiet
night is not news but a quiet afternoon is."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import psutil

from jitaku.config import TrafficCheckSettings
from jitaku.health.result import Result, State

MIN_DAYS = 2  # earlier days of the same hour needed before judging
DAYS = 7  # how far back "usual" looks


def counters(interface: str) -> tuple[int, int]:
    """Bytes received and sent so far, by INTERFACE or by every interface but loopback."""
    nics = psutil.net_io_counters(pernic=True)
    if interface and interface not in nics:
        raise LookupError(f"there is no interface {interface} (there are {', '.join(sorted(nics))})")
    chosen = [nics[interface]] if interface else [c for name, c in nics.items() if name != "lo"]
    return sum(c.bytes_recv for c in chosen), sum(c.bytes_sent for c in chosen)


def _size(rate: float) -> str:
    return f"{rate / 1024:.1f} KiB/s"


def same_hour(now: float) -> list[tuple[float, float]]:
    """This local hour on each of the DAYS before today, as (start, end) times."""
    hour = time.localtime(now)
    windows = []
    for days in range(1, DAYS + 1):
        start = time.mktime((hour.tm_year, hour.tm_mon, hour.tm_mday - days, hour.tm_hour, 0, 0, 0, 0, -1))
        windows.append((start, start + 3600))
    return windows


def usual(history: Sequence[tuple[float, Result]], metric: str = "rx_rate") -> float | None:
    """The median of METRIC in HISTORY (this hour on earlier days); None until MIN_DAYS are known."""
    values = [(at, result.metrics[metric]) for at, result in history if metric in result.metrics]
    days = {time.localtime(at).tm_yday for at, _value in values}
    return statistics.median(value for _at, value in values) if len(days) >= MIN_DAYS else None


def check(
    settings: TrafficCheckSettings,
    received: int,
    sent: int,
    mail_in: int,
    now: float,
    previous: Result | None,
    history: Sequence[tuple[float, Result]],
) -> Result:
    """MAIL_IN: messages that arrived in the last hour; HISTORY: results from this hour on earlier days."""
    where = settings.interface or "every interface"
    metrics = {"rx_bytes": float(received), "tx_bytes": float(sent), "at": now, "mail_in": float(mail_in)}
    hour = time.strftime("%H:00", time.localtime(now))
    mail = usual(history, "mail_in")
    quiet_mail = (
        f"no mail has come in for an hour, where {mail:.0f} messages usually do at {hour}"
        if mail is not None and mail >= settings.min_mail and mail_in == 0
        else ""
    )
    before = previous.metrics if previous else {}
    elapsed = now - before.get("at", now)
    if elapsed <= 0 or received < before.get("rx_bytes", 0.0) or sent < before.get("tx_bytes", 0.0):
        return Result("traffic", State.OK, f"counting the traffic on {where}.", metrics)  # first look, or a reboot
    rx_rate = (received - before["rx_bytes"]) / elapsed
    metrics |= {"rx_rate": rx_rate, "tx_rate": (sent - before["tx_bytes"]) / elapsed}
    normal = usual(history)
    flat = normal is not None and normal >= settings.min_usual and rx_rate < settings.drop * normal
    if flat or quiet_mail:
        fallen = (
            f"traffic in on {where} has fallen to {_size(rx_rate)}, far below the usual {_size(normal or 0)} at {hour}"
        )
        said = "; ".join(part for part in (fallen if flat else "", quiet_mail) if part)
        return Result("traffic", State.WARNING, f"{said}: are we still reachable from outside?", metrics)
    if normal is None:
        return Result("traffic", State.OK, f"{_size(rx_rate)} in on {where}; still learning what is usual.", metrics)
    return Result("traffic", State.OK, f"{_size(rx_rate)} in on {where} (usual at {hour}: {_size(normal)}).", metrics)
