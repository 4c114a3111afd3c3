"""Organizational domains (RFC 7489 §3.2) from the Public Suffix List, loaded once per process.

A leaf module: DMARC alignment (mail, lists) and DDNS (which stands alone) both need it.
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList


@lru_cache(maxsize=1)
def _suffixes() -> PublicSuffixList:
    return PublicSuffixList()


@lru_cache(maxsize=4096)
def organizational_domain(domain: str) -> str:
    """www.example.co.jp -> example.co.jp; a public suffix itself stays as it is."""
    domain = domain.lower().rstrip(".")
    return _suffixes().privatesuffix(domain) or domain
