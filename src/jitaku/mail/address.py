"""Envelope addresses as the relay policy sees them: one plain form or nothing.

Relay tricks live in odd address forms (RFC 1123 §5.2.16 `%`-hacks, UUCP `!`
paths, RFC 5321 §4.1.2 source routes, quoted local parts hiding an `@`, IP
literals, trailing dots). Rather than interpret them, only a plain
`dot-atom@hostname` is ever treated as an address; everything else is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 5322 atext without "%" and "!" (routing characters of old relays), and without "/" "|" "`".
# "=" stays: VERP and SRS addresses (list-bounces+member=example.com@) are made of it.
_LOCAL = re.compile(r"[A-Za-z0-9#$&'*+\-=?^_{}~]+(\.[A-Za-z0-9#$&'*+\-=?^_{}~]+)*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}")


@dataclass(frozen=True)
class Address:
    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


def parse(text: str) -> Address | None:
    """Return the address with its domain lower-cased, or None for any form that is not plain."""
    local, at, domain = text.rpartition("@")
    if not at or len(text) > 320 or len(local) > 64:
        return None
    if not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return None
    if domain.replace(".", "").isdigit():
        return None
    return Address(local, domain.lower())


def normalize(text: str) -> str:
    """The form addresses are stored and compared in: the whole address lower-cased."""
    return text.strip().lower()
