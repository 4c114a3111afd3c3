"""How the pair stands, as this box's cluster sees it (`jitaku ha status`, the standby's replication check).

A primary knows its standbys from pg_stat_replication (one row per connected walsender) and, when none is
connected, from its physical replication slots: a standby that was set up and is gone is "disconnected", not
forgotten; a primary that never had one says "none". A standby knows its primary from pg_stat_wal_receiver; how
far behind it is, in bytes, is the distance from the end of WAL the primary last told it of (latest_end_lsn) to
what it has replayed."""

from __future__ import annotations

from typing import Any

from jitaku.config import Config
from jitaku.ha import fence, role

NO_STANDBY = "none"  # a primary's sync_state when no standby was ever set up against it

PRIMARY_ROWS = """
SELECT coalesce(nullif(application_name, ''), client_addr::text, 'local'), client_addr::text, state, sync_state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,
       extract(epoch FROM coalesce(replay_lag, interval '0'))::float8, sent_lsn::text, replay_lsn::text
FROM pg_stat_replication ORDER BY application_name
"""
SLOTS = """
SELECT slot_name, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots
WHERE slot_type = 'physical' AND NOT active ORDER BY slot_name
"""
STANDBY_ROW = """
SELECT r.status, r.sender_host, r.sender_port, r.received_tli, r.slot_name,
       pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text,
       greatest(pg_wal_lsn_diff(r.latest_end_lsn, pg_last_wal_replay_lsn()), 0)::bigint,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true
"""
# A primary's timeline is its current WAL file's (the first 8 hex digits of its name): pg_control_checkpoint()'s
# lags until the first checkpoint after a promotion. A standby's is the one its WAL receiver gets (received_tli),
# or, with no receiver, the last checkpoint's it replayed.
PRIMARY_TIMELINE = "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int"
REPLAYED_TIMELINE = "SELECT timeline_id FROM pg_control_checkpoint()"


def status(config: Config) -> dict[str, Any]:
    """The pair as this box sees it: role, peer, sync_state, lag_bytes, lag_seconds, received_lsn,
    replayed_lsn, timeline, holds_address, fenced (DIR/ha/fenced is there: this box must not serve as the primary,
    whatever its cluster's role; jitaku.ha.fence) and, on a primary, every standby it knows in `standbys`."""
    if not role.postgresql(config):
        return _alone(config)
    with role.connect(config) as connection:
        standby = bool(role.one(connection, "SELECT pg_is_in_recovery()"))
        if standby:
            row = connection.execute(STANDBY_ROW).fetchone()
            assert row is not None
            found = _as_standby(row)
            timeline = found["timeline"] if found["timeline"] is not None else role.one(connection, REPLAYED_TIMELINE)
        else:
            timeline = role.one(connection, PRIMARY_TIMELINE)
            found = _as_primary(
                connection.execute(PRIMARY_ROWS).fetchall(), connection.execute(SLOTS).fetchall(), timeline
            )
    if found.get("timeline") is None:
        found["timeline"] = timeline
    found["holds_address"] = holds_address(config)
    found["fenced"] = fence.read(config) is not None
    return found


def holds_address(config: Config) -> bool | None:
    from jitaku.ha.address import FloatingAddress

    address = FloatingAddress.configured(config.settings.ha)
    return None if address is None else address.holds()


def _alone(config: Config) -> dict[str, Any]:
    """An SQLite store: a primary with no standby."""
    return {
        "role": role.PRIMARY,
        "peer": None,
        "sync_state": NO_STANDBY,
        "lag_bytes": None,
        "lag_seconds": None,
        "received_lsn": None,
        "replayed_lsn": None,
        "timeline": None,
        "holds_address": holds_address(config),
        "fenced": fence.read(config) is not None,
        "standbys": [],
    }


def _as_standby(row: Any) -> dict[str, Any]:
    receiver, host, port, timeline, slot, received, replayed, behind, since_replay = row
    streaming = receiver == "streaming"
    lag_bytes = int(behind) if streaming and behind is not None else None
    caught_up = lag_bytes == 0  # not received == replayed: what was received may lag the primary
    return {
        "role": role.STANDBY,
        "peer": f"{host}:{port}" if host else None,
        "sync_state": "streaming" if streaming else "disconnected",
        "lag_bytes": lag_bytes,
        "lag_seconds": 0.0 if streaming and caught_up else _seconds(since_replay),
        "received_lsn": received,
        "replayed_lsn": replayed,
        "timeline": timeline,
        "slot": slot,
    }


def _as_primary(rows: list[Any], slots: list[Any], timeline: Any) -> dict[str, Any]:
    standbys = [
        {
            "peer": name,
            "address": address,
            "sync_state": sync if state == "streaming" else (state or "disconnected"),
            "lag_bytes": int(behind) if behind is not None else None,
            "lag_seconds": _seconds(lag),
            "sent_lsn": sent,
            "replayed_lsn": replayed,
        }
        for name, address, state, sync, behind, lag, sent, replayed in rows
    ]
    standbys += [
        {
            "peer": name,
            "address": None,
            "sync_state": "disconnected",
            "lag_bytes": int(behind) if behind is not None else None,
            "lag_seconds": None,
            "sent_lsn": None,
            "replayed_lsn": None,
        }
        for name, behind in slots
        if name not in {standby["peer"] for standby in standbys}
    ]
    first = standbys[0] if standbys else {}
    return {
        "role": role.PRIMARY,
        "peer": first.get("peer"),
        "sync_state": first.get("sync_state", NO_STANDBY),
        "lag_bytes": first.get("lag_bytes"),
        "lag_seconds": first.get("lag_seconds"),
        "received_lsn": None,
        "replayed_lsn": first.get("replayed_lsn"),
        "timeline": timeline,
        "standbys": standbys,
    }


def _seconds(value: Any) -> float | None:
    return None if value is None else round(max(0.0, float(value)), 3)
