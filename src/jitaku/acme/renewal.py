"""The daemon's renewals: a primary's main process keeps tls/cert.pem from ACME and renews it when due.

It sleeps until the certificate is due (issue.due_at) or the backoff after a failure ends (state.Attempts.next_try),
and looks at least every LOOK seconds anyway: a person may replace tls/cert.pem by hand, or `jitaku cert renew` may
renew it, meanwhile (issue.due reads the file each time). The listeners pick a new certificate up by themselves
(jitaku.tls_reload); the certs check tells of a failed renewal from state.json.
"""

from __future__ import annotations

import asyncio
import logging
import time

from jitaku import log
from jitaku.acme import state
from jitaku.config import Config

FIRST_LOOK = 5.0  # seconds after the start: the listeners are up, so an HTTP-01 challenge can be answered
LOOK = 3600.0  # at most this long between two looks at the certificate


async def keep_renewed(config: Config) -> None:
    """Never ends on an error: the daemon's other services share its task group."""
    wait = FIRST_LOOK
    while True:
        await asyncio.sleep(wait)
        try:
            await renew_if_due(config, time.time())
            wait = next_look(config, time.time())
        except Exception as error:  # a bug, or a file we cannot read: mail goes on, the certificate waits
            log.event("acme_error", logging.WARNING, error=repr(error))
            wait = state.FIRST_RETRY


async def renew_if_due(config: Config, now: float) -> None:
    """One renewal when due and the backoff is over. obtain records the CA's answers in state.json itself; an
    error that is not one (a bug, a file it cannot read) is recorded here, so that the certs check alerts on it."""
    from jitaku.acme import issue  # the acme package costs every process that does not renew its memory

    why = issue.due(config, now)
    if why is None or state.read(config.data_dir).next_try > now:
        return
    log.event("acme_renewing", why=why)
    try:
        issued = await asyncio.to_thread(issue.obtain, config, now)
    except issue.AcmeError as error:
        _failed(config, str(error))
        return
    except Exception as error:  # not the CA's answer (a bug, a file unreadable): the same backoff, the same alert
        attempts = state.read(config.data_dir).failed(now, f"unexpected error: {error}")
        state.write(config.data_dir, attempts)
        _failed(config, attempts.last_error)
        return
    log.event("acme_renewed", names=",".join(issued.names), not_after=state.moment(issued.not_after))


def _failed(config: Config, error: str) -> None:
    next_try = state.read(config.data_dir).next_try
    log.event("acme_failed", logging.WARNING, error=error, next_try=state.moment(next_try))


def next_look(config: Config, now: float) -> float:
    """Seconds until the next look: when the certificate is due, or when the backoff ends, at most LOOK."""
    from jitaku.acme import issue

    next_try = state.read(config.data_dir).next_try
    if issue.due(config, now) is None:
        target = issue.due_at(config)
    elif next_try > now:
        target = next_try
    else:  # tried just now and still due (the CA left a name out?): not asked again at once
        target = now + state.FIRST_RETRY
    return LOOK if target is None else min(max(target - now, 1.0), LOOK)
