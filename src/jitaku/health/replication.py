"""Whether every acknowledged write is on both machines: replication to the standby synchronous (RPO 0), or
asynchronous since the standby was lost, when writes since then exist only here (jitaku.ha.sync turns it one way
or the other; this says which, for `jitaku check` and the alerts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitaku.health.result import Result, State, not_watching

if TYPE_CHECKING:
    from jitaku.ha.sync import Facts

CHECK = "replication"
LOST_AT = "asynchronous_since"  # the metric that carries, from one result to the next, when the standby was lost


def check(facts: Facts, timeout: float, now: float, lost_at: float | None = None) -> Result:
    if facts.in_recovery:
        return not_watching(
            CHECK,
            "this server is a standby; its primary watches replication",
            "このサーバーはスタンバイです。レプリケーションはプライマリが監視します",
        )
    if not facts.standbys and not facts.names:
        return not_watching(
            CHECK,
            "no standby is set up (no replication slot)",
            "スタンバイが設定されていません（レプリケーションスロットがありません）",
        )
    lag = max((standby.behind for standby in facts.standbys), default=-1)
    if facts.names:
        named = [standby for standby in facts.standbys if standby.name in facts.names or "*" in facts.names]
        streaming = [standby.name for standby in named if standby.streaming]
        metrics = {"synchronous": 1.0, "lag_bytes": float(lag)}
        if streaming:
            return Result(
                CHECK,
                State.OK,
                f"replication to {streaming[0]} is synchronous: every acknowledged write is on both machines (RPO 0).",
                metrics,
                ja=f"{streaming[0]} へのレプリケーションは同期です。"
                "確認済みの書き込みはすべて両方のマシンにあります（RPO 0）。",
            )
        name = " or ".join(facts.names)
        return Result(
            CHECK,
            State.WARNING,
            f"standby {name} unreachable: commits wait for it, up to [ha] sync_timeout ({timeout:g} s), "
            "before replication turns asynchronous.",
            metrics,
            ja=f"スタンバイ {name} に届きません。"
            f"コミットは [ha] sync_timeout（{timeout:g} 秒）まで待ち、その後レプリケーションは非同期になります。",
        )
    standby = next((s for s in facts.standbys if s.state), facts.standbys[0])
    metrics = {"synchronous": 0.0, "lag_bytes": float(lag)}
    if lost_at is not None:
        metrics[LOST_AT] = lost_at
    if lost_at is not None or not standby.state:  # lost (a hung one may keep its connection): for how long, if known
        since = f" for {max(0.0, now - lost_at):.0f} s" if lost_at is not None else ""
        since_ja = f"{max(0.0, now - lost_at):.0f} 秒間" if lost_at is not None else ""
        said = f"standby {standby.name} unreachable{since}"
        said_ja = f"スタンバイ {standby.name} に{since_ja}届きません"
    else:
        said = f"standby {standby.name} is catching up ({standby.behind} bytes behind)"
        said_ja = f"スタンバイ {standby.name} は追いつき中です（{standby.behind} バイト遅れ）"
    return Result(
        CHECK,
        State.CRITICAL,
        f"{said}: replication is asynchronous, writes since then exist only here (RPO > 0).",
        metrics,
        ja=f"{said_ja}。レプリケーションは非同期で、それ以降の書き込みはこのマシンにしかありません（RPO > 0）。",
    )


def carried_lost_at(previous: Result | None) -> float | None:
    """When the standby was lost, as the last result said (the daemon's, for `jitaku check` beside it)."""
    if previous is None or previous.state == State.OK:
        return None
    return previous.metrics.get(LOST_AT)
