"""Delivery status notifications: RFC 3464 multipart/report bounces for recipients we gave up on."""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from email.utils import formatdate, make_msgid

from jitaku.mail.transport import Outcome

_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")
# Says that the server refused the whole session, not this recipient (transport.Outcome.session_wide).
SESSION_FIELD = "X-Jitaku-Refused"


def status_of(outcome: Outcome) -> str:
    """The enhanced status code of an outcome (RFC 3463), derived from the reply when it has none."""
    match = _STATUS.search(outcome.reply)
    if match:
        return match.group(1)
    if outcome.delivered:
        return "2.0.0"
    return "5.0.0" if outcome.permanent else "4.0.0"


def _header_block(original: bytes) -> bytes:
    end = original.find(b"\r\n\r\n")
    return original if end < 0 else original[: end + 2]


def bounce(
    *,
    reporting_host: str,
    from_address: str,
    to: str,
    queue_id: str,
    arrival_date: float,
    failed: Sequence[Outcome],
    original: bytes,
) -> bytes:
    boundary = f"{queue_id}.{secrets.token_hex(8)}/{reporting_host}"
    lines = [
        f"This is the mail system at host {reporting_host}.",
        "",
        "I'm sorry to have to inform you that your message could not",
        "be delivered to one or more recipients. The details are below.",
        "",
    ]
    for outcome in failed:
        where = f" (host {outcome.host} said: {outcome.reply})" if outcome.host else f" ({outcome.reply})"
        lines.append(f"<{outcome.recipient}>:{where}")
    human = "\r\n".join(lines) + "\r\n"
    per_message = (
        f"Reporting-MTA: dns; {reporting_host}\r\n"
        f"X-Jitaku-Queue-ID: {queue_id}\r\n"
        f"Arrival-Date: {formatdate(arrival_date)}\r\n"
    )
    per_recipient = ""
    for outcome in failed:
        per_recipient += (
            f"\r\nFinal-Recipient: rfc822; {outcome.recipient}\r\nAction: failed\r\nStatus: {status_of(outcome)}\r\n"
        )
        if outcome.session_wide:  # an extension field (RFC 3464 §2.4): the list runner reads it
            per_recipient += f"{SESSION_FIELD}: session\r\n"
        if outcome.host:
            per_recipient += f"Remote-MTA: dns; {outcome.host}\r\n"
            per_recipient += f"Diagnostic-Code: smtp; {_one_line(outcome.reply)}\r\n"
        else:
            per_recipient += f"X-Jitaku-Diagnostic: {_one_line(outcome.reply)}\r\n"
    message = (
        f"From: Mail Delivery System <{from_address}>\r\n"
        f"To: <{to}>\r\n"
        f"Subject: Undelivered Mail Returned to Sender\r\n"
        f"Date: {formatdate(localtime=True)}\r\n"
        f"Message-ID: {make_msgid(domain=reporting_host)}\r\n"
        f"Auto-Submitted: auto-replied\r\n"
        f"MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"\r\n'
        f"\r\n"
        f"This is a MIME-encapsulated message.\r\n"
        f"\r\n--{boundary}\r\n"
        f"Content-Description: Notification\r\n"
        f"Content-Type: text/plain; charset=us-ascii\r\n"
        f"\r\n{human}"
        f"\r\n--{boundary}\r\n"
        f"Content-Description: Delivery report\r\n"
        f"Content-Type: message/delivery-status\r\n"
        f"\r\n{per_message}{per_recipient}"
        f"\r\n--{boundary}\r\n"
        f"Content-Description: Undelivered Message Headers\r\n"
        f"Content-Type: text/rfc822-headers\r\n"
        f"\r\n"
    ).encode("utf-8", "replace")
    return message + _header_block(original) + f"\r\n--{boundary}--\r\n".encode()


def _one_line(text: str) -> str:
    return " ".join(text.split())
