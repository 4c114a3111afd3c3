"""The spam and virus engines `[filters]` turns on (issue 23): one result each, named by the engine, ok when it
answers a ping and a warning when it does not (mail then goes unchecked or waits, by `[filters] on_error`), with
the day's counts of what the filters made of mail, read from the store's tallies (the pipeline counts them).

Greylisting (`[filters.greylist]`) has no engine to ping, but its count is the one figure that shows it at work:
with it on and no engine, the one `filters` result is watching (it reports what greylisting did), not muted as a
check with nothing to watch."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from jitaku.config import FiltersSettings
from jitaku.health.result import Result, State, not_watching
from jitaku.store import tallies

DAY = 86400.0
COUNTED = {
    tallies.FILTER_REJECTED: "rejected",
    tallies.FILTER_JUNKED: "junked",
    tallies.FILTER_VIRUSES: "viruses",
    tallies.FILTER_UNCHECKED: "unchecked",
    tallies.GREYLISTED: "greylisted",  # recipients answered 451, not messages: each recipient waits on its own
}

Ping = Callable[[], Awaitable[None]]


def engines(settings: FiltersSettings) -> list[tuple[str, str, Ping, Callable[[], Awaitable[None]]]]:
    """Each engine that is on: its name, its address, its ping and the close of its client. The clients are
    imported only when their engine is on, as the pipeline's are."""
    found: list[tuple[str, str, Ping, Callable[[], Awaitable[None]]]] = []
    if settings.rspamd is not None:
        from jitaku.mail.filters.rspamd import Rspamd

        rspamd = Rspamd.from_settings(settings)
        found.append(("rspamd", rspamd.url, rspamd.ping, rspamd.close))
    if settings.spamassassin is not None:
        from jitaku.mail.filters.spamassassin import SpamAssassin

        spamd = SpamAssassin.from_settings(settings)
        found.append(("spamassassin", str(spamd.address), spamd.ping, spamd.close))
    if settings.clamav is not None:
        from jitaku.mail.filters.clamav import Clamav

        clamd = Clamav(settings.clamav, settings.timeout, concurrency=1)
        found.append(("clamav", str(clamd.address), clamd.ping, clamd.close))
    return found


async def check(settings: FiltersSettings, counts: Mapping[str, int]) -> list[Result]:
    """COUNTS: the day's tallies by kind (the keys of COUNTED). The greylisted count is in the metrics always (one
    shape for whoever reads the JSON) and in the sentence while greylisting is on."""
    metrics = {name: float(counts.get(kind, 0)) for kind, name in COUNTED.items()}
    shown = [name for name in metrics if name != "greylisted" or settings.greylist.enabled]
    said = ", ".join(f"{int(metrics[name])} {name}" for name in shown)
    found = engines(settings)
    if not found and settings.greylist.enabled:
        sentence = f"greylisting is on, no spam or virus engine ([filters.*]); in the last 24 h: {said}."
        ja = "グレイリスティングが有効です（スパム・ウイルス検査エンジンはありません）。"
        return [Result("filters", State.OK, sentence, metrics, ja=ja)]
    if not found:
        why, why_ja = "no spam or virus engine is on ([filters.*])", "スパム・ウイルス検査エンジンが設定されていません"
        result = not_watching("filters", why, why_ja)
        return [Result(result.check, result.state, result.sentence, {**result.metrics, **metrics}, ja=result.ja)]
    answers = await asyncio.gather(*(_ping(name, ping, close) for name, _address, ping, close in found))
    results = []
    for (name, address, *_), failed in zip(found, answers, strict=True):
        if failed is None:
            sentence = f"{name} at {address} answers; in the last 24 h: {said}."
            ja = f"{name}（{address}）は応答しています。"
            results.append(Result(name, State.OK, sentence, metrics, ja=ja))
        else:
            unchecked = "mail waits (451)" if settings.on_error == "tempfail" else "mail is delivered unchecked"
            sentence = f"{name} at {address} does not answer ({failed}): {unchecked}; in the last 24 h: {said}."
            ja = f"{name}（{address}）が応答しません（{failed}）。"
            results.append(Result(name, State.WARNING, sentence, metrics, ja=ja))
    return results


async def _ping(name: str, ping: Ping, close: Callable[[], Awaitable[None]]) -> str | None:
    """None when the engine answered; else what went wrong, in a few words."""
    from jitaku.mail.filters.verdict import EngineError

    try:
        await ping()
        return None
    except EngineError as error:
        return error.what
    except Exception as error:  # a client's bug is the engine unchecked all the same, never the check's end
        return f"failed: {error!r}"[:200]
    finally:
        await close()
