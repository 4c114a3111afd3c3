"""What a From domain's DMARC record asks of receivers, so a list knows when to rewrite From.

A list re-sends mail under its own envelope and often alters it, so a post from a
domain publishing p=reject or p=quarantine fails DMARC at members' receivers
unless the list puts its own address in From. Discovery follows RFC 7489 §6.6.3.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import dns.asyncresolver
import dns.exception
import dns.resolver

from jitaku.domains import organizational_domain

Policy = Literal["none", "quarantine", "reject"]
_POLICIES: dict[str, Policy] = {"none": "none", "quarantine": "quarantine", "reject": "reject"}
_VERSION = re.compile(r"v\s*=\s*DMARC1\s*(;|$)")


class DmarcUnknown(Exception):
    """DNS could not say whether there is a record (timeout, SERVFAIL, unusable name).

    Not folded into "no record" or into a guessed policy: whether to rewrite From
    anyway, hold the post, or retry later is the caller's decision.
    """


@dataclass(frozen=True)
class DmarcPolicy:
    domain: str  # where the record was found: the From domain or its organizational domain
    policy: Policy  # as it applies to the From domain


async def lookup(domain: str) -> DmarcPolicy | None:
    """The policy for mail From DOMAIN; None when no single DMARC record applies. Raises DmarcUnknown."""
    domain = domain.lower().rstrip(".")
    records = await _records(domain)
    if records:
        # RFC 7489 §6.6.3 step 5: more than one record ends discovery; the org domain is not asked.
        return DmarcPolicy(domain, _tag_policy(records[0], "p")) if len(records) == 1 else None
    organizational = organizational_domain(domain)
    if organizational == domain:
        return None
    records = await _records(organizational)
    if len(records) != 1:
        return None
    tags = _tags(records[0])
    # An unusable sp= falls back to p=: for deciding whether to rewrite, the stricter reading is the safe one.
    tag = "sp" if tags.get("sp") in _POLICIES else "p"
    return DmarcPolicy(organizational, _tag_policy(records[0], tag))


async def _records(domain: str) -> list[str]:
    """The DMARC records at _dmarc.DOMAIN; other TXT records there are not DMARC's and do not count."""
    try:
        answer = await dns.asyncresolver.resolve(f"_dmarc.{domain}.", "TXT")
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as error:
        raise DmarcUnknown(f"_dmarc.{domain}: {error}") from error
    texts = [b"".join(rdata.strings).decode("ascii", "replace") for rdata in answer]
    return [text for text in texts if _VERSION.match(text)]


def _tag_policy(record: str, tag: str) -> Policy:
    """A v=DMARC1 record with a missing or unknown policy is treated as p=none (RFC 7489 §6.6.3 step 6)."""
    return _POLICIES.get(_tags(record).get(tag, ""), "none")


def _tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for item in record.split(";"):
        name, equals, value = item.partition("=")
        if equals:
            tags.setdefault(name.strip().lower(), value.strip().lower())
    return tags
