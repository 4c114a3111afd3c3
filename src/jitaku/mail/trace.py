"""The Received trace header (RFC 5321 §4.4)."""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formatdate


@dataclass(frozen=True)
class Session:
    """What a message's arrival looked like on the wire."""

    client_ip: str
    helo: str
    tls: bool
    authenticated_as: str | None


def received(session: Session, hostname: str, queue_id: str, recipients: list[str]) -> bytes:
    # RFC 3848 protocol names: ESMTP, ESMTPS (TLS), ESMTPA (AUTH), ESMTPSA (both).
    protocol = "ESMTP" + ("S" if session.tls else "") + ("A" if session.authenticated_as else "")
    helo = "".join(ch for ch in session.helo if ch.isprintable() and ch not in "()\\")[:255] or "unknown"
    target = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    return (
        f"Received: from {helo} ([{session.client_ip}])\r\n"
        f"\tby {hostname} (jitaku) with {protocol} id {queue_id}{target};\r\n"
        f"\t{formatdate(localtime=True)}\r\n"
    ).encode("utf-8", "replace")
