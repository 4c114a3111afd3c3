"""Who may send to whom: local recipients, relay refusal, sender ownership (no sockets here)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from jitaku import addresses
from jitaku.addresses import ListRole, role_of
from jitaku.config import Settings
from jitaku.store import Database, accounts

# RFC 2142: these mailboxes exist at every domain we serve.
ROLE_ACCOUNTS = ("postmaster", "abuse")
DIRECTORY_CHECK_SECONDS = 1.0
DECISIONS_KEPT = 1024  # RCPT decisions remembered per directory (an address is at most 512 characters)


@dataclass(slots=True)
class Accepted:
    recipient: str
    mailbox: str | None  # the local user it lands with; None: it leaves for another server (or goes to a list)
    list_role: tuple[str, ListRole] | None = None  # (list address, what the mail came for)


@dataclass(slots=True)
class Refused:
    reply: str


class Policy:
    """Routing decisions from a cached directory of users and aliases.

    The directory is re-read when its version changes, checked at most once a
    second, and always before an address is refused as unknown: a new user
    gets mail at once, other changes count within a second, and RCPT costs no
    query (it was a sixth of the MX's time per message).
    """

    def __init__(self, settings: Settings, database: Database) -> None:
        self._settings = settings
        self._database = database
        self._directory: accounts.Directory | None = None
        self._checked_at = 0.0
        # (address, authenticated) -> the decision, valid for the directory it was made from
        self._decisions: dict[tuple[str, bool], Accepted | Refused] = {}
        self._decided_with: accounts.Directory | None = None

    async def _current(self, fresh: bool = False) -> accounts.Directory:
        now = time.monotonic()
        if fresh or self._directory is None or now - self._checked_at >= DIRECTORY_CHECK_SECONDS:
            self._checked_at = now
            version = await self._database.query(accounts.current_version, snapshot=False)
            if self._directory is None or version != self._directory.version:
                self._directory = await self._database.query(accounts.load_directory)
        return self._directory

    async def recipient(self, text: str, authenticated: bool) -> Accepted | Refused:
        """Decide RCPT TO: on the MX only local addresses; after AUTH anything well-formed."""
        decision = self.recipient_now(text, authenticated)
        if decision is None:
            decision = self._decide(text, authenticated, await self._current(), final=False)
        if decision is None:
            decision = self._decide(text, authenticated, await self._current(fresh=True), final=True)
        assert decision is not None
        return decision

    def recipient_now(self, text: str, authenticated: bool) -> Accepted | Refused | None:
        """`recipient`'s decision when it needs no read: None when the directory is due to be checked or does
        not know the address. The SMTP session then answers RCPT without a task and a turn of the loop."""
        directory = self._directory
        if directory is None or time.monotonic() - self._checked_at >= DIRECTORY_CHECK_SECONDS:
            return self._decide(text, authenticated, None, final=False)
        # The same few recipients, decided again for every message from the same directory, were a twentieth
        # of the MX's CPU: a decision depends on nothing else, so it is remembered until the directory changes.
        if directory is not self._decided_with:
            self._decisions.clear()
            self._decided_with = directory
        key = (text, authenticated)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decide(text, authenticated, directory, final=False)
            if decision is not None:
                if len(self._decisions) >= DECISIONS_KEPT:
                    self._decisions.clear()
                self._decisions[key] = decision
        return decision

    def _decide(
        self, text: str, authenticated: bool, directory: accounts.Directory | None, final: bool
    ) -> Accepted | Refused | None:
        """None: a local address DIRECTORY cannot route (or no DIRECTORY); FINAL refuses it as unknown."""
        if text.lower() == "postmaster":  # RFC 5321 §4.1.1.3: RCPT TO:<Postmaster>, with no domain
            text = f"postmaster@{self._settings.domains[0]}"
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
        decision = None if directory is None else self._route(directory, recipient)
        if decision is None and final:
            return Refused(f"550 5.1.1 <{text}>: Recipient address rejected: User unknown")
        return decision

    def _route(self, directory: accounts.Directory, recipient: str) -> Accepted | None:
        """Where a local RECIPIENT goes: a list (or one of its role addresses), a user, or elsewhere."""
        to_list = list_role(directory, recipient)
        if to_list is not None:
            return Accepted(recipient, None, to_list)
        target = self.resolve(directory, recipient)
        if target is None:
            return None
        if target in directory.lists:  # an alias of a list
            return Accepted(target, None, (target, "post"))
        if self._settings.is_local_domain(target.rpartition("@")[2]):
            return Accepted(recipient, target)
        return Accepted(target, None)

    def resolve(self, directory: accounts.Directory, recipient: str) -> str | None:
        """Follow aliases from a local RECIPIENT to a local user or a remote address (see `resolve`)."""
        return resolve(directory, self._settings.domains, recipient)

    async def local_mailboxes(self, addresses: list[str]) -> dict[str, str]:
        """The local user each of ADDRESSES lands with, for those that land here (a list's local members)."""
        directory = await self._current()
        found: dict[str, str] = {}
        for address in addresses:
            if not self._settings.is_local_domain(address.rpartition("@")[2]):
                continue
            target = self.resolve(directory, address)
            if target is not None and target in directory.users:
                found[address] = target
        return found

    async def owns(self, user: str, text: str) -> bool:
        """Whether the authenticated USER may use TEXT as envelope sender or From."""
        candidate = addresses.normalize(text)
        if candidate == user:
            return True
        if addresses.parse(candidate) is None or not self._settings.is_local_domain(candidate.rpartition("@")[2]):
            return False
        if self.resolve(await self._current(), candidate) == user:
            return True
        return self.resolve(await self._current(fresh=True), candidate) == user


def resolve(directory: accounts.Directory, domains: Sequence[str], recipient: str) -> str | None:
    """Where mail to a local RECIPIENT goes: a local user or a remote address, or None (refused).

    A role account whose aliases lead nowhere (to a user since removed, or round a loop an older jitaku
    accepted) still reaches the first user: postmaster@ must never refuse mail (RFC 5321 §4.5.1)."""
    chain = directory.follow(recipient, domains)
    if chain.lands:
        return chain.end
    if recipient.partition("@")[0] in ROLE_ACCOUNTS:
        return directory.first_user
    return None


@dataclass(frozen=True)
class AliasRoute:
    """An address that forwards, as `jitaku alias list` shows it."""

    alias: str
    target: str
    built_in: bool = False  # a role account no alias of its own leads anywhere: the first user gets its mail
    leads_nowhere: bool = False  # an alias whose chain ends at no user, list or remote address (a removed user)


def alias_routes(directory: accounts.Directory, domains: Sequence[str]) -> list[AliasRoute]:
    """Every alias added, and each domain's postmaster@ and abuse@ wherever `resolve` sends them without one:
    `alias list` showed neither, so nobody could tell where postmaster@'s mail went (issue 17)."""
    found = [
        AliasRoute(alias, target, leads_nowhere=not directory.follow(alias, domains).lands)
        for alias, target in directory.aliases.items()
    ]
    for domain in domains:
        for role in ROLE_ACCOUNTS:
            address = f"{role}@{domain}"
            target = resolve(directory, domains, address)
            if target is not None and not directory.follow(address, domains).lands:
                found.append(AliasRoute(address, target, built_in=True))
    return sorted(found, key=lambda route: (route.alias, route.built_in))


def list_role(directory: accounts.Directory, recipient: str) -> tuple[str, ListRole] | None:
    """(list, role) when RECIPIENT is a list or one of its -request, -owner, -bounces addresses."""
    if recipient in directory.lists:
        return recipient, "post"
    role = role_of(recipient)
    if role is not None and role[0] in directory.lists:
        return role
    return None
