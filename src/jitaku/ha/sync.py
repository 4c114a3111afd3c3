"""Synchronous replication while a standby keeps up, asynchronous while it does not (issue 24, point 7).

On a primary (a managed cluster not in recovery), the daemon looks at its standbys every POLL seconds, on a
connection of its own, in a thread: psycopg blocks, and the event loop serves mail meanwhile. A standby is a
physical replication slot; its walsender counts only when its application_name is the slot's name (`jitaku
standby setup` names both alike), so that pg_basebackup's own stream, which uses the slot while it copies, is
never taken for the standby.

- A standby streaming and caught up while synchronous_standby_names is empty: it becomes the synchronous standby
  (`FIRST 1 ("NAME")`, synchronous_commit on): from then on a commit, and so a message's 250, returns once the
  standby has flushed it: every acknowledged write is on both machines.
- The synchronous standby silent for `[ha] sync_timeout` seconds (its walsender gone, or WAL waiting for it while
  its flush position stands still, as when the machine hangs and TCP does not notice): synchronous_standby_names
  becomes empty, and the commits that waited for it return. The primary keeps accepting; the `replication` check
  says RPO is no longer 0, through the health monitor, until the standby is back and caught up.
- With automatic failover on (`[ha] auto_after`, the pair's boxes configured alike), the standby may promote itself
  once its primary is silent and the witness (jitaku.ha.witness) cannot reach the pair either. So before it gives
  the standby up, this task asks the witness (in the event loop, bounded, every WITNESS_EVERY seconds): only when
  the witness sees this box (and so the standby's own ask sees it too, and it holds back) does replication turn
  asynchronous. A witness that sees nothing, or cannot be asked, is a box cut off from both, whose standby may be
  promoting itself: replication stays synchronous and commits keep waiting (alerted once, through `alert`, a
  queue of its own too), so that nothing is acknowledged that a new primary lacks.

Settings go through ALTER SYSTEM and pg_reload_conf(): postgresql.auto.conf outlives a restart, and neither
writes WAL, so neither waits for the standby it is giving up on. What the health monitor is told goes through a
queue of its own: the monitor records it with a commit, which may be one that waits for the very standby this
task must give up on. What a look means for the alerts is the health package's to say (jitaku.health.replication,
given as `judge`): ha serves health, never the other way.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from jitaku import log
from jitaku.config import Config
from jitaku.ha import witness

if TYPE_CHECKING:
    import psycopg

POLL = 1.0  # seconds between looks
CONNECT_TIMEOUT = 5  # seconds; a look is bounded by these two, so a hung server never hangs this task for long
STATEMENT_TIMEOUT_MS = 5000
CAUGHT_UP_BYTES = 1 << 20  # WAL a standby may still lack, while it gains on it, to be called caught up
WITNESS_EVERY = 10.0  # seconds between two asks of the witness while replication stays synchronous for want of it
WITNESS_TIMEOUT = 40.0  # seconds an ask of the witness may take (the buddy client bounds each request itself)


class Verdict(Protocol):
    """What the judge makes of a look (jitaku.health.replication's Result): told on only when its state changes."""

    @property
    def state(self) -> object: ...


V = TypeVar("V", bound=Verdict)
Judge = Callable[["Facts", float, "float | None"], V]  # facts, wall clock, when the standby was lost
Report = Callable[[V, float], Awaitable[None]]
Alert = Callable[[str, str, bool], Awaitable[None]]  # (sentence, ja, over): over says the last alert's trouble is

STATUS = """
SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'),
       (SELECT count(*) FROM pg_stat_progress_basebackup)
"""
STANDBYS = """
SELECT s.slot_name, coalesce(r.state, ''), coalesce(r.sync_state, ''),
       coalesce((pg_current_wal_lsn() - r.flush_lsn)::bigint, -1),
       coalesce((r.flush_lsn - '0/0'::pg_lsn)::bigint, -1),
       coalesce((pg_current_wal_lsn() - s.restart_lsn)::bigint, -1)
FROM pg_replication_slots s
LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid AND r.application_name = s.slot_name
WHERE s.slot_type = 'physical'
ORDER BY s.slot_name
"""


@dataclass(frozen=True)
class Standby:
    name: str  # its slot's, which its application_name repeats
    state: str  # its walsender's (pg_stat_replication.state): "streaming", "catchup"...; "" without one
    sync_state: str  # "sync", "async", "potential"...; "" without a walsender
    behind: int  # bytes of WAL written here and not yet flushed there; -1 without a walsender
    flushed: int  # where its flush stands, as a number; -1 without a walsender
    held: int = -1  # bytes of WAL its slot keeps here (from restart_lsn); -1 when the slot keeps none

    @property
    def streaming(self) -> bool:
        return self.state == "streaming"


@dataclass(frozen=True)
class Facts:
    in_recovery: bool
    names: tuple[str, ...]  # synchronous_standby_names' standbys; empty: asynchronous
    standbys: tuple[Standby, ...]  # one per physical slot
    backing_up: bool = False  # a base backup is under way (pg_basebackup's stream uses the new standby's slot)


def standby_names(setting: str) -> tuple[str, ...]:
    """The names in a synchronous_standby_names value: `FIRST 1 ("a", "b")`, `ANY 1 (a)`, `2 (a, b)` or `a, b`."""
    text = setting.strip()
    listed = re.fullmatch(r"(?:(?:FIRST|ANY)\s+\d+\s*|\d+\s*)?\((.*)\)", text, re.IGNORECASE | re.DOTALL)
    names = []
    for part in (listed.group(1) if listed else text).split(","):
        name = part.strip()
        if len(name) >= 2 and name.startswith('"') and name.endswith('"'):
            name = name[1:-1].replace('""', '"')
        if name:
            names.append(name)
    return tuple(names)


def synchronous_setting(names: tuple[str, ...]) -> str:
    quoted = ", ".join('"' + name.replace('"', '""') + '"' for name in names)
    return f"FIRST 1 ({quoted})"


def connect(config: Config) -> psycopg.Connection[Any]:
    """A connection of this task's own to the managed cluster, as its superuser (ALTER SYSTEM needs one)."""
    import psycopg

    return psycopg.connect(
        config.database_url,
        autocommit=True,
        connect_timeout=CONNECT_TIMEOUT,
        application_name="jitaku-sync",
        options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
    )


def look(connection: psycopg.Connection[Any]) -> Facts:
    row = connection.execute(STATUS).fetchone()
    assert row is not None
    in_recovery, setting, backups = bool(row[0]), str(row[1]), int(row[2])
    standbys: tuple[Standby, ...] = ()
    if not in_recovery:
        standbys = tuple(
            Standby(str(name), str(state), str(sync), int(behind), int(flushed), int(held))
            for name, state, sync, behind, flushed, held in connection.execute(STANDBYS).fetchall()
        )
    return Facts(in_recovery, standby_names(setting), standbys, backups > 0)


def look_once(config: Config) -> Facts:
    """What `jitaku check` and the monitor's round see, on a connection for the one look."""
    with connect(config) as connection:
        return look(connection)


def apply(connection: psycopg.Connection[Any], names: tuple[str, ...]) -> None:
    """NAMES the synchronous standbys (none: asynchronous), in postgresql.auto.conf, in force at once."""
    from psycopg import sql

    setting = synchronous_setting(names) if names else ""
    connection.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(setting)))
    if names:
        connection.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
    connection.execute("SELECT pg_reload_conf()")


def held(names: str, silent: float, words: str) -> tuple[str, str]:
    """The alert of a primary that keeps replication synchronous for want of the witness (WORDS: what it said)."""
    return (
        f"this primary cannot see its standby {names} (silent for {silent:.0f} s) nor be seen by the witness "
        f"({words}): it keeps replication synchronous, and mail waits, since the standby may promote itself "
        f"([ha] auto_after). It asks the witness again every {WITNESS_EVERY:g} s.",
        f"このプライマリはスタンバイ {names} が見えず（{silent:.0f} 秒）、外部の監視役からも見えません（{words}）。"
        "スタンバイが自ら昇格するかもしれないため、レプリケーションを同期のまま保ち、メールは待たされます"
        f"（[ha] auto_after）。{WITNESS_EVERY:g} 秒ごとに監視役へ問い合わせ直します。",
    )


class Synchronizer(Generic[V]):
    """The daemon's task; `tick` is one round: the witness asked when it is due, then `step`, one look and what
    follows from it, in a thread."""

    def __init__(
        self, config: Config, judge: Judge[V], report: Report[V] | None = None, alert: Alert | None = None
    ) -> None:
        self._config = config
        self._timeout = config.settings.ha.sync_timeout
        self._auto = config.settings.ha.auto_after > 0
        self._judge = judge
        self._report = report
        self._alert = alert
        self._connection: psycopg.Connection[Any] | None = None
        self._flushed: dict[str, int] = {}  # each standby's flush position at the last look
        self._kept_up: set[str] = set()  # the standbys caught up at the last look
        self._silent_since: float | None = None  # monotonic: since when no synchronous standby has kept up
        self._lost_at: float | None = None  # wall clock: when the standby was lost, while asynchronous for it
        self._told: object = None  # the state the monitor was last told
        self._results: asyncio.Queue[V] = asyncio.Queue()
        self._seen: witness.Answer | None = None  # the witness's last answer, while the standby is silent too long
        self._asked_at: float | None = None  # monotonic: when the witness was asked last
        self._held = ""  # the witness's words logged last while replication stays synchronous for want of it
        self._said: list[tuple[str, str, bool]] = []  # the alerts the last step calls for
        self._alerts: asyncio.Queue[tuple[str, str, bool]] = asyncio.Queue()

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(self._tell())
            tasks.create_task(self._warn())
            while True:
                started = time.monotonic()
                await self.tick(started, time.time())
                await asyncio.sleep(max(0.0, POLL - (time.monotonic() - started)))

    async def tick(self, now: float, wall: float) -> None:
        """One round at NOW (monotonic) and WALL: the witness asked first when it is due, then the step."""
        if self._witness_due(now):
            self._seen, self._asked_at = await self._ask(), now
        try:
            result = await asyncio.to_thread(self.step, now, wall)
        except Exception as error:  # the server restarting, say: the next look tries again
            log.event("sync_error", error=repr(error))
            await asyncio.to_thread(self._close)
            result = None
        if result is not None:
            self._results.put_nowait(result)
        for said in self._said:
            self._alerts.put_nowait(said)
        self._said.clear()

    def _witness_due(self, now: float) -> bool:
        """With automatic failover, whether the witness is to be asked: the synchronous standby silent for
        sync_timeout, and the witness not asked in the last WITNESS_EVERY seconds."""
        silent = self._silent_since is not None and now - self._silent_since >= self._timeout
        fresh = self._asked_at is not None and now - self._asked_at < WITNESS_EVERY
        return self._auto and silent and not fresh

    async def _ask(self) -> witness.Answer:
        try:
            return await asyncio.wait_for(witness.ask(self._config), WITNESS_TIMEOUT)
        except TimeoutError:
            return witness.Answer(witness.Seen.UNKNOWN, f"the witness did not answer within {WITNESS_TIMEOUT:g} s")

    async def _tell(self) -> None:
        while True:
            result = await self._results.get()
            if self._report is not None:
                try:
                    await self._report(result, time.time())
                except Exception as error:
                    log.event("sync_report_error", error=repr(error))

    async def _warn(self) -> None:
        """The alerts, in order, on a queue of their own: the monitor records each with a commit, which may wait
        for the very standby this task keeps replication synchronous for."""
        while True:
            sentence, ja, over = await self._alerts.get()
            if self._alert is not None:
                try:
                    await self._alert(sentence, ja, over)
                except Exception as error:
                    log.event("sync_alert_error", error=repr(error))

    def step(self, now: float, wall: float) -> V | None:
        """One look, and the change it calls for; the replication check's result when its state changed."""
        if self._connection is None:
            self._connection = connect(self._config)
        connection = self._connection
        facts = look(connection)
        if facts.in_recovery:
            self._silent_since, self._lost_at, self._told = None, None, None
            self._seen, self._asked_at, self._held = None, None, ""
            return None
        # at a first sight, given the benefit of the doubt: the next look tells
        progressed = {
            s.name for s in facts.standbys if s.name not in self._flushed or s.flushed > self._flushed[s.name]
        }
        self._flushed = {s.name: s.flushed for s in facts.standbys}

        def keeps_up(standby: Standby) -> bool:
            """Streaming, and nothing waits for it or it gains on what does."""
            return standby.streaming and (standby.behind == 0 or standby.name in progressed)

        named = [s for s in facts.standbys if s.name in facts.names or "*" in facts.names]
        if facts.names and not named:
            # no slot for any standby it names (this box was promoted, say): commits would wait for nobody, forever
            apply(connection, ())
            log.event("replication_asynchronous", standbys=",".join(facts.names), reason="no slot for any of them")
            self._silent_since = None
            self._release(
                "the standby this primary kept replication synchronous for has no slot here any more: replication "
                "is asynchronous, and mail goes through.",
                "このプライマリが同期を保っていたスタンバイのスロットがなくなりました。レプリケーションは非同期になり、"
                "メールの処理を再開します。",
            )
            facts = replace(facts, names=())
        elif facts.names:
            names = ",".join(facts.names)
            if any(keeps_up(s) for s in named):
                self._silent_since = None
                self._release(
                    f"standby {names} keeps up again: replication stays synchronous, and the mail that waited for it "
                    "goes through.",
                    f"スタンバイ {names} が再び追いついています。レプリケーションは同期のままで、待っていたメールは"
                    "処理されます。",
                )
            elif self._silent_since is None:
                self._silent_since = now
                log.event("standby_silent", standbys=names, timeout=self._timeout)
            elif now - self._silent_since >= self._timeout and self._gives_up(names, now - self._silent_since):
                apply(connection, ())
                silent = now - self._silent_since
                self._lost_at, self._silent_since = wall - silent, None
                log.event("replication_asynchronous", standbys=names, silent_seconds=round(silent, 1))
                seen = self._seen.words if self._seen is not None else ""
                self._release(
                    f"the witness sees this primary again ({seen}), so its standby does not promote itself: "
                    f"replication to {names} is asynchronous, and mail goes through; writes from now on exist only "
                    "here (RPO > 0).",
                    f"外部の監視役から再びこのプライマリが見えます（{seen}）。スタンバイは自ら昇格しないため、"
                    f"{names} へのレプリケーションを非同期にし、メールの処理を再開します。これ以降の書き込みは"
                    "このマシンにしかありません（RPO > 0）。",
                )
                facts = replace(facts, names=())
        else:
            # caught up at two looks in a row, with no base backup under way: pg_basebackup's own WAL stream, which
            # uses the new standby's slot and may bear its name, is no standby, and ends with the backup
            kept_up = {s.name for s in facts.standbys if keeps_up(s) and s.behind <= CAUGHT_UP_BYTES}
            if facts.backing_up:
                kept_up = set()
            caught_up = tuple(s.name for s in facts.standbys if s.name in kept_up & self._kept_up)
            self._kept_up = kept_up
            if caught_up:
                apply(connection, caught_up)
                self._kept_up = set()
                log.event("replication_synchronous", standbys=",".join(caught_up))
                self._lost_at = None
                facts = replace(facts, names=caught_up)
            elif facts.standbys and self._lost_at is None:
                self._lost_at = wall  # asynchronous when this task began: lost since then, as far as it knows
        result = self._judge(facts, wall, self._lost_at)
        if result.state == self._told:
            return None
        self._told = result.state
        return result

    def _gives_up(self, names: str, silent: float) -> bool:
        """Whether the standby silent for sync_timeout is given up: always without automatic failover; with it,
        only when the witness sees this box, else replication stays synchronous (logged, alerted once)."""
        if not self._auto or (self._seen is not None and self._seen.seen is witness.Seen.ANSWERS):
            return True
        words = self._seen.words if self._seen is not None else "not asked yet"
        if self._held != words:
            log.event("replication_held", standbys=names, silent_seconds=round(silent, 1), witness=words)
            if not self._held:
                self._said.append((*held(names, silent, words), False))
            self._held = words
        return False

    def _release(self, sentence: str, ja: str) -> None:
        """The standby kept up, or was given up: the witness's answer is stale, and a hold alerted is over."""
        if self._held:
            self._said.append((sentence, ja, True))
        self._seen, self._asked_at, self._held = None, None, ""

    def _close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            try:
                connection.close()
            except Exception as error:
                log.event("sync_error", error=repr(error))
