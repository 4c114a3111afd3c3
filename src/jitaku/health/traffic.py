"""Traffic and incoming mail against their usual level for the hour: in the story the server was
unreachable from outside all night and the only sign was a flat graph, noticed next morning. This
notices the flat graph for you.

Inbound SMTP sessions count too: a night without a single connection to the MX, at an hour that
usually has a few, is the same news even when other traffic hides it.

The usual level is the median of the same hour on earlier days (a week of results is kept), so a quiet
night is not news but a quiet afternoon is."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from jitaku.config import TrafficCheckSettings
from jitaku.health.result import Result, State
from jitaku.words import counted

MIN_DAYS = 2  # earlier days of the same hour needed before judging
DAYS = 7  # how far back "usual" looks


NET_DEV = Path("/proc/net/dev")


def counters(interface: str) -> tuple[int, int]:
    """Bytes received and sent so far, by INTERFACE or by every interface but loopback."""
    nics = _interfaces()
    if interface and interface not in nics:
        raise LookupError(f"there is no interface {interface} (there are {', '.join(sorted(nics))})")
    chosen = [nics[interface]] if interface else [c for name, c in nics.items() if name != "lo"]
    return sum(received for received, _sent in chosen), sum(sent for _received, sent in chosen)


def _interfaces() -> dict[str, tuple[int, int]]:
    """Each interface's bytes received and sent, from Linux's /proc/net/dev as psutil reads it: psutil itself
    would cost the daemon ~1 MB for this one table, every round (issue 20's memory budget)."""
    nics = {}
    for line in NET_DEV.read_text().splitlines()[2:]:  # two lines of column titles
        name, _colon, figures = line.partition(":")
        fields = figures.split()  # received: bytes packets errs drop fifo frame compressed multicast; sent: ...
        nics[name.strip()] = (int(fields[0]), int(fields[8]))
    return nics


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


@dataclass(frozen=True)
class Mail:
    """The last hour's SMTP sessions on the MX listener, messages accepted there, and recipients sent on."""

    sessions: int
    mail_in: int
    mail_out: int


def check(
    settings: TrafficCheckSettings,
    received: int,
    sent: int,
    mail: Mail,
    now: float,
    previous: Result | None,
    history: Sequence[tuple[float, Result]],
) -> Result:
    """HISTORY: results from this hour on earlier days."""
    where = settings.interface or "every interface"
    where_ja = settings.interface or "すべてのインターフェース"
    metrics = {"rx_bytes": float(received), "tx_bytes": float(sent), "at": now}
    metrics |= {"smtp_sessions": float(mail.sessions), "mail_in": float(mail.mail_in), "mail_out": float(mail.mail_out)}
    hour = time.strftime("%H:00", time.localtime(now))
    hour_ja = f"{time.localtime(now).tm_hour}時台"
    before = previous.metrics if previous else {}
    elapsed = now - before.get("at", now)
    rx_rate = None  # unknown on a first look, or after a reboot reset the counters
    if elapsed > 0 and received >= before.get("rx_bytes", 0.0) and sent >= before.get("tx_bytes", 0.0):
        rx_rate = (received - before["rx_bytes"]) / elapsed
        metrics |= {"rx_rate": rx_rate, "tx_rate": (sent - before["tx_bytes"]) / elapsed}
    normal = usual(history)
    sessions = usual(history, "smtp_sessions")
    fallen: list[tuple[str, str]] = []
    if rx_rate is not None and normal is not None and normal >= settings.min_usual and rx_rate < settings.drop * normal:
        fallen.append(
            (
                f"traffic in on {where} has fallen to {_size(rx_rate)}, far below the usual {_size(normal)} at {hour}",
                f"{where_ja} の受信が {_size(rx_rate)} に落ちています（{hour_ja}のいつもは {_size(normal)}）",
            )
        )
    if sessions is not None and sessions >= settings.min_sessions and mail.sessions == 0:
        fallen.append(
            (
                f"no SMTP session has come in for an hour, where {sessions:.0f} usually do at {hour}",
                f"この1時間、SMTP の接続が一つもありません（{hour_ja}のいつもは {sessions:.0f} 件）",
            )
        )
    if fallen:
        return Result(
            "traffic",
            State.WARNING,
            f"{'; '.join(en for en, _ja in fallen)}: are we still reachable from outside?",
            metrics,
            ja=f"{'。'.join(ja for _en, ja in fallen)}。外から届かなくなっていませんか？",
        )
    sessions_said = f"; {counted(mail.sessions, 'SMTP session')} in the last hour."
    sessions_ja = f"この1時間の SMTP 接続は {mail.sessions} 件です。"
    if rx_rate is None:
        return Result(
            "traffic",
            State.OK,
            f"counting the traffic on {where}{sessions_said}",
            metrics,
            ja=f"{where_ja} の通信量を数え始めました。{sessions_ja}",
        )
    if normal is None:
        return Result(
            "traffic",
            State.OK,
            f"{_size(rx_rate)} in on {where}, still learning what is usual{sessions_said}",
            metrics,
            ja=f"{where_ja} の受信は {_size(rx_rate)}、いつもの量はまだ学習中です。{sessions_ja}",
        )
    return Result(
        "traffic",
        State.OK,
        f"{_size(rx_rate)} in on {where} (usual at {hour}: {_size(normal)}){sessions_said}",
        metrics,
        ja=f"{where_ja} の受信は {_size(rx_rate)}（{hour_ja}のいつもは {_size(normal)}）。{sessions_ja}",
    )
