"""Who may send to whom: local recipients, relay refusal, sender ownership (no sockets here)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Connection

from jitaku.config import Settings
from jitaku.mail import address as addresses
from jitaku.store import Database, accounts

# RFC 2142: these mailboxes exist at every domain we serve.
ROLE_ACCOUNTS = ("postmaster", "abuse")
MAX_ALIAS_DEPTH = 10


@dataclass(frozen=True)
class Accepted:
    recipient: str
    mailbox: str | None  # the local user it lands with; None: it leaves for another server


@dataclass(frozen=True)
class Refused:
    reply: str


class Policy:
    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database

    async def recipient(self, text: str, authenticated: bool) -> Accepted | Refused:
        """Decide RCPT TO: on the MX only local addresses; after AUTH anything well-formed."""
        parsed = addresses.parse(text)
        if parsed is None:
            if "@" not in text:
                return Refused(f"501 5.1.3 <{text}>: bad recipient address syntax")
            if authenticated:
                return Refused(f"553 5.1.3 <{text}>: address form not accepted")
            return Refused(f"554 5.7.1 <{text}>: Relay access denied")
        recipient = addresses.normalize(str(parsed))
        if not self._settings.is_local_domain(parsed.domain):
            if authenticated:
                return Accepted(recipient, None)
            return Refused(f"554 5.7.1 <{text}>: Relay access denied")
        target = await self._database.read(lambda c: self.resolve(c, recipient))
        if target is None:
            return Refused(f"550 5.1.1 <{text}>: Recipient address rejected: User unknown")
        if self._settings.is_local_domain(target.rpartition("@")[2]):
            return Accepted(recipient, target)
        return Accepted(target, None)

    def resolve(self, connection: Connection, recipient: str) -> str | None:
        """Follow aliases from a local RECIPIENT to a local user or a remote address."""
        current = recipient
        for _ in range(MAX_ALIAS_DEPTH):
            if not self._settings.is_local_domain(current.rpartition("@")[2]):
                return current
            if accounts.find_user(connection, current) is not None:
                return current
            target = accounts.find_alias(connection, current)
            if target is None:
                break
            current = target
        if current.partition("@")[0] in ROLE_ACCOUNTS and current == recipient:
            first = accounts.first_user(connection)
            return first.address if first else None
        return None

    async def owns(self, user: str, text: str) -> bool:
        """Whether the authenticated USER may use TEXT as envelope sender or From."""
        candidate = addresses.normalize(text)
        if candidate == user:
            return True
        if addresses.parse(candidate) is None or not self._settings.is_local_domain(candidate.rpartition("@")[2]):
            return False
        return await self._database.read(lambda c: self.resolve(c, candidate)) == user
