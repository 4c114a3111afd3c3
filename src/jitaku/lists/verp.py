"""VERP return paths and a list's role addresses (Mailman's spellings).

Each copy a list sends out carries its own envelope sender,
`LOCAL-bounces+member=example.com@DOMAIN`, so that a bounce names the member it
is about even when the bounce itself is unparseable. The member's `@` becomes
the *last* `=` in the encoded form: a domain never contains `=`, so splitting
there decodes exactly whatever `=`, `+`, `.` or `-` the member's local part has.

A list's own local part is assumed not to contain `-bounces+`; the member's may.
"""

from __future__ import annotations

_ROLES = ("request", "owner", "bounces")


def bounce_address(list_address: str, member: str) -> str:
    """The envelope sender for MEMBER's copy of a post to LIST_ADDRESS."""
    local, at, domain = list_address.rpartition("@")
    member_local, member_at, member_domain = member.rpartition("@")
    if not (local and at and domain and member_local and member_at and member_domain):
        raise ValueError(f"not local@domain: {list_address!r} / {member!r}")
    return f"{local}-bounces+{member_local}={member_domain}@{domain}"


def parse_bounce_address(recipient: str) -> tuple[str, str | None] | None:
    """(list address, member) for a bounces address; the member is None when the VERP part is absent or unreadable."""
    split = _split(recipient)
    if split is None or split[1] != "bounces":
        return None
    list_address, _role, verp = split
    if verp is None:
        return list_address, None
    member_local, equals, member_domain = verp.rpartition("=")
    if not (member_local and equals and member_domain):
        return list_address, None
    return list_address, f"{member_local}@{member_domain}"


def role_of(recipient: str) -> tuple[str, str] | None:
    """(LOCAL@DOMAIN, role) for LOCAL-request/-owner/-bounces[+...]@DOMAIN; whether that is a list is the caller's call.

    The caller must look RECIPIENT up as a list first: a list may itself be named `team-owner`.
    """
    split = _split(recipient)
    return None if split is None else (split[0], split[1])


def _split(recipient: str) -> tuple[str, str, str | None] | None:
    """(list address, role, VERP part after the `+` or None)."""
    local, at, domain = recipient.rpartition("@")
    if not (local and at and domain):
        return None
    folded = local.lower()
    # The VERP form comes first: a member's domain could itself end in "-owner" or "-request".
    index = folded.find("-bounces+")
    if index > 0:
        return f"{local[:index]}@{domain}", "bounces", local[index + len("-bounces+") :]
    for role in _ROLES:
        suffix = f"-{role}"
        if folded.endswith(suffix) and len(local) > len(suffix):
            return f"{local[: -len(suffix)]}@{domain}", role, None
    return None
