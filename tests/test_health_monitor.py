"""The monitor's alert rules, with a real store and apprise posting to a local webhook: news on a new
state or new detail, silence when nothing changed, reminders while critical, a recovery notice, a daily
summary, and no repeat after a restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from jitaku import store
from jitaku.config import Config, parse
from jitaku.health.monitor import Monitor
from jitaku.health.result import Result, State
from jitaku.store import Database

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

NOW = 1_800_000_000.0


def monitor(tmp_path: Path, hook_url: str, remind: int = 3600) -> Monitor:
    text = (
        'hostname = "mail.example.test"\ndomains = ["example.test"]\n'
        f'[alerts]\nurls = ["{hook_url}"]\nremind = {remind}\nlanguage = "ja"\n'
    )
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    return Monitor(config, Database(config.database_url))


def titles(posts: list[dict[str, Any]]) -> list[str]:
    return [post["title"].removeprefix("[mail.example.test] ") for post in posts]


def test_alerts_come_with_news_only_and_survive_a_restart(tmp_path: Path, stand_in) -> None:
    posts: list[dict[str, Any]] = []
    hook = stand_in(lambda method, path, query, headers, body: (posts.append(json.loads(body)), (200, "ok"))[1])
    url = "json://" + hook.url.removeprefix("http://") + "/hook"
    watcher = monitor(tmp_path, url, remind=600)
    degraded = Result(
        "raid", State.CRITICAL, "md1 is degraded: sdb3 failed.", {"md1.working": 1.0}, ja="md1 が縮退しています。"
    )

    async def rounds() -> None:
        await watcher.judge(Result("raid", State.OK, "md1 is healthy."), NOW)  # first sight, all well: silence
        await watcher.judge(degraded, NOW + 60)
        await watcher.judge(degraded, NOW + 120)  # nothing new
        await watcher.judge(degraded, NOW + 60 + 600)  # still critical after `remind` seconds
        await watcher.judge(Result("smart", State.WARNING, "sdb: 8 reallocated.", {}, "sdb.reallocated=8"), NOW)
        await watcher.judge(Result("smart", State.WARNING, "sdb: 9 reallocated.", {}, "sdb.reallocated=9"), NOW + 60)
        await watcher.summary()

    asyncio.run(rounds())
    assert titles(posts) == [
        "重大: RAID",
        "重大が続いています: RAID",
        "警告: ディスクのSMART",
        "警告: ディスクのSMART",
        "日次のまとめ",
    ]
    assert posts[0]["message"] == "md1 が縮退しています。" and posts[0]["type"] == "failure"
    assert posts[2]["message"] == "sdb: 8 reallocated."  # a sentence nobody translated comes in English
    assert "RAID: 重大 - md1 が縮退しています。" in posts[-1]["message"]

    restarted = monitor(tmp_path, url, remind=600)  # a restart: what was said is not said again

    async def after_restart() -> None:
        await restarted.load()
        await restarted.judge(degraded, NOW + 700)
        await restarted.judge(Result("raid", State.OK, "md1 is healthy."), NOW + 800)

    asyncio.run(after_restart())
    assert titles(posts)[5:] == ["復旧しました: RAID"]
    alerts = Database(f"sqlite:///{tmp_path / 'jitaku.db'}").read_now(store.health.recent_alerts)
    assert sorted(a.kind for a in alerts) == ["problem", "problem", "problem", "recovery", "reminder", "summary"]
    assert all(a.delivered for a in alerts)


def test_a_target_that_missed_an_alert_gets_it_later_even_after_a_restart(tmp_path: Path, stand_in) -> None:
    posts: dict[str, list[str]] = {"/up": [], "/down": []}
    down = {"now": True}

    def answer(method: str, path: str, query: Any, headers: Any, body: bytes) -> tuple[int, str]:
        if path == "/down" and down["now"]:
            return 500, "down"
        posts[path].append(json.loads(body)["title"])
        return 200, "ok"

    hook = stand_in(answer)
    host = hook.url.removeprefix("http://")
    text = (
        'hostname = "mail.example.test"\ndomains = ["example.test"]\n'
        f'[alerts]\nurls = ["json://{host}/up", "json://{host}/down"]\n'
    )
    config = Config(parse(text, tmp_path / "jitaku.toml"), tmp_path)
    degraded = Result("raid", State.CRITICAL, "md1 is degraded: sdb3 failed.")

    async def first_life() -> None:
        watcher = Monitor(config, Database(config.database_url))
        await watcher.judge(degraded, NOW)
        await watcher.judge(degraded, NOW + 60)  # /down still refuses

    asyncio.run(first_life())
    assert posts == {"/up": ["[mail.example.test] critical: raid"], "/down": []}
    down["now"] = False

    async def second_life() -> None:
        watcher = Monitor(config, Database(config.database_url))
        await watcher.load()
        await watcher.judge(degraded, NOW + 120)
        await watcher.judge(degraded, NOW + 180)

    asyncio.run(second_life())
    assert posts == {"/up": ["[mail.example.test] critical: raid"], "/down": ["[mail.example.test] critical: raid"]}
    alerts = Database(config.database_url).read_now(store.health.recent_alerts)
    assert [a.delivered for a in sorted(alerts, key=lambda a: a.at)] == [False, False, True]


def test_loading_apprise_leaves_the_processs_utf8_mail_encoding_alone() -> None:
    """apprise's e-mail plugin re-registers UTF-8 as quoted-printable for the whole process as it loads; the
    daemon's list mail and DSNs, written in the same process, must keep base64 headers."""
    import email.charset

    import apprise

    from jitaku import alert_targets  # noqa: F401 - importing it loads apprise's plugins and mends the registry

    apprise.Apprise.instantiate("mailtos://user:password@example.com")
    assert email.charset.CHARSETS["utf-8"] == (email.charset.SHORTEST, email.charset.BASE64, "utf-8")


def test_a_job_that_loses_the_monitors_cancel_does_not_keep_it_running() -> None:
    """SIGTERM during a round of checks left the daemon running for ever: the certs check's SMTP client
    (aiosmtplib, through 3.11's asyncio.wait_for) dropped the cancel when a reply came with it."""

    async def losing_the_cancel() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            pass  # as asyncio.wait_for does when what it waits for is done by then

    async def scene() -> bool:
        every = asyncio.create_task(Monitor._every(60.0, losing_the_cancel))
        await asyncio.sleep(0.01)
        every.cancel()
        await asyncio.wait({every}, timeout=5)
        return every.cancelled()

    assert asyncio.run(scene())


def test_an_announced_problem_is_cleared_by_an_announced_recovery(tmp_path: Path, stand_in) -> None:
    posts: list[dict[str, Any]] = []
    hook = stand_in(lambda method, path, query, headers, body: (posts.append(json.loads(body)), (200, "ok"))[1])
    watcher = monitor(tmp_path, "json://" + hook.url.removeprefix("http://") + "/hook")

    async def said() -> None:
        await watcher.announce("ha", State.CRITICAL, "the peer refuses us", "相手が拒否しています")
        await watcher.announce("ha", State.OK, "the peer answers again", "相手が再び応答しています")

    asyncio.run(said())
    assert [post["message"] for post in posts] == ["相手が拒否しています", "相手が再び応答しています"]
    assert titles(posts)[1].startswith("復旧しました: ")
    alerts = Database(f"sqlite:///{tmp_path / 'jitaku.db'}").read_now(store.health.recent_alerts)
    assert sorted(a.kind for a in alerts) == ["problem", "recovery"]
