"""DMARC's verdict (RFC 7489) from header fields already split, as authheaders' check_dmarc gives it.

authheaders re-parses the whole message to find the From field (a tenth of a signed message's CPU on the
MX); this reads it from the fields jitaku has split once, then lets authheaders do the rest (the
_dmarc lookups through the cached resolver, the organizational domains through our parsed PSL,
alignment), so the result is the one authheaders would write. Mail with other than one From address
(RFC 7489 §6.6.1) is left to check_dmarc itself.
"""

from __future__ import annotations

from email.utils import getaddresses

import authheaders
import authheaders.dmarc_lookup
from authres import DKIMAuthenticationResult, SPFAuthenticationResult
from authres.dmarc import DMARCAuthenticationResult


def check(
    pairs: list[tuple[bytes, bytes]],
    spf: SPFAuthenticationResult | None,
    dkim: DKIMAuthenticationResult | None,
) -> DMARCAuthenticationResult | None:
    """The verdict for the From field among PAIRS (name, raw value) given the SPF and DKIM results, or
    None when there is not exactly one From address (authheaders' own check_dmarc decides then)."""
    values = (
        value.replace(b"\r\n", b"").decode(errors="ignore").strip() for name, value in pairs if name.lower() == b"from"
    )
    addresses = [address for _name, address in getaddresses(values)]
    if len(addresses) != 1:
        return None
    (address,) = addresses
    try:
        domain: str = authheaders.get_domain_part(address)
    except IndexError:
        return DMARCAuthenticationResult(
            result="permerror",
            result_comment=f"Unable to extract From domain: {address}",
            header_from="none",
            policy="none",
        )
    try:
        result, comment, domain, policy = authheaders.dmarc_per_from(domain, spf_result=spf, dkim_result=dkim)
    except authheaders.dmarc_lookup.DMARCException as error:
        return DMARCAuthenticationResult(result="permerror", result_comment=error, header_from=domain, policy="none")
    if result == "none":
        return DMARCAuthenticationResult(result=result, header_from=domain)
    return DMARCAuthenticationResult(result=result, result_comment=comment, header_from=domain, policy=policy)
