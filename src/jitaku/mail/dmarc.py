"""DMARC's verdict (RFC 7489) from header fields already split, as authheaders' check_dmarc gives it.

authheaders re-parses the whole message to find the From field (a tenth of a signed message's CPU on the
MX); this reads it from the fields jitaku has split once, then lets authheaders do the rest (the
_dmarc lookups through the cached resolver, the organizational domains through our parsed PSL,
alignment), so the result is the one authheaders would write. Mail with other than one From address
(RFC 7489 §6.6.1) is left to check_dmarc itself.

What repeats from message to message is remembered: a From value's addresses, an address's domain, and
a _dmarc record's tags for as long as the resolver's cache hands back the same answer (importing this
module gives authheaders that lookup).
"""

from __future__ import annotations

from email.utils import getaddresses
from typing import Any

import authheaders
import authheaders.dmarc_lookup
from authres.dmarc import DMARCAuthenticationResult

from jitaku.mail import results_header
from jitaku.memo import small_inputs_cache

_RECORDS_KEPT = 256  # each holds its answer (a few KiB)
# "_dmarc.<domain>" -> the resolver's answer and the tags authheaders read from it
_records: dict[str, tuple[Any, dict[str, str]]] = {}
_dns_query = authheaders.dmarc_lookup.dns_query
_lookup_receiver_record = authheaders.dmarc_lookup.lookup_receiver_record


def _receiver_record(host: str, dnsfunc: Any = _dns_query) -> dict[str, str]:
    """authheaders' lookup_receiver_record, reading each answer's tags once: the same answer object (the
    resolver's cached one, until its TTL runs out) gives the same tags."""
    if dnsfunc is not _dns_query:
        return dict(_lookup_receiver_record(host, dnsfunc))
    name = f"_dmarc.{host}"
    answer = _dns_query(name)
    if not answer:
        return {}
    known = _records.get(name)
    if known is None or known[0] is not answer:
        if len(_records) >= _RECORDS_KEPT:
            _records.clear()
        known = _records[name] = (answer, _tags(answer))
    return dict(known[1])


def _tags(answer: Any) -> dict[str, str]:
    """authheaders' reading of a _dmarc answer (RFC 7489 §6.6.3: exactly one record starting v=DMARC1)."""
    tags: dict[str, str] = {}
    for result in answer:
        text = str(result)
        if text[:9] == '"v=DMARC1':
            if tags:
                return {}
            tags = authheaders.dmarc_lookup.answer_to_dict(text)
    return tags


authheaders.dmarc_lookup.lookup_receiver_record = _receiver_record


@small_inputs_cache(maxsize=1024, max_chars=512)
def _addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(address for _name, address in getaddresses(values))


_get_domain_part = authheaders.get_domain_part


@small_inputs_cache(maxsize=1024, max_chars=256)
def _domain_part_of(address: str) -> str:
    """authheaders' get_domain_part, which compiles its regex and encodes the address on every call (for
    the From address and again for the envelope sender)."""
    domain: str = _get_domain_part(address)
    return domain


authheaders.get_domain_part = _domain_part_of


def _domain_part(address: str) -> str | None:
    try:
        return _domain_part_of(address)
    except IndexError:
        return None


NO_FROM = str(DMARCAuthenticationResult(result="permerror", result_comment="no From field", policy="none"))


def check(pairs: list[tuple[bytes, bytes]], spf: Any, dkim: Any) -> str | None:
    """The clause for the From field among PAIRS (name, raw value) given the SPF and DKIM results (authres'
    objects or results_header's), or None when there is not exactly one From address (authheaders' own
    check_dmarc decides then)."""
    values = tuple(
        value.replace(b"\r\n", b"").decode(errors="ignore").strip() for name, value in pairs if name.lower() == b"from"
    )
    if not values:  # no domain to check (RFC 7489 §6.6.1); authheaders' own check fails on it, losing SPF and DKIM too
        return NO_FROM
    addresses = _addresses(values)
    if len(addresses) != 1:
        return None
    (address,) = addresses
    domain = _domain_part(address)
    if domain is None:
        return results_header.dmarc("permerror", f"Unable to extract From domain: {address}", "none", "none")
    try:
        result, comment, domain, policy = authheaders.dmarc_per_from(domain, spf_result=spf, dkim_result=dkim)
    except authheaders.dmarc_lookup.DMARCException as error:
        return str(
            DMARCAuthenticationResult(result="permerror", result_comment=error, header_from=domain, policy="none")
        )
    if result == "none":
        return results_header.dmarc(result, None, domain, None)
    return results_header.dmarc(result, comment, domain, policy)
