"""Whether every acknowledged write is on both machines: replication to the standby synchronous (RPO 0), or
asynchronous since the standby was lost, when writes since then exist only here (jitaku.ha.sync turns it one way
or the other; this says which, for `jitaku check` and the alerts)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from jitaku.health.result import Result, State, not_watching

if TYPE_CHECKING:
    from jitaku.ha.sync import Facts

CHECK = "replication"
LOST_AT = "asynchronous_since"  # the metric that carries, from one result to the next, when the standby was lost
LAG_SECONDS_WARNING = 300.0  # seconds a standby may be behind, replaying, before it is worth a warning
LAG_BYTES_WARNING = 64 << 20  # bytes of WAL a standby may lack before it is worth a warning, however recent
# WAL a slot with no standby connected may hold on the primary before it is worth a warning: it grows until the
# standby is back, or until max_slot_wal_keep_size (jitaku.ha.standby) takes the slot away
HELD_BYTES_WARNING = 1 << 30


def on_standby(found: dict[str, Any], secret: bool = True) -> Result:
    """The standby's side, from jitaku.ha.status: whether it receives its primary's WAL, and how far behind it
    is. Caught up means nothing left to replay (lag_bytes 0), not received == replayed: what was received may
    itself lag what the primary has. Without the replication SECRET (DIR/ha/replication.secret) it mirrors none
    of the primary's secret files (jitaku.ha.secret_files): a warning, else it would serve unnoticed without
    them once promoted."""
    primary = found["peer"] or "its primary"
    if found["sync_state"] != "streaming":
        return Result(
            CHECK,
            State.CRITICAL,
            f"this standby receives nothing from {primary}: see DIR/postgres/log.",
            {"lag_bytes": -1},
            ja=f"このスタンバイは {primary} から何も受け取っていません。DIR/postgres/log を見てください。",
        )
    lag, seconds = found["lag_bytes"] or 0, found["lag_seconds"] or 0.0
    behind = lag > LAG_BYTES_WARNING or (lag > 0 and seconds > LAG_SECONDS_WARNING)
    sentence, ja = (
        f"streaming from {primary}, {lag} bytes behind ({seconds:.0f} s).",
        (f"{primary} からストリーミング中、{lag} バイト遅れ（{seconds:.0f} 秒）。"),
    )
    if not secret:
        sentence += " No DIR/ha/replication.secret here: the primary's DKIM keys and TLS certificate are not copied."
        ja += "DIR/ha/replication.secret がないため、プライマリの DKIM 鍵と TLS 証明書はコピーされません。"
    return Result(CHECK, State.WARNING if behind or not secret else State.OK, sentence, {"lag_bytes": lag}, ja=ja)


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
        stale = _stale_slots(facts)
        if streaming and stale:
            return Result(
                CHECK,
                State.WARNING,
                f"replication to {streaming[0]} is synchronous (RPO 0), but {stale}.",
                metrics,
                ja=f"{streaming[0]} へのレプリケーションは同期です（RPO 0）。ただし {stale}。",
            )
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
        if standby.held > 0:
            said += f" (its slot holds {standby.held >> 20} MB of WAL here)"
            said_ja += f"（そのスロットはここに WAL を {standby.held >> 20} MB 保持しています）"
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


def _stale_slots(facts: Facts) -> str:
    """The slots no standby uses that hold much WAL here, as a clause; "" when none does."""
    held = [s for s in facts.standbys if not s.state and s.held > HELD_BYTES_WARNING]
    return "; ".join(
        f"slot {s.name}, with no standby connected, holds {s.held >> 20} MB of WAL here "
        f"(drop it with SELECT pg_drop_replication_slot('{s.name}') if that standby is gone for good)"
        for s in held
    )


def carried_lost_at(previous: Result | None) -> float | None:
    """When the standby was lost, as the last result said (the daemon's, for `jitaku check` beside it)."""
    if previous is None or previous.state == State.OK:
        return None
    return previous.metrics.get(LOST_AT)
