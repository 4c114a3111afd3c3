"""Telling bounces and auto-replies apart from posts, and reading who bounced.

Bounce formats are many and mostly non-standard (qmail, Exim, old Exchange...);
flufl.bounce (Mailman's detectors) knows them, so we do not write our own.
"""

from __future__ import annotations

import email
from email.utils import getaddresses

from flufl.bounce import all_failures

from jitaku.mail.dsn import SESSION_FIELD
from jitaku.mail.headers import parse

# Precedence values that mark machine-sent mail; "list" is absent on purpose: other lists' posts carry it.
_MACHINE_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply"})
_AUTOREPLY_FIELDS = ("X-Autoreply", "X-Autorespond", "X-Failed-Recipients")


def failures(message: bytes) -> tuple[set[str], set[str]]:
    """(permanent, temporary) failed recipients, lower-cased; both empty for anything that is not a bounce.

    Note that flufl.bounce itself returns them the other way round, (temporary, permanent).
    """
    try:
        temporary, permanent = all_failures(email.message_from_bytes(message))
    except Exception:
        # The heuristic detectors run over whatever arrived at -bounces@; a crash in one of
        # them must cost this one message's bounce score, never the intake.
        return set(), set()
    return _addresses(permanent), _addresses(temporary)


def refused_whole_session(message: bytes, recipient: str) -> bool:
    """Whether a DSN says that the server refused our whole session, not RECIPIENT (a block of our
    address, every recipient refused alike): our queue's DSNs say so per recipient (dsn.SESSION_FIELD)."""
    try:
        parts = list(email.message_from_bytes(message).walk())
    except Exception:  # whatever arrived at -bounces@; it then counts as an ordinary bounce
        return False
    for part in parts:
        if part.get_content_type() != "message/delivery-status" or not isinstance(part.get_payload(), list):
            continue
        for block in part.get_payload():
            if not isinstance(block, email.message.Message):
                continue
            named = str(block.get("Final-Recipient", "")).partition(";")[2].strip().lower()
            if named == recipient and str(block.get(SESSION_FIELD, "")).strip().lower() == "session":
                return True
    return False


def is_auto_reply(message: bytes) -> bool:
    """Whether a machine wrote this (vacation notice, bounce, robot): such mail is never passed on to members.

    `X-Auto-Response-Suppress` is not looked at: Outlook puts it on ordinary mail written by people.
    A null envelope sender also means this, but that is the caller's to check.
    """
    headers = parse(message)
    auto_submitted = str(headers.get("Auto-Submitted", "")).split("(")[0].strip().lower()
    if auto_submitted and auto_submitted != "no":
        return True
    if any(field in headers for field in _AUTOREPLY_FIELDS):
        return True
    if str(headers.get("Precedence", "")).strip().lower() in _MACHINE_PRECEDENCE:
        return True
    report_type = headers.get_param("report-type", header="Content-Type")
    return headers.get_content_type() == "multipart/report" and str(report_type).lower() == "delivery-status"


def _addresses(found: frozenset[bytes]) -> set[str]:
    text = [item.decode("ascii", "replace") for item in found]
    return {address.lower() for _name, address in getaddresses(text) if address}
