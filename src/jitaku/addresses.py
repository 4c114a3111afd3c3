"""Addresses as every part of jitaku reads them: one plain form or nothing, and a list's role addresses.

A leaf module (it imports nothing from jitaku), so that the store, the mail services and the lists can
all ask what an address is without importing one another.

Relay tricks live in odd address forms (RFC 1123 §5.2.16 `%`-hacks, UUCP `!`
paths, RFC 5321 §4.1.2 source routes, quoted local parts hiding an `@`, IP
literals, trailing dots). Rather than interpret them, only a plain
`dot-atom@hostname` is ever treated as an address; everything else is refused.

A list owns LOCAL-request, LOCAL-owner and LOCAL-bounces[+VERP] besides LOCAL itself (Mailman's
spellings); `lists/verp.py` reads and signs what follows the `+`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

Role = Literal["request", "owner", "bounces"]  # the addresses a list owns besides its own: LOCAL-ROLE@DOMAIN
ListRole = Literal["post", Role]  # what mail to a list, or to one of its role addresses, came for
ROLES: tuple[Role, ...] = get_args(Role)

# RFC 5322 atext without "%" and "!" (routing characters of old relays), and without "/" "|" "`".
# "=" stays: VERP and SRS addresses (list-bounces+member=example.com@) are made of it.
_LOCAL = re.compile(r"[A-Za-z0-9#$&'*+\-=?^_{}~]+(\.[A-Za-z0-9#$&'*+\-=?^_{}~]+)*")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_DOMAIN = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}")
# An address as people write one in text, for obfuscated()
_IN_TEXT = re.compile(r"([A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+)@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")


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


def role_of(recipient: str) -> tuple[str, Role] | None:
    """(LOCAL@DOMAIN, role) for LOCAL-request/-owner/-bounces[+...]@DOMAIN; whether that is a list is the caller's call.

    The caller must look RECIPIENT up as a list first: a list may itself be named `team-owner`.
    """
    split = split_role(recipient)
    return None if split is None else (split[0], split[1])


def split_role(recipient: str) -> tuple[str, Role, str | None] | None:
    """(list address, role, VERP part after the `+` or None)."""
    local, at, domain = recipient.rpartition("@")
    if not (local and at and domain):
        return None
    folded = local.lower()
    # The VERP form comes first: a member's domain could itself end in "-owner" or "-request".
    index = folded.find("-bounces+")
    if index > 0:
        return f"{local[:index]}@{domain}", "bounces", local[index + len("-bounces+") :]
    for role in ROLES:
        suffix = f"-{role}"
        if folded.endswith(suffix) and len(local) > len(suffix):
            return f"{local[: -len(suffix)]}@{domain}", role, None
    return None


def obfuscated(text: str) -> str:
    """Every address in TEXT as "local at domain", as Mailman's archives show them: what a public archive page
    and the search index hold, so that no harvester reads an address there."""
    return _IN_TEXT.sub(r"\1 at \2", text)
