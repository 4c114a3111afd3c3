"""Where a message's copies go, as plain data, and the one function that commits them.

The inbound pipeline, its bounces and the list runner all end here: local mailboxes get
their copies, the queue its entries, a list's inbox its items, in the caller's
transaction (SMTP's 250 comes after it). Every part of a `Delivery` stands
on its own, so a large one (a list post to thousands) can be committed in chunks.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

from jitaku.addresses import ListRole
from jitaku.store import intake, mailstore
from jitaku.store.queue import Personal
from jitaku.store.transaction import Tx


def new_queue_id() -> str:
    """12 hex digits, as unlikely to repeat as 48 random bits are: from `random`'s generator (seeded from the
    system's randomness, and again in each forked worker), not `secrets`, whose getrandom(2) call per message
    let the writer thread take the GIL in the middle of the MX's work. Nothing is kept secret by it: a queue
    ID is printed in every Received header."""
    return f"{random.getrandbits(48):012X}"


@dataclass(slots=True)
class Copy:
    """A message as it lands in a local user's INBOX (or their Junk, where the filters put it), Return-Path
    included."""

    mailbox: str
    message: bytes
    junk: bool = False


@dataclass(slots=True)
class Entry:
    """One queue entry: BODY for RECIPIENTS from SENDER, some of them perhaps with copies of their own."""

    queue_id: str
    sender: str
    recipients: list[str]
    body: bytes
    personal: dict[str, Personal] = field(default_factory=dict)


@dataclass(slots=True)
class ToList:
    """Mail for a list's address (post, -request, -owner, -bounces), for the list runner after the commit."""

    list_address: str
    role: ListRole
    recipient: str
    sender: str
    message: bytes
    note: str | None = None  # a post's: why the MX's filters want it held for the list's owners


@dataclass(slots=True)
class Delivery:
    local: list[Copy] = field(default_factory=list)
    queued: list[Entry] = field(default_factory=list)
    listed: list[ToList] = field(default_factory=list)


def commit(tx: Tx, delivery: Delivery, post_id: int | None = None) -> None:
    """Store every copy of DELIVERY in the caller's transaction. With POST_ID, the queue entries share that
    archived list post as their body instead of storing it again."""
    now = time.time()
    for copy in delivery.local:
        folder = mailstore.junk_folder(tx, copy.mailbox) if copy.junk else mailstore.INBOX
        mailstore.append(tx, copy.mailbox, copy.message, folder, internal_date=now)
    for entry in delivery.queued:
        intake.enqueue(tx, entry.queue_id, entry.sender, entry.recipients, entry.body, now, entry.personal, post_id)
    for item in delivery.listed:
        intake.add_inbox(tx, item.list_address, item.role, item.recipient, item.sender, item.message, now, item.note)
