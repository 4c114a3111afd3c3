"""Telling bounces and auto-replies apart from posts, and reading who bounced.

Bounce formats are many and mostly non-standard (qmail, Exim, old Exchange...);
flufl.bounce (Mailman's detectors) knows them, so we do not write our own.
"""

from __future__ import annotations

import email
from dataclasses import dataclass
from email.utils import getaddresses

from flufl.bounce import all_failures

from jitaku.mail.dsn import SESSION_FIELD

# Precedence values that mark machine-sent mail; "list" is absent on purpose: other lists' posts carry it.
_MACHINE_PRECEDENCE = frozenset({"bulk", "junk", "auto_reply"})
_AUTOREPLY_FIELDS = ("X-Autoreply", "X-Autorespond", "X-Failed-Recipients")


@dataclass(frozen=True)
class Failures:
    """Who a bounce says failed, lower-cased; all empty for anything that is not a bounce."""

    permanent: set[str]
    temporary: set[str]
    # refused with our whole session, not each (a block of our address, every recipient refused alike): our
    # queue's DSNs say so per recipient (dsn.SESSION_FIELD)
    whole_session: set[str]


def failures(message: bytes) -> Failures:
    """Who MESSAGE says failed, from one parse of it (a bounce may carry a whole message of megabytes).

    Note that flufl.bounce itself returns them the other way round, (temporary, permanent).
    """
    try:
        parsed = email.message_from_bytes(message)
    except Exception:  # whatever arrived at -bounces@
        return Failures(set(), set(), set())
    try:
        temporary, permanent = all_failures(parsed)
    except Exception:
        # The heuristic detectors run over whatever arrived at -bounces@; a crash in one of
        # them must cost this one message's bounce score, never the intake.
        temporary = permanent = frozenset()
    return Failures(_addresses(permanent), _addresses(temporary), _refused_whole_session(parsed))


def _refused_whole_session(message: email.message.Message) -> set[str]:
    refused: set[str] = set()
    try:
        parts = list(message.walk())
    except Exception:  # then it counts as an ordinary bounce
        return refused
    for part in parts:
        if part.get_content_type() != "message/delivery-status" or not isinstance(part.get_payload(), list):
            continue
        for block in part.get_payload():
            if not isinstance(block, email.message.Message):
                continue
            if str(block.get(SESSION_FIELD, "")).strip().lower() == "session":
                refused.add(str(block.get("Final-Recipient", "")).partition(";")[2].strip().lower())
    return refused


def is_auto_reply(headers: email.message.Message) -> bool:
    """Whether a machine wrote this (vacation notice, bounce, robot): such mail is never passed on to members.

    `X-Auto-Response-Suppress` is not looked at: Outlook puts it on ordinary mail written by people.
    A null envelope sender also means this, but that is the caller's to check.
    """
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
