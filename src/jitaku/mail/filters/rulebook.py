"""The allow and block lists as the MX reads them for every message: kept in memory, and read again only when
the directory's version moved, which store/filters.py bumps with every rule added, changed or removed (as
accounts.py does for users and aliases), whoever changed it: `jitaku filter` in another process, /admin/filters
in this one. The version is read at most once a second, as Policy reads it for the directory: a change counts
for the mail that arrives a second later at most, and a message costs no read of the store (the rules were
read for each one, filters or none)."""

from __future__ import annotations

import time

from jitaku.mail.policy import DIRECTORY_CHECK_SECONDS
from jitaku.store import Database, accounts, filters
from jitaku.store.statements import Statements


class Rulebook:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._rules: tuple[filters.Rule, ...] = ()
        self._version: int | None = None
        self._checked_at = 0.0

    async def current(self) -> tuple[filters.Rule, ...]:
        now = time.monotonic()
        if self._version is None or now - self._checked_at >= DIRECTORY_CHECK_SECONDS:
            self._checked_at = now
            version = await self._database.query(accounts.current_version, snapshot=False)
            if version != self._version:
                self._version, self._rules = await self._database.query(_versioned)
        return self._rules


def _versioned(statements: Statements) -> tuple[int, tuple[filters.Rule, ...]]:
    """The rules with the version they are of, read in one snapshot: a change between the two reads would
    otherwise be kept under the version before it, and never read."""
    return accounts.current_version(statements), tuple(filters.rules(statements))
