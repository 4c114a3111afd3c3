"""When a certificate's renewal comes due: apart from jitaku.acme.issue, so that the certs check can judge a failed
renewal without loading the acme package in every process that checks."""

from __future__ import annotations

from cryptography import x509


def renew_from(cert: x509.Certificate, renew_days: int) -> float:
    """When a certificate's renewal comes due: RENEW_DAYS before its end, or with a third of its lifetime left if
    that is later (Let's Encrypt's 6-day certificates renew at 2 days left, not on every look)."""
    start, end = cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp()
    return end - min(renew_days * 86400.0, (end - start) / 3)
