"""What every IMAP command's handler works with: the store (whose refusals become NO with RFC 5530's response
codes), the worker threads for long work, and the limits the settings give."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from jitaku.config import ImapSettings
from jitaku.mail.imap.budget import Workers
from jitaku.mail.imap.selections import Selections
from jitaku.store import Database
from jitaku.store.mailstore import MailboxError, MailboxExists, NoSuchMailbox, TooManyMailboxes
from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx

T = TypeVar("T")


class Refused(Exception):
    """A command that cannot be done: answered NO (with a response code in the text)."""


@dataclass(frozen=True)
class Backend:
    """The store and the limits, shared by every connection of one server."""

    database: Database
    workers: Workers
    settings: ImapSettings
    max_message_size: int  # the largest APPEND
    selections: Selections = field(default_factory=Selections)  # the mailboxes selected last, for SELECT
    training: bool = False  # an engine that learns is on: moves in and out of Junk are recorded (store/training.py)

    async def read(self, query: Callable[[Statements], T]) -> T:
        """QUERY, a read of prepared statements (store/reader.py), with a mailbox not found as NO."""
        try:
            return await self.database.query(query)
        except NoSuchMailbox as missing:
            raise Refused(f"[NONEXISTENT] {missing}") from None

    async def write(self, change: Callable[[Tx], T], missing_code: str = "TRYCREATE", durable: bool = True) -> T:
        """CHANGE, a job of the writer (prepared statements on `tx`), with what it
        refuses as NO. A mailbox not found is MISSING_CODE: TRYCREATE where making it would
        help (APPEND, COPY and MOVE to it, RFC 3501 §6.3.11), NONEXISTENT for one the command acts on (RFC 5530).
        Flags and expunges need not be DURABLE (store/writer.py): mail saved (APPEND, COPY, MOVE) must."""
        try:
            return await self.database.transact(change, durable)
        except NoSuchMailbox as missing:
            raise Refused(f"[{missing_code}] {missing}") from None
        except MailboxExists as taken:
            raise Refused(f"[ALREADYEXISTS] {taken}") from None
        except TooManyMailboxes as error:
            raise Refused(f"[LIMIT] {error}") from None
        except MailboxError as error:
            raise Refused(f"[CANNOT] {error}") from None
