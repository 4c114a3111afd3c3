"""Two jitakus at two homes watching each other from outside. A check from inside can be fooled by the
router's hairpin NAT; the story's server was fine from the house and dead from outside all night.

- `buddy`: from here, the friend's services (`theirs`) and its jitaku must answer; we alert for them.
- `reachability`: the friend connects to ours (`ours`) from its side of the Internet and tells us.
Both speak to the friend's `/api/buddy/...` endpoints with the token both sides share.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jitaku.buddy_client import Unreachable, ask_probe, call, name
from jitaku.config import BuddySettings, parse_listen
from jitaku.health.result import Result, State
from jitaku.health.services import POP3, SMTP, Silence, answers

GREETINGS = {25: SMTP, 587: SMTP, 110: POP3}  # these must greet, not merely accept a connection
MAX_TARGETS = 16


async def _silences(targets: list[str]) -> list[tuple[str, Silence | None]]:
    async def one(target: str) -> tuple[str, Silence | None]:
        where = parse_listen(target)
        return target, await answers(where.host, where.port, greeting=GREETINGS.get(where.port))

    return list(await asyncio.gather(*(one(target) for target in targets)))


async def probe(targets: list[str]) -> list[dict[str, Any]]:
    """Connect to each "host:port"; what a buddy asks of us. Its `error` stays English: what buddies say to
    each other does not change with either one's alert language."""
    return [
        {"target": target, "ok": why is None, "error": why.en if why else None}
        for target, why in await _silences(targets)
    ]


async def watch(settings: BuddySettings) -> Result | None:
    """The `buddy` check: the friend, seen from here."""
    if not settings.url:
        return None
    friend = name(settings)
    silent = [(target, why) for target, why in await _silences(list(settings.theirs)) if why]
    problems = [f"{target} does not answer ({why.en})" for target, why in silent]
    problems_ja = [f"{target}: {why.ja}" for target, why in silent]
    try:
        hello = await call(settings, "GET", "/api/buddy/hello")
        theirs = f"its jitaku ({hello.get('hostname')}: {hello.get('state')})"
        theirs_ja = f"先方の jitaku（{hello.get('hostname')}: {hello.get('state')}）"
    except Unreachable as error:
        problems.append(f"its jitaku does not answer ({error})")
        problems_ja.append(f"先方の jitaku が応答しません（{error.ja}）")
        theirs, theirs_ja = "", ""
    metrics = {"problems": float(len(problems))}
    if problems:
        return Result(
            "buddy",
            State.CRITICAL,
            f"our buddy {friend}: {'; '.join(problems)}.",
            metrics,
            "; ".join(problems),
            ja=f"相棒 {friend}: {'、'.join(problems_ja)}。",
        )
    answered = ", ".join([*settings.theirs, theirs])
    answered_ja = "、".join([*settings.theirs, theirs_ja])
    return Result(
        "buddy",
        State.OK,
        f"our buddy {friend} answers: {answered}.",
        metrics,
        ja=f"相棒 {friend} は応答しています: {answered_ja}。",
    )


async def seen_from_buddy(settings: BuddySettings) -> Result | None:
    """The `reachability` check: ours, seen from the friend's side of the Internet. The friend says why a
    target did not answer in English, and the Japanese sentence quotes it so."""
    if not settings.url or not settings.ours:
        return None
    friend = name(settings)
    try:
        results = await ask_probe(settings)
    except Unreachable as error:
        return Result(
            "reachability",
            State.WARNING,
            f"cannot ask our buddy {friend} how we look: {error}.",
            ja=f"相棒 {friend} に、外からこのサーバーがどう見えるかを問い合わせられません: {error.ja}。",
        )
    down = [r for r in results if not r.get("ok")]
    failed = [f"{r['target']} does not answer ({r['error']})" for r in down]
    failed_ja = [f"{r['target']} が応答しません（{r['error']}）" for r in down]
    metrics = {"unreachable": float(len(failed))}
    if failed:
        return Result(
            "reachability",
            State.CRITICAL,
            f"seen from our buddy {friend}: {'; '.join(failed)}.",
            metrics,
            ",".join(str(r["target"]) for r in down),
            ja=f"相棒 {friend} から見ると、{'、'.join(failed_ja)}。",
        )
    return Result(
        "reachability",
        State.OK,
        f"seen from our buddy {friend}, {', '.join(settings.ours)} answer.",
        metrics,
        ja=f"相棒 {friend} から見て、{'、'.join(settings.ours)} は応答しています。",
    )
