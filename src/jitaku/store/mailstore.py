"""Messages in users' mailboxes: append with the next UID, list, fetch (shared by IMAP, POP3, CLI, web)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.engine import Connection

from jitaku.store.schema import mailboxes, messages, users


@dataclass(frozen=True)
class StoredMessage:
    uid: int
    received_at: float
    size: int
    body: bytes


def _mailbox(connection: Connection, address: str, name: str) -> tuple[int, int] | None:
    row = connection.execute(
        select(mailboxes.c.id, mailboxes.c.uidnext)
        .join(users, users.c.id == mailboxes.c.user_id)
        .where(users.c.address == address.lower(), mailboxes.c.name == name)
    ).first()
    return (row.id, row.uidnext) if row else None


def append(connection: Connection, address: str, body: bytes, name: str = "INBOX") -> int:
    """Store BODY as the next message of the user's mailbox; return its UID."""
    # One statement takes the UID and moves uidnext on (this runs for every delivery).
    owner = select(users.c.id).where(users.c.address == address.lower()).scalar_subquery()
    found = connection.execute(
        update(mailboxes)
        .where(mailboxes.c.user_id == owner, mailboxes.c.name == name)
        .values(uidnext=mailboxes.c.uidnext + 1)
        .returning(mailboxes.c.id, mailboxes.c.uidnext)
    ).first()
    if found is None:
        raise LookupError(f"no mailbox {name} for {address}")
    mailbox_id, uid = int(found.id), int(found.uidnext) - 1
    connection.execute(
        insert(messages).values(
            mailbox_id=mailbox_id, uid=uid, flags="", received_at=time.time(), size=len(body), body=body
        )
    )
    return uid


@dataclass(frozen=True)
class Maildrop:
    """A mailbox as POP3 sees it at login: what identifies it for good, and each message's UID and size."""

    uidvalidity: int
    messages: list[tuple[int, int]]


def maildrop(connection: Connection, address: str, name: str = "INBOX") -> Maildrop:
    row = connection.execute(
        select(mailboxes.c.id, mailboxes.c.uidvalidity)
        .join(users, users.c.id == mailboxes.c.user_id)
        .where(users.c.address == address.lower(), mailboxes.c.name == name)
    ).first()
    if row is None:
        raise LookupError(f"no mailbox {name} for {address}")
    sizes = connection.execute(
        select(messages.c.uid, messages.c.size).where(messages.c.mailbox_id == row.id).order_by(messages.c.uid)
    )
    return Maildrop(int(row.uidvalidity), [(int(uid), int(size)) for uid, size in sizes])


def list_messages(connection: Connection, address: str, name: str = "INBOX") -> list[StoredMessage]:
    found = _mailbox(connection, address, name)
    if found is None:
        raise LookupError(f"no user {address.lower()}")
    rows = connection.execute(
        select(messages.c.uid, messages.c.received_at, messages.c.size, messages.c.body)
        .where(messages.c.mailbox_id == found[0])
        .order_by(messages.c.uid)
    )
    return [StoredMessage(row.uid, row.received_at, row.size, row.body) for row in rows]


def remove(connection: Connection, address: str, uids: list[int], name: str = "INBOX") -> int:
    """Delete the messages UIDS from the user's mailbox; how many went."""
    found = _mailbox(connection, address, name)
    if found is None or not uids:
        return 0
    gone = connection.execute(delete(messages).where(messages.c.mailbox_id == found[0], messages.c.uid.in_(uids)))
    return int(gone.rowcount)


def get_message(connection: Connection, address: str, uid: int, name: str = "INBOX") -> StoredMessage | None:
    found = _mailbox(connection, address, name)
    if found is None:
        raise LookupError(f"no user {address.lower()}")
    row = connection.execute(
        select(messages.c.uid, messages.c.received_at, messages.c.size, messages.c.body).where(
            messages.c.mailbox_id == found[0], messages.c.uid == uid
        )
    ).first()
    return StoredMessage(row.uid, row.received_at, row.size, row.body) if row else None


def message_counts(connection: Connection) -> list[tuple[str, int]]:
    """Each user's address and how many messages their INBOX holds, in the order users were added."""
    rows = connection.execute(
        select(users.c.address, func.count(messages.c.id))
        .select_from(
            users.join(mailboxes, mailboxes.c.user_id == users.c.id).outerjoin(
                messages, messages.c.mailbox_id == mailboxes.c.id
            )
        )
        .where(mailboxes.c.name == "INBOX")
        .group_by(users.c.id, users.c.address)
        .order_by(users.c.id)
    )
    return [(row[0], int(row[1])) for row in rows]
