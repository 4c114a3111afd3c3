"""SPF's verdict (RFC 7208) by pyspf, remembered while the DNS answers it was drawn from stay the same.

pyspf parses the sender's record and every address in it for each message (0.1-0.2 ms of the MX's CPU
per message, a tenth of a signed message's cost), although a sender that writes again from the same
address reaches the same verdict as long as the answers it looks up have not changed. So a verdict is
kept with the answers pyspf was given (the resolver cache's own objects, the same until their TTL runs
out); the next message from the same client IP, MAIL FROM and HELO gets it when asking for those names
again hands back the very same objects. pyspf is deterministic given its inputs and its answers, except
for the %{t} macro (the time), so a verdict drawn from a record using it is not kept, nor one that
depended on a failed lookup (temperror).

Importing this module gives pyspf our lookup: dnspython's resolve() rather than its deprecated query(),
which warned on every call.
"""

from __future__ import annotations

import threading
from typing import Any

import dns.exception
import dns.rdatatype
import dns.resolver
import spf
from authres import SPFAuthenticationResult

from jitaku.mail.results_header import Spf

_KEPT = 512  # each holds the answers it was drawn from (a few KiB): bounded well inside the 80 MB budget
# Results whose reaching depended on nothing but the inputs and the answers.
_KEEPABLE = frozenset({"pass", "fail", "softfail", "neutral", "none", "permerror"})

# (name, qtype, timeout) asked, and what stands for the answer (see _answer); None for an error
_Asked = tuple[str, str, float, Any]

_local = threading.local()
_verdicts: dict[tuple[str, str, str], tuple[tuple[str, str], tuple[_Asked, ...]]] = {}


def check(ip: str, mail_from: str, helo: str) -> Spf:
    """authheaders' check_spf: pyspf's check2, or its verdict for the same inputs and the same answers."""
    key = (ip, mail_from, helo)
    known = _verdicts.get(key)
    if known is not None and all(_same(*asked) for asked in known[1]):
        result, reason = known[0]
    else:
        asked: list[_Asked] = []
        _local.asked = asked
        try:
            result, reason = spf.check2(ip, mail_from, helo)
        finally:
            _local.asked = None
        if result in _KEEPABLE and all(seen is not None and not _timed(seen) for _n, _q, _t, seen in asked):
            if len(_verdicts) >= _KEPT:
                _verdicts.clear()
            _verdicts[key] = ((result, reason), tuple(asked))
    if result is None:  # authheaders' own failure for a check pyspf could not make
        SPFAuthenticationResult(result=None, reason=None, smtp_mailfrom=mail_from, smtp_helo=helo)
    return Spf(result, reason, mail_from, helo)


def _answer(name: str, qtype: str, timeout: float) -> tuple[Any, Any]:
    """dnspython's answer to what pyspf asks (as its query() asks it: search on), None for NXDOMAIN or no
    data, and the object that stands for it: the cached Answer, or the cached response that said no."""
    try:
        answer = dns.resolver.resolve(name, qtype, lifetime=timeout, search=True)
    except dns.resolver.NoAnswer as error:
        return None, error.response()  # type: ignore[no-untyped-call]
    except dns.resolver.NXDOMAIN as error:
        return None, next(iter(error.responses().values()), None)  # type: ignore[no-untyped-call]
    return answer, answer


def _same(name: str, qtype: str, timeout: float, seen: Any) -> bool:
    try:
        return _answer(name, qtype, timeout)[1] is seen
    except dns.exception.DNSException:
        return False


def _lookup(name: str, qtype: str, tcpfallback: bool = True, timeout: float = 30) -> list[tuple[tuple[str, str], Any]]:
    """pyspf's DNSLookup_dnspython, through resolve() and noting what it was given."""
    asked: list[_Asked] | None = getattr(_local, "asked", None)
    try:
        answer, seen = _answer(name, qtype, timeout)
    except BaseException as error:
        if asked is not None:
            asked.append((name, qtype, timeout, None))
        if isinstance(error, (dns.exception.Timeout, dns.resolver.NoNameservers)):
            raise spf.TempError("DNS " + str(error)) from None
        raise
    if asked is not None:
        asked.append((name, qtype, timeout, seen))
    found: list[tuple[tuple[str, str], Any]] = []
    for rdata in answer or ():
        if qtype in ("A", "AAAA"):
            found.append(((name, qtype), rdata.address))
        elif qtype == "MX":
            found.append(((name, qtype), (rdata.preference, rdata.exchange)))
        elif qtype == "PTR":
            found.append(((name, qtype), rdata.target.to_text(True)))
        elif qtype in ("TXT", "SPF"):
            found.append(((name, qtype), rdata.strings))
    return found


def _timed(seen: Any) -> bool:
    """Whether an answer holds a record using the %{t} macro (the current time)."""
    rrset = getattr(seen, "rrset", None)
    if rrset is None or rrset.rdtype not in (dns.rdatatype.TXT, 99):
        return False
    return any(b"%{t" in b"".join(rdata.strings).lower() for rdata in rrset)


spf.DNSLookup = _lookup
