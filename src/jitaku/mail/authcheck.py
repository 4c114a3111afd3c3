"""Inbound verification: SPF, DKIM and DMARC results as an Authentication-Results header (RFC 8601)."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import authheaders
import authheaders.dmarc_lookup

from jitaku import log, resolver
from jitaku.domains import organizational_domain
from jitaku.mail import dkim as _openssl_rsa  # noqa: F401  (dkimpy verifies with OpenSSL's RSA once imported)
from jitaku.mail import dkim_verify, dmarc, headers, results_header, spf_check

# authheaders re-reads and re-parses the whole Public Suffix List for every
# DMARC lookup and alignment check (~50 ms each); give it ours, parsed once.
# It holds two references: the module's own and the one its package imported.
authheaders.dmarc_lookup.get_org_domain = organizational_domain
authheaders.get_org_domain = organizational_domain


def _ours(field: bytes, authserv_id: str) -> bool:
    """Whether FIELD is an Authentication-Results header naming AUTHSERV_ID (ours) as its author."""
    if headers.field_name(field) != "authentication-results":
        return False
    words = headers.field_value(field).split(";", 1)[0].split()
    return bool(words) and words[0].lower() == authserv_id.lower()


_RESULTS = re.compile(rb"(?im)^authentication-results[ \t]*:")


def strip_forged(message: bytes, authserv_id: str) -> bytes:
    """Drop Authentication-Results that claim to be ours (RFC 8601 §5): only we may write those.

    MESSAGE itself comes back, not a copy, when it has no Authentication-Results at all (most mail).
    """
    head = headers.header_section(message).lower()
    if b"authentication-results" not in head or not _RESULTS.search(head):  # the regex only where it may match
        return message
    fields, body = headers.split_fields(message)
    return b"".join(field for field in fields if not _ours(field, authserv_id)) + body


def _starts_a_line(head: bytes, text: bytes) -> bool:
    """Whether a line of HEAD begins with TEXT: what `(?m)^TEXT` finds, without the regex engine trying every
    byte (a case-blind regex over a signed header was 3 us; HEAD lower-cased once and two finds, 0.5)."""
    return head.startswith(text) or b"\n" + text in head


def _authenticate(message: bytes, authserv_id: str, ip: str, mail_from: str, helo: str, crlf_checked: bool) -> bytes:
    head = headers.header_section(message).lower()
    signed = _starts_a_line(head, b"dkim-signature:")
    sealed = _starts_a_line(head, b"arc-seal:")
    try:
        header = _results(message, authserv_id, ip, mail_from, helo, signed, sealed, crlf_checked)
        if not signed:
            # authheaders calls an unsigned message's DKIM "fail"; RFC 8601 §2.7.1 says "none"
            header = header.replace("; dmarc=", "; dkim=none; dmarc=", 1)
    except Exception as error:  # a message authheaders cannot parse still gets a header, not a crash
        if resolver.missed():  # a lookup cut short under cached_only, not the message: redone in a thread
            raise resolver.NotCached from error
        log.event("authcheck_failed", error=repr(error))
        header = f"Authentication-Results: {authserv_id}; none"
    return str(header).encode("utf-8", "surrogateescape") + b"\r\n"


def _results(
    message: bytes, authserv_id: str, ip: str, mail_from: str, helo: str, signed: bool, sealed: bool, crlf_checked: bool
) -> str:
    """authheaders.authenticate_message's header: DKIM and DMARC read from the fields split once
    (dkim_verify, dmarc) and SPF verdicts reused (spf_check) whenever they decide as authheaders would,
    authheaders and dkimpy deciding the rest."""
    parsed = dkim_verify.parse(message, crlf_checked)
    if parsed is None:
        head = headers.header_section(message)
        has_from = _FROM.search(head) is not None  # authheaders' DMARC check fails without one
        header = str(
            authheaders.authenticate_message(
                # SPF and DMARC read only the header; dkimpy splits the whole message into lines, twice
                message if signed or sealed else head + b"\r\n",
                authserv_id,
                spf=True,
                dkim=signed,
                dmarc=has_from,
                # the result a list's own ARC set must carry on (RFC 8617 §5.1.2)
                arc=sealed,
                ip=ip,
                mail_from=mail_from,
                helo=helo,
            )
        )
        return header if has_from else f"{header}; {dmarc.NO_FROM}"
    pairs, body = parsed
    spf = spf_check.check(ip, mail_from, helo)
    dkim: Any = None
    if signed:
        verdict = dkim_verify.verify(pairs, body)
        dkim = (
            authheaders.check_dkim(message)
            if verdict is None
            else results_header.Dkim(verdict.result, verdict.domain, verdict.identity)
        )
    arc = str(authheaders.check_arc(message)) if sealed else None
    dmarc_clause = dmarc.check(pairs, spf, dkim) or str(authheaders.check_dmarc(message, spf, dkim))
    clauses = [spf.clause()]
    if dkim is not None:
        clauses.append(dkim.clause() if isinstance(dkim, results_header.Dkim) else str(dkim))
    if arc is not None:
        clauses.append(arc)
    clauses.append(dmarc_clause)
    return results_header.header(authserv_id, tuple(clauses))


_FROM = re.compile(rb"(?im)^from[ \t]*:")
_FAILED = re.compile(rb"\b(spf|dmarc)=(fail|softfail)\b", re.IGNORECASE)


def forged(fields: list[bytes], authserv_id: str) -> set[str]:
    """The checks (spf, dmarc) that our own Authentication-Results among a message's header FIELDS say
    the sender failed: mail that may well not come from whom it names, which a list must neither
    distribute nor answer."""
    failed: set[str] = set()
    for field in fields:
        if _ours(field, authserv_id):
            failed |= {method.decode().lower() for method, _result in _FAILED.findall(field)}
    return failed


# Up to this size a check runs on the event loop when the cache has every record it needs: ~0.25 ms for
# a signed 4 KiB message, less than the hand-off to a thread and back costs, ~0.7 ms at 64 KiB; beyond,
# canonicalizing and hashing the body (~12 ms per MiB of whitespace-heavy text) would stall every
# other session.
ON_LOOP_BYTES = 64 * 1024


async def authentication_results(
    message: bytes, authserv_id: str, ip: str, mail_from: str, helo: str, crlf_checked: bool = False
) -> bytes:
    """The header line (with CRLF) to prepend; DNS lookups go through `[dns] nameservers`. CRLF_CHECKED: the
    caller knows that every line of MESSAGE ends in CRLF (as the SMTP server does of what it accepts).

    A check that would wait for DNS (a record not cached) is redone in a thread, so it never blocks
    the loop: the attempt on the loop is thrown away, the thread's lookups fill the cache."""
    if len(message) <= ON_LOOP_BYTES:
        header: bytes | None = None
        with resolver.cached_only() as attempt:
            try:
                header = _authenticate(message, authserv_id, ip, mail_from, helo, crlf_checked)
            except resolver.NotCached:
                pass
        if header is not None and not attempt.missed:
            return header
    return await asyncio.to_thread(_authenticate, message, authserv_id, ip, mail_from, helo, crlf_checked)
