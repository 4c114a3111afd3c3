"""LIST and LSUB patterns (RFC 3501 §6.3.8): "*" matches anything, "%" anything but the hierarchy delimiter.

A regular expression would backtrack: "*a*a*a*a*b" tried against a long name takes time growing as the name's
length to the power of the wildcards. Here a pattern is a row of literal pieces between wildcards, and the
positions of the name where the pattern read so far may end are the bits of one integer, moved on a piece
at a time: the work for a name grows with its length times the pattern's, whatever the pattern holds.
"""

from __future__ import annotations

import re

DELIMITER = "/"
LONGEST_NAME = 255  # mailstore's bound on a mailbox name: a pattern with more literal text matches nothing
_WILDCARDS = re.compile(r"[*%]+")


class Pattern:
    def __init__(self, text: str) -> None:
        self.pieces = _WILDCARDS.split(text)  # literal text; one more than the wildcards
        # a run of wildcards is one: "*" when it holds a "*", for "%*" matches what "*" does
        self.wildcards = ["*" if "*" in run else "%" for run in _WILDCARDS.findall(text)]
        self._impossible = sum(len(piece) for piece in self.pieces) > LONGEST_NAME

    def matches(self, name: str) -> bool:
        if self._impossible:
            return False
        if not self.wildcards:
            return name == self.pieces[0]
        if len(self.wildcards) == 1:  # what clients send: "*", "%", "Lists/%", "INBOX*"
            head, tail = self.pieces
            if not head and not tail and self.wildcards[0] == "*":  # "*": every name
                return True
            if len(name) < len(head) + len(tail) or not name.startswith(head) or not name.endswith(tail):
                return False
            return self.wildcards[0] == "*" or DELIMITER not in name[len(head) : len(name) - len(tail)]
        return self._matches_bitwise(name)

    def _matches_bitwise(self, name: str) -> bool:
        """Bit q of `ends` is set when the pattern read so far can match name[:q]."""
        if not name.startswith(self.pieces[0]):
            return False
        everything = (1 << (len(name) + 1)) - 1
        # bit q: a "%" may take the character before position q (it is not the delimiter)
        steps = sum(1 << (index + 1) for index, char in enumerate(name) if char != DELIMITER)
        ends = 1 << len(self.pieces[0])
        starts: dict[str, int] = {}  # a piece's positions in the name, as bits; a pattern repeats its pieces
        for wildcard, piece in zip(self.wildcards, self.pieces[1:], strict=True):
            if wildcard == "*":  # anything from the first place the pattern can have reached
                ends = everything & ~((ends & -ends) - 1)
            else:
                ends = _fill(ends, steps)
            if piece:
                if piece not in starts:
                    starts[piece] = _positions(name, piece)
                ends = (ends & starts[piece]) << len(piece)
            if not ends:
                return False
        return bool(ends >> len(name) & 1)


def _fill(start: int, steps: int) -> int:
    """The bits START reaches moving up through bits set in STEPS (a Kogge-Stone fill: log2(length) rounds)."""
    shift = 1
    while steps:
        start |= steps & (start << shift)
        steps &= steps << shift
        shift *= 2
    return start


def _positions(name: str, piece: str) -> int:
    """The positions where PIECE begins in NAME, overlapping ones too, as bits."""
    found = 0
    at = name.find(piece)
    while at >= 0:
        found |= 1 << at
        at = name.find(piece, at + 1)
    return found
