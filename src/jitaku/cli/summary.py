"""`jitaku mailbox list`'s line per stored message: its date, sender and subject decoded for a person to read.

Its own module so that `jitaku --help` does not load the header parser; the mailbox itself is the store's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jitaku.mail import headers
from jitaku.store.mailstore import StoredMessage


@dataclass(frozen=True)
class Summary:
    uid: int
    date: str
    sender: str
    subject: str
    size: int

    def as_json(self) -> dict[str, Any]:
        return {"uid": self.uid, "date": self.date, "from": self.sender, "subject": self.subject, "size": self.size}


def summary(message: StoredMessage) -> Summary:
    parsed = headers.parse(message.body)
    when = headers.date_of(parsed) or datetime.fromtimestamp(message.received_at, UTC)
    return Summary(
        uid=message.uid,
        date=when.isoformat(timespec="seconds"),
        sender=headers.decoded(parsed.get("From")),
        subject=headers.decoded(parsed.get("Subject")),
        size=message.size,
    )
