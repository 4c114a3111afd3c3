"""The Received trace header (RFC 5321 §4.4)."""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from email.utils import formatdate
from functools import lru_cache

from jitaku.memo import small_inputs_cache


@dataclass(frozen=True)
class Session:
    """What a message's arrival looked like on the wire."""

    client_ip: str
    helo: str
    tls: bool
    authenticated_as: str | None


@lru_cache(maxsize=1024)
def address_literal(client_ip: str) -> str:
    """CLIENT_IP as RFC 5321 §4.1.3 writes an address: "[192.0.2.1]", "[IPv6:2001:db8::1]". A zone
    ("%eth0") is this host's own business and no part of the literal. Remembered per address: parsing one was
    a fiftieth of a message's CPU, and a busy server hears from the same few clients again and again."""
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return f"[{client_ip}]"  # "?" when the peer's address was not known
    if isinstance(address, ipaddress.IPv6Address):
        return f"[IPv6:{address.compressed}]"
    return f"[{address}]"


def received(session: Session, hostname: str, queue_id: str, recipients: list[str], client_name: str = "") -> bytes:
    """CLIENT_NAME, the client's confirmed reverse DNS name when looked up, goes before its address, as Postfix
    writes it ("from HELO (NAME [IP])"), which is where SpamAssassin reads it."""
    # RFC 3848 protocol names: ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both).
    protocol = "ESMTP" + ("S" if session.tls else "") + ("A" if session.authenticated_as else "")
    helo = _printable(session.helo)
    target = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    return (
        f"Received: from {helo} ({client_name + ' ' if client_name else ''}{address_literal(session.client_ip)})\r\n"
        f"\tby {hostname} (jitaku) with {protocol} id {queue_id}{target};\r\n"
        f"\t{_date(int(time.time()))}\r\n"
    ).encode("utf-8", "replace")


@small_inputs_cache(maxsize=1024, max_chars=255)
def _printable(helo: str) -> str:
    """HELO as a comment may hold it; remembered, as clients say the same name with every message."""
    return "".join(ch for ch in helo if ch.isprintable() and ch not in "()\\")[:255] or "unknown"


@lru_cache(maxsize=1)
def _date(second: int) -> str:
    """The RFC 5322 date of SECOND in local time: made once a second, not for each of the hundreds of messages
    a busy second brings (formatting it was a twentieth of an unsigned message's CPU)."""
    return formatdate(second, localtime=True)
