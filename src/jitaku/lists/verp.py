"""VERP return paths, signed (which role a list address names is `addresses.role_of`, Mailman's spellings).

Each copy a list sends out carries its own envelope sender, so that a bounce names the member it is
about even when the bounce itself is unparseable:

    LOCAL-bounces+TAG=member=example.com@DOMAIN

TAG is a keyed hash of the member's address (eight base32 letters, 40 bits, as SRS signs its
addresses): anyone can send a null-sender DSN to a bounces address, and without it five forged ones
disabled any member. A bounce to an address whose tag does not hold (an unsigned one from before
signing, a guessed one) names nobody. Base32 in lower case survives a server that folds the case of
what it bounces to.

The member's `@` becomes the *last* `=`: a domain never contains `=`, so splitting there decodes
exactly whatever `=`, `+`, `.` or `-` the member's local part has; the tag has none.

RFC 5321 §4.5.3.1.1 allows 64 octets in a local part, and some servers refuse more. When the readable
form would be longer, the address carries only a longer tag, `LOCAL-bounces+CODE@DOMAIN`, that the
list finds among its members' codes: it names the member and signs at once (80 bits).

A list's own local part is assumed not to contain `-bounces+`; the member's may.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from jitaku.addresses import split_role

TAG_LENGTH = 8  # base32 letters: 40 bits
CODE_LENGTH = 16  # 80 bits, when the address holds the code alone
LOCAL_PART_MAX = 64  # octets, RFC 5321 §4.5.3.1.1
_BASE32 = frozenset("abcdefghijklmnopqrstuvwxyz234567")


@dataclass(frozen=True)
class BounceAddress:
    """What a bounces address says; `signed_member` decides whether to believe it."""

    list_address: str
    member: str | None  # the member the readable form names
    tag: str | None  # the readable form's tag, or the code of the compact form; None: unsigned


def _digest(key: bytes, member: str) -> str:
    mac = hmac.new(key, b"verp\0" + member.lower().encode(), hashlib.sha256).digest()
    return base64.b32encode(mac).decode().lower()


def bounce_address(list_address: str, member: str, key: bytes) -> str:
    """The envelope sender for MEMBER's copy of a post to LIST_ADDRESS, signed with the list's KEY."""
    local, at, domain = list_address.rpartition("@")
    member_local, member_at, member_domain = member.rpartition("@")
    if not (local and at and domain and member_local and member_at and member_domain):
        raise ValueError(f"not local@domain: {list_address!r} / {member!r}")
    digest = _digest(key, member)
    readable = f"{local}-bounces+{digest[:TAG_LENGTH]}={member_local}={member_domain}"
    if len(readable.encode()) <= LOCAL_PART_MAX:
        return f"{readable}@{domain}"
    # Only a list whose own local part is over 39 octets still goes past 64 here: most servers take it.
    return f"{local}-bounces+{digest[:CODE_LENGTH]}@{domain}"


def parse_bounce_address(recipient: str) -> BounceAddress | None:
    """What a bounces address names; None for any other address."""
    split = split_role(recipient)
    if split is None or split[1] != "bounces":
        return None
    list_address, _role, verp = split
    if verp is None:
        return BounceAddress(list_address, None, None)
    if "=" not in verp:
        return BounceAddress(list_address, None, verp.lower() if _is_tag(verp, CODE_LENGTH) else None)
    rest, _equals, member_domain = verp.rpartition("=")
    tag, equals, member_local = rest.partition("=")
    if not (equals and _is_tag(tag, TAG_LENGTH)):
        tag, member_local = "", rest  # unsigned: LOCAL-bounces+member=example.com, as before signing
    if not (member_local and member_domain):
        return BounceAddress(list_address, None, None)
    return BounceAddress(list_address, f"{member_local}@{member_domain}".lower(), tag.lower() or None)


def signed_member(address: BounceAddress, key: bytes, members: Iterable[str]) -> str | None:
    """The member ADDRESS was made for, if its tag holds under KEY; None for an unsigned or badly signed one.
    The compact form is looked for among MEMBERS."""
    if address.tag is None:
        return None
    if address.member is not None:
        wanted = _digest(key, address.member)[:TAG_LENGTH]
        return address.member if hmac.compare_digest(wanted, address.tag) else None
    for member in members:
        if hmac.compare_digest(_digest(key, member)[:CODE_LENGTH], address.tag):
            return member
    return None


def _is_tag(text: str, length: int) -> bool:
    return len(text) == length and set(text.lower()) <= _BASE32
