"""The Authentication-Results text authres writes (RFC 8601), for the plain values the MX's own checks give.

authres builds an object per clause and quotes each value with regexes compiled per call: 60-70 us of
every message, for text that is the same for every message from the same sender. Here each clause is
still written by authres, but once per distinct set of values; the objects DMARC reads in between
(authheaders' dmarc_per_from) are plain ones with the attributes it uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from authres import AuthenticationResultsHeader, DKIMAuthenticationResult, SPFAuthenticationResult
from authres.dmarc import DMARCAuthenticationResult

from jitaku.memo import small_inputs_cache

_KEPT = 1024
_MAX_CHARS = 1024  # values a stranger chose (d=, i=, a reason): longer ones are written every time


class Spf:
    """SPF's result as authheaders' DMARC check reads it, and may rewrite its smtp.mailfrom (to the domain)."""

    def __init__(self, result: str, reason: str, mail_from: str, helo: str) -> None:
        self.result = result
        self.reason = reason
        self._mail_from = mail_from
        self._helo = helo
        self._rewritten: tuple[str | None] | None = None

    @property
    def smtp_mailfrom(self) -> str | None:
        """What authres' property gives: the value last set, None for an empty one never set."""
        if self._rewritten is not None:
            return self._rewritten[0]
        return self._mail_from or None

    @smtp_mailfrom.setter
    def smtp_mailfrom(self, value: str | None) -> None:
        self._rewritten = (value,)

    def clause(self) -> str:
        return _spf(self.result, self.reason, self._mail_from, self._helo, self._rewritten)


@dataclass(slots=True)
class Dkim:
    """DKIM's result as authheaders' DMARC check reads it."""

    result: str
    header_d: str
    header_i: str

    def clause(self) -> str:
        return _dkim(self.result, self.header_d, self.header_i)


@small_inputs_cache(maxsize=_KEPT, max_chars=_MAX_CHARS)
def _spf(result: str, reason: str, mail_from: str, helo: str, rewritten: tuple[str | None] | None) -> str:
    spf = SPFAuthenticationResult(result=result, reason=reason, smtp_mailfrom=mail_from, smtp_helo=helo)
    if rewritten is not None:
        spf.smtp_mailfrom = rewritten[0]
    return str(spf)


@small_inputs_cache(maxsize=_KEPT, max_chars=_MAX_CHARS)
def _dkim(result: str, header_d: str, header_i: str) -> str:
    return str(DKIMAuthenticationResult(result=result, header_d=header_d, header_i=header_i))


@small_inputs_cache(maxsize=_KEPT, max_chars=_MAX_CHARS)
def dmarc(result: str, comment: str | None, header_from: str, policy: str | None) -> str:
    """DMARC's clause: with a comment and a policy, or (result "none") neither, as authheaders writes it."""
    if comment is None and policy is None:
        return str(DMARCAuthenticationResult(result=result, header_from=header_from))
    return str(DMARCAuthenticationResult(result=result, result_comment=comment, header_from=header_from, policy=policy))


class _Written:
    """A clause already written, for authres to join into the header."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __str__(self) -> str:
        return self._text


@small_inputs_cache(maxsize=_KEPT, max_chars=_MAX_CHARS)
def header(authserv_id: str, clauses: tuple[str, ...]) -> str:
    """The whole header (without CRLF) as authres joins its clauses."""
    return str(AuthenticationResultsHeader(authserv_id=authserv_id, results=[_Written(clause) for clause in clauses]))
