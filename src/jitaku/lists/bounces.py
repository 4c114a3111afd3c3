"""Bounces: telling them and auto-replies apart from posts, reading who bounced, and what a list does then.

Bounce formats are many and mostly non-standard (qmail, Exim, old Exchange...);
flufl.bounce (Mailman's detectors) knows them, so we do not write our own.

A bounce counts for a member only when it came to the signed VERP address of a copy we sent them; the
score it adds decays, a delivery halves it (`on_personal_delivered`), and at the list's threshold the
member's delivery is disabled and the owners are told. A refusal of our whole session counts for the
member's domain instead, whose members stay enabled.
"""

from __future__ import annotations

import asyncio
import email
import time
from dataclasses import dataclass
from email.utils import getaddresses

from flufl.bounce import all_failures

from jitaku import log, store
from jitaku.lists import scores, verp
from jitaku.lists.outbox import Outbox, forget, owners_of
from jitaku.mail.dsn import SESSION_FIELD
from jitaku.store import Database, Tx
from jitaku.store.lists import InboxItem, MailingList

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


class Bounces:
    """Handles mail to a list's -bounces address: scores the member (or their domain) it names."""

    def __init__(self, database: Database, outbox: Outbox) -> None:
        self._database = database
        self._outbox = outbox

    async def handle(self, mailing_list: MailingList, item: InboxItem) -> None:
        if item.sender:  # a bounce comes from the null sender; anything else here is not one
            await self._outbox.drop(item, "mail to the bounce address with a sender: not a bounce")
            return
        found_members = await self._database.query(lambda s: store.lists.members(s, mailing_list.id), snapshot=False)
        members = {m.address: m for m in found_members}
        address = verp.parse_bounce_address(item.recipient)
        member = verp.signed_member(address, mailing_list.key, members) if address else None
        failed = await asyncio.to_thread(failures, item.body)  # 0.2 s of parsing for a bounce of 20 MB
        if member is None:
            # Anyone can send a DSN naming any member to -bounces@ or to an unsigned or guessed VERP
            # address: it counts for nobody. Copies we sent carry signed addresses (verp.py).
            log.event(
                "list_bounce_unverified",
                list=mailing_list.address,
                to=item.recipient,
                names=",".join(sorted(failed.permanent)) or None,
            )
            await self._database.transact(forget(item))
            return
        if member not in members or not members[member].enabled:
            await self._outbox.drop(item, f"a bounce for {member}, who is not an enabled member")
            return
        if member in failed.temporary and member not in failed.permanent:
            await self._outbox.drop(item, f"a delay for {member}, not a failure")
            return
        if member in failed.whole_session:
            await self._refused(mailing_list, item, member)
            return
        now = time.time()
        found = members[member]
        threshold = mailing_list.bounce_threshold
        score, counted = scores.after_bounce(found.bounce_score, found.bounce_at, now)
        values: dict[str, object] = {"bounce_score": score, "bounce_at": now} if counted else {}
        if score >= threshold:
            values.update(enabled=False, disabled_reason=f"bounce score {score:.3g} reached {threshold:g}")

        def record(target: Tx) -> None:
            store.lists.remove_inbox(target, item.id, item.lease)
            if values:
                store.lists.set_member(target, mailing_list.id, member, **values)

        log.event(
            "list_bounce",
            list=mailing_list.address,
            member=member,
            score=f"{score:.3g}",
            counted="yes" if counted else "no (one a day)",
        )
        if score < threshold:
            await self._database.transact(record)
            return
        await self._outbox.send(
            mailing_list,
            "owner",
            owners_of(mailing_list),
            f"{mailing_list.address}: delivery disabled for {member}",
            f"Delivery to {member} is now disabled: its bounce score {score:.3g} reached {threshold:g} (a bounce"
            f" counts once a day; a delivery halves the score). `jitaku list add {mailing_list.address} {member}`"
            " enables it again.\n",
            record,
            attachment=item.body,
        )
        log.event("list_member_disabled", list=mailing_list.address, members=member)

    async def _refused(self, mailing_list: MailingList, item: InboxItem, member: str) -> None:
        """A bounce for MEMBER that our queue says was a refusal of the whole session: their domain's
        servers refused our mail (a blocklist, a rate limit, our reputation), not them. It counts once
        for the domain, however many members there got one; the owners hear of it when the domain's
        score reaches the threshold, and the members stay enabled."""
        domain = member.rpartition("@")[2]
        now = time.time()
        found = await self._database.query(lambda s: store.lists.refusal(s, mailing_list.id, domain), snapshot=False)
        previous, since = (found.score, found.refused_at) if found else (0.0, None)
        before = scores.decayed(previous, since, now)
        score, counted = scores.after_bounce(previous, since, now)
        threshold = mailing_list.bounce_threshold

        def record(target: Tx) -> None:
            store.lists.remove_inbox(target, item.id, item.lease)
            if counted:
                store.lists.set_refusal(target, mailing_list.id, domain, score, now)

        log.event(
            "list_refused",
            list=mailing_list.address,
            domain=domain,
            member=member,
            score=f"{score:.3g}",
            counted="yes" if counted else "no (one a day)",
        )
        if not (counted and before < threshold <= score):
            await self._database.transact(record)
            return
        await self._outbox.send(
            mailing_list,
            "owner",
            owners_of(mailing_list),
            f"{mailing_list.address}: {domain} refuses the list's mail",
            f"The servers of {domain} keep refusing this list's mail as a whole (score {score:.3g}, threshold"
            f" {threshold:g}; one refusal a day counts, a delivery there halves it). They refuse our server, not"
            f" one member, so the members at {domain} stay enabled. The bounce attached is the latest: look its"
            f" words up on {domain}'s postmaster pages (a blocklist, a rate limit, our address's reputation)."
            f" `jitaku list show {mailing_list.address}` lists the domains that refuse.\n",
            record,
            attachment=item.body,
        )
        log.event("list_domain_refusing", list=mailing_list.address, domain=domain)


def on_personal_delivered(tx: Tx, delivered: list[tuple[str, str]]) -> None:
    """Halve a member's bounce score, and their domain's, once a copy reaches them (the queue calls
    this as it records)."""
    by_list: dict[str, list[str]] = {}
    for sender, recipient in delivered:
        parsed = verp.parse_bounce_address(sender)
        if parsed is not None:
            by_list.setdefault(parsed.list_address, []).append(recipient)
    for list_address, recipients in by_list.items():
        store.attempts.halve_bounces(tx, list_address, recipients, scores.FORGOTTEN)
