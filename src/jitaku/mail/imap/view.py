"""The selected mailbox as a session has told its client about it: the UIDs in order, their flags, mod-sequences
and sizes, which are \\Recent to it, and the keywords FLAGS has listed."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

from jitaku.mail.imap.parser import ParseError, SequenceSet

SYSTEM_FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"


@dataclass
class View:
    """The selected mailbox as this session has told its client about it."""

    name: str
    read_only: bool
    uidvalidity: int
    uids: list[int]
    flags: dict[int, frozenset[str]]
    modseqs: dict[int, int]
    sizes: dict[int, int]  # what reading each message's body costs: FETCH and SEARCH read by bytes, not by count
    recent: set[int]  # the UIDs that are \Recent to this session (RFC 3501 §2.3.2)
    state: tuple[int, int]  # (uidnext, highestmodseq) when last brought up to date
    saved: set[int] = field(default_factory=set)  # the UIDs SEARCH RETURN (SAVE) kept for "$" (RFC 5182)
    keywords: set[str] = field(default_factory=set)  # those FLAGS has listed to the client, never fewer

    def flag_lines(self) -> list[str]:
        """FLAGS and PERMANENTFLAGS: the system flags, the keywords, and (read-write) that any keyword may be
        made (RFC 3501 §7.2.6; \\* in §7.1)."""
        keywords = "".join(f" {keyword}" for keyword in sorted(self.keywords))
        permanent = "" if self.read_only else f"{SYSTEM_FLAGS}{keywords} \\*"
        return [f"* FLAGS ({SYSTEM_FLAGS}{keywords})", f"* OK [PERMANENTFLAGS ({permanent})] flags you can keep"]

    def flags_of(self, uid: int) -> frozenset[str]:
        """The message's flags as this session shows them: the stored ones, and \\Recent if it is."""
        return self.flags[uid] | {"\\Recent"} if uid in self.recent else self.flags[uid]

    def number(self, uid: int) -> int:
        """UID's message number: UIDs only grow, so the list is in order."""
        return bisect.bisect_left(self.uids, uid) + 1

    def resolve(self, sequence: SequenceSet, uid: bool) -> list[int]:
        """The UIDs a sequence set names: message numbers, or UIDs (those that exist) for UID commands."""
        if sequence.saved:  # "$" names the same messages in UID and number commands
            return sorted(uid for uid in self.saved if uid in self.flags)
        if not self.uids:
            return []
        found: set[int] = set()
        if uid:  # by bisection: a client syncing message by message sends thousands of these
            for low, high in sequence.resolve(self.uids[-1]):
                found.update(self.uids[bisect.bisect_left(self.uids, low) : bisect.bisect_right(self.uids, high)])
            return sorted(found)
        for low, high in sequence.resolve(len(self.uids)):
            if high > len(self.uids):
                raise ParseError(f"there is no message {high}")
            found.update(self.uids[low - 1 : high])
        return sorted(found)


def sequence_set(numbers: list[int]) -> str:
    """NUMBERS as a compact sequence set ("1:3,7"), as COPYUID, MODIFIED and ESEARCH's ALL give them back."""
    ranges: list[list[int]] = []
    for number in sorted(numbers):
        if ranges and number == ranges[-1][1] + 1:
            ranges[-1][1] = number
        else:
            ranges.append([number, number])
    return ",".join(f"{low}" if low == high else f"{low}:{high}" for low, high in ranges)
