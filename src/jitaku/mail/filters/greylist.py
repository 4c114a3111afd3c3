"""Greylisting, off by default (`[filters.greylist]`): a first try from an unknown (client network, sender,
recipient) is answered 451 4.7.1 for `delay` seconds; a real server tries again and passes from then on, a
spam cannon seldom does. A client network is an IPv4 /24 or an IPv6 /64, as postgrey counts them: a big
sender's retry comes from another machine of the same pool. Triplets not seen for `expiry` are forgotten.

Exempt: authenticated mail; the domains of `exempt` and of the big senders below when SPF passed for them (what
postgrey's whitelist_clients does by name, done here by SPF, which proves the sender's domain); and the
addresses and networks `exempt` lists."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import TYPE_CHECKING

from jitaku import log
from jitaku.config import GreylistSettings
from jitaku.store.transaction import Tx, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from jitaku.store import Database

# Senders that retry from pools of many addresses, sometimes for hours: greylisting them only delays real mail
BIG_SENDERS = frozenset(
    {
        "gmail.com",
        "google.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "microsoft.com",
        "yahoo.com",
        "yahoo.co.jp",
        "icloud.com",
        "me.com",
        "apple.com",
        "amazon.com",
        "amazon.co.jp",
        "amazonses.com",
        "facebookmail.com",
        "github.com",
        "docomo.ne.jp",
        "ezweb.ne.jp",
        "au.com",
        "softbank.ne.jp",
        "i.softbank.jp",
        "nifty.com",
        "biglobe.ne.jp",
        "ocn.ne.jp",
        "so-net.ne.jp",
        "rakuten.co.jp",
    }
)
REPLY = "451 4.7.1 Greylisted: please try again in a few minutes"


def network(client: str) -> str:
    """CLIENT's network as greylisting counts it: its /24 (IPv4) or /64 (IPv6); the text itself if no address."""
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return client
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    prefix = 24 if address.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


def vouched_by_spf(settings: GreylistSettings, sender: str) -> bool:
    """Whether SENDER's domain is one `exempt` lets through when SPF passes for it (a big sender's or a
    configured domain): only then is SPF worth its lookups at RCPT."""
    domain = sender.rpartition("@")[2].lower()
    listed = {entry.lower() for entry in settings.exempt}
    return bool(domain) and any(_under(domain, name) for name in BIG_SENDERS | listed)


def exempt(settings: GreylistSettings, client: str, sender: str, recipient: str, spf_passed: bool) -> bool:
    """Whether this try skips greylisting (authenticated mail never reaches here)."""
    listed = {entry.lower() for entry in settings.exempt}
    if sender.lower() in listed or recipient.lower() in listed:
        return True
    if spf_passed and vouched_by_spf(settings, sender):
        return True
    try:
        address = ipaddress.ip_address(client)
    except ValueError:
        return False
    for entry in listed:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def _under(domain: str, name: str) -> bool:
    return domain == name or domain.endswith("." + name)


def passes(
    target: Connection | Tx, settings: GreylistSettings, client: str, sender: str, recipient: str, now: float
) -> bool:
    """Whether the try passes, recording it: a triplet seen first less than `delay` ago does not; one that
    passed once passes from then on, until not seen for `expiry`."""
    tx = tx_of(target)
    key = (network(client), sender.lower(), recipient.lower())
    rows = tx.run(
        "SELECT first_seen, last_seen, passed FROM greylist WHERE client = ? AND sender = ? AND recipient = ?", key
    )
    if not rows or now - float(rows[0][1]) > settings.expiry:
        tx.run(
            "INSERT INTO greylist (client, sender, recipient, first_seen, last_seen, passed) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (client, sender, recipient) DO UPDATE SET first_seen = excluded.first_seen,"
            " last_seen = excluded.last_seen, passed = excluded.passed",
            (*key, now, now, settings.delay <= 0),
        )
        return settings.delay <= 0
    passed = bool(rows[0][2]) or now - float(rows[0][0]) >= settings.delay
    tx.run(
        "UPDATE greylist SET last_seen = ?, passed = ? WHERE client = ? AND sender = ? AND recipient = ?",
        (now, passed, *key),
    )
    return passed


def forget(target: Connection | Tx, settings: GreylistSettings, now: float) -> int:
    """Drop the triplets not seen for `expiry`; how many."""
    return len(tx_of(target).run("DELETE FROM greylist WHERE last_seen < ? RETURNING 1", (now - settings.expiry,)))


FORGET_EVERY = 3600.0  # seconds between two sweeps of the expired triplets (made by the next try after it)


class Greylisting:
    """Greylisting as the MX asks it at RCPT, for a stranger's mail a recipient was accepted for: one write a
    try (the triplet's times), the expired triplets swept with a try at most every FORGET_EVERY seconds.

    The null sender (a bounce) is greylisted per recipient too, as postgrey does: a real server retries its
    bounces as it retries any mail, while exempting <> would let every spam cannon through by sending as one."""

    def __init__(self, settings: GreylistSettings, database: Database) -> None:
        self.settings = settings
        self._database = database
        self._swept_at = 0.0

    async def refuses(self, client: str, helo: str, sender: str, recipient: str) -> bool:
        """Whether this try of RECIPIENT must wait (and is recorded as tried). A store that fails lets it
        through, with one log line: greylisting only delays mail, it must not lose it."""
        settings = self.settings
        spf_passed = vouched_by_spf(settings, sender) and await asyncio.to_thread(_spf_passes, client, sender, helo)
        if exempt(settings, client, sender, recipient, spf_passed):
            return False
        now = time.time()
        sweep = now - self._swept_at >= FORGET_EVERY
        if sweep:
            self._swept_at = now

        def tried(tx: Tx) -> bool:
            if sweep:
                forget(tx, settings, now)
            return passes(tx, settings, client, sender, recipient, now)

        try:
            return not await self._database.transact(tried)
        except Exception as error:
            log.event("greylist_failed", client=client, sender=f"<{sender}>", to=recipient, error=repr(error))
            return False


def _spf_passes(client: str, sender: str, helo: str) -> bool:
    """Whether SPF passes for SENDER from CLIENT: pyspf through spf_check (its own DNS timeouts bound it; it
    blocks, so it runs in a thread). Imported here: the idle daemon does without pyspf and dnspython."""
    from jitaku.mail import spf_check

    try:
        return spf_check.check(client, sender, helo).result == "pass"
    except Exception as error:  # pyspf answers temperror for DNS trouble; anything else is not a pass either
        log.event("greylist_spf_failed", client=client, sender=f"<{sender}>", error=repr(error))
        return False
