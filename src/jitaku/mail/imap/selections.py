"""The mailboxes this process selected last, so that selecting one again reads what changed since, not every
message: under ten busy clients re-reading a mailbox of 500 messages for each SELECT took an eighth of the
daemon's time (issue 20).

What is kept is never handed out: a session's view changes its UIDs and flags as it goes, so it gets copies.
Whether a kept mailbox is still the one of that name, and what changed in it since, the store says
(`mailstore.select` with BEFORE), so a change by another process (an SMTP delivery, the CLI) is seen as one
by this one is. Kept are at most MAILBOXES mailboxes and UIDS messages in all, the least recently selected
going first."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from jitaku.store import mailstore
from jitaku.store.mailstore import Selected

MAILBOXES = 32
# ~250 bytes a message (its UID, a flag set's reference, a mod-sequence and a size, in a list and three dicts):
# 20,000 are ~5 MB, held once the mailboxes were selected, against the 80 MB a daemon stays under
UIDS = 20_000


class Selections:
    """The last select of each of the recently selected mailboxes, by user and name."""

    def __init__(self, mailboxes: int = MAILBOXES, uids: int = UIDS) -> None:
        self._kept: OrderedDict[tuple[str, str], Selected] = OrderedDict()
        self._mailboxes = mailboxes
        self._uids = uids
        self._held = 0  # UIDs kept in all

    def kept(self, address: str, name: str) -> Selected | None:
        """What was kept of the mailbox, for `mailstore.select`'s BEFORE (which leaves it as it is)."""
        return self._kept.get(_key(address, name))

    def keep(self, address: str, name: str, selected: Selected) -> Selected:
        """SELECTED is kept as the mailbox's last select; returned is a copy, the caller's to change. Called
        on the event loop, never in a read's thread: two sessions may select at once, and the last one's is
        kept (both are right)."""
        key = _key(address, name)
        old = self._kept.pop(key, None)
        if old is not None:
            self._held -= len(old.uids)
        if len(selected.uids) <= self._uids:  # a mailbox larger than all that may be kept is read whole each time
            self._kept[key] = selected
            self._held += len(selected.uids)
            while len(self._kept) > self._mailboxes or self._held > self._uids:
                _dropped_key, dropped = self._kept.popitem(last=False)
                self._held -= len(dropped.uids)
        return replace(
            selected,
            uids=list(selected.uids),
            flags=dict(selected.flags),
            modseqs=dict(selected.modseqs),
            sizes=dict(selected.sizes),
            keywords=set(selected.keywords),
        )


def _key(address: str, name: str) -> tuple[str, str]:
    return address.lower(), mailstore.canonical(name)
