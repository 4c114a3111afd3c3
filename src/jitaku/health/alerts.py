"""Alerts through apprise (ntfy, Telegram, Discord, Slack, Matrix, Pushover, e-mail through an outside
account, JSON webhooks ...): a channel that still works when our own mail does not."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitaku.config import AlertSettings
from jitaku.health.result import State

if TYPE_CHECKING:
    from apprise import NotifyBase


@dataclass(frozen=True)
class Words:
    states: dict[State, str]
    problem: str
    reminder: str
    recovery: str
    summary: str
    test: str
    test_body: str


WORDS = {
    "en": Words(
        states={State.OK: "ok", State.WARNING: "warning", State.CRITICAL: "critical"},
        problem="{state}: {check}",
        reminder="still {state}: {check}",
        recovery="recovered: {check}",
        summary="daily summary",
        test="test alert",
        test_body="If you can read this, jitaku on {host} reaches you here.",
    ),
    "ja": Words(
        states={State.OK: "正常", State.WARNING: "警告", State.CRITICAL: "重大"},
        problem="{state}: {check}",
        reminder="{state}が続いています: {check}",
        recovery="復旧しました: {check}",
        summary="日次のまとめ",
        test="テスト通知",
        test_body="これが読めれば、{host} の jitaku からここへ通知が届きます。",
    ),
}
CHECK_NAMES_JA = {
    "raid": "RAID",
    "smart": "ディスクのSMART",
    "diskage": "ディスクの寿命",
    "queue": "送信キュー",
    "certs": "証明書",
    "services": "サービス",
    "mailflow": "メールの受信経路",
    "traffic": "通信量",
    "ddns": "ダイナミックDNS",
    "dns": "DNS",
    "buddy": "相棒のサーバー",
    "reachability": "外からの到達性",
    "relay": "リレーホスト",
}


NOTIFY_TYPE = {State.OK: "success", State.WARNING: "warning", State.CRITICAL: "failure"}  # apprise.NotifyType


@dataclass(frozen=True)
class Delivery:
    number: int  # the target's place in [alerts] urls, from 1
    target: str  # "#2 tgram://": which of [alerts] urls, never its secrets
    ok: bool


class Alerter:
    def __init__(self, settings: AlertSettings, hostname: str) -> None:
        self._settings = settings
        self._hostname = hostname
        self._words = WORDS[settings.language]

    @property
    def configured(self) -> bool:
        return bool(self._settings.urls)

    def _name(self, check: str) -> str:
        return CHECK_NAMES_JA.get(check, check) if self._settings.language == "ja" else check

    def title(self, kind: str, check: str, state: State) -> str:
        template: str = getattr(self._words, kind)
        return f"[{self._hostname}] " + template.format(state=self._words.states[state], check=self._name(check))

    def line(self, check: str, state: State, sentence: str) -> str:
        """One check in the daily summary."""
        return f"{self._name(check)}: {self._words.states[state]} - {sentence}"

    async def send(self, title: str, body: str, state: State, only: set[int] | None = None) -> list[Delivery]:
        """One delivery per target (or per target numbered in ONLY), so a dead one does not hide the others."""
        targets = [(n, url) for n, url in enumerate(self._settings.urls, 1) if only is None or n in only]
        return list(await asyncio.gather(*(self._one(number, url, title, body, state) for number, url in targets)))

    async def test(self) -> list[Delivery]:
        body = self._words.test_body.format(host=self._hostname)
        return await self.send(self.title("test", "jitaku", State.OK), body, State.OK)

    async def _one(self, number: int, url: str, title: str, body: str, state: State) -> Delivery:
        # Named by position and scheme only: a Telegram token, an ntfy topic or a webhook path is the secret.
        shown = f"#{number} {url.split('://', 1)[0]}://"
        target = await asyncio.to_thread(_target, url)  # the first loads apprise: not on the event loop
        if target is None:
            return Delivery(number, shown, False)
        try:
            ok = await asyncio.to_thread(_notify, target, title, body, NOTIFY_TYPE[state])
        except Exception:  # a plugin's own bug must not cost the other targets or the monitor
            ok = False
        return Delivery(number, shown, bool(ok))


def _target(url: str) -> NotifyBase | None:
    """apprise (~275 plugin modules, ~18 MB) is loaded here, by the first alert sent, and not by a daemon
    without [alerts] urls: the idle daemon stays under its memory budget (issue 20)."""
    from jitaku import alert_targets

    return alert_targets.target(url)


def _notify(target: NotifyBase, title: str, body: str, kind: str) -> bool:
    import apprise

    return bool(target.notify(body=body, title=title, notify_type=apprise.NotifyType(kind)))
