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

    attempts = state.read(config.data_dir)
    why, _at = _due(config, attempts, now)
    if why is None or attempts.next_try > now:
        return
    log.event("acme_renewing", why=why)
    try:
        issued = await asyncio.to_thread(issue.obtain, config, now)
    except issue.AcmeError:
        return  # obtain logged acme_failed, with the next try
    except Exception as error:  # not the CA's answer (a bug, a file unreadable): the same backoff, the same alert
        attempts = state.read(config.data_dir).failed(now, f"unexpected error: {error}")
        state.write(config.data_dir, attempts)
        next_try = state.moment(attempts.next_try)
        log.event("acme_failed", logging.WARNING, error=attempts.last_error, next_try=next_try)
        return
    if issued is None:  # `jitaku cert renew` got one while we waited for the lock
        return
    log.event("acme_renewed", names=",".join(issued.names), not_after=state.moment(issued.not_after))


def next_look(config: Config, now: float) -> float:
    """Seconds until the next look: when the certificate is due, or when the backoff ends, at most LOOK."""
    attempts = state.read(config.data_dir)
    why, target = _due(config, attempts, now)
    if why is not None:  # the backoff's end; or, tried just now and due still (a bug?), not at once again
        target = attempts.next_try if attempts.next_try > now else now + state.FIRST_RETRY
    return LOOK if target is None else min(max(target - now, 1.0), LOOK)


def _due(config: Config, attempts: state.Attempts, now: float) -> tuple[str | None, float | None]:
    """Why a renewal is due now (issue.due), else when it will be (issue.due_at); less one reason: a name the last
    certificate was issued without (the CA could not validate it: no DNS for mta-sts.DOMAIN yet, say) orders
    nothing again before the certificate is due by its end, since an order every few minutes would spend the CA's
    limit on duplicate certificates within a day. `jitaku cert renew` tries it at once."""
    from jitaku.acme import issue

    why, at = issue.due(config, now), issue.due_at(config)
    cert = issue.certificate(config)
    if why is None or cert is None or not attempts.left_out:
        return why, at
    ends = issue.renew_from(cert, config.settings.acme.renew_days)
    missing = set(config.settings.acme_names) - set(issue.names_of(cert))
    left_out = {part.split(": ", 1)[0] for part in attempts.left_out.split("; ")}  # "NAME: why; NAME: why"
    return (None, ends) if missing and missing <= left_out and now < ends else (why, at)
