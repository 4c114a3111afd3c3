"""The posts whose pages were shown last, as rendered (web/archive/message.py): a post read by many after the
list sent it is parsed once, not for each reader. An archived post never changes; the key holds whether the
page is a public one (addresses hidden), so a list whose archive setting changes never shows a page rendered for
the other audience."""

from __future__ import annotations

from collections import OrderedDict

from jitaku.web.archive.message import Rendered

MAX_ENTRIES = 64
MAX_CHARACTERS = 4_000_000  # of text kept in all: a few MB, whatever the posts

Key = tuple[int, int, bool]  # (list id, post id, public)


def _weight(rendered: Rendered) -> int:
    return 200 + sum(len(part.content) for part in rendered.parts) + 200 * len(rendered.attachments)


class RenderedCache:
    """Least recently used first out, bounded by entries and by characters."""

    def __init__(self, entries: int = MAX_ENTRIES, characters: int = MAX_CHARACTERS) -> None:
        self._entries = entries
        self._characters = characters
        self._kept: OrderedDict[Key, tuple[Rendered, int]] = OrderedDict()
        self._weight = 0

    def get(self, key: Key) -> Rendered | None:
        found = self._kept.get(key)
        if found is None:
            return None
        self._kept.move_to_end(key)
        return found[0]

    def put(self, key: Key, rendered: Rendered) -> None:
        weight = _weight(rendered)
        if weight > self._characters // 4:  # one long post would push out all the others
            return
        if key in self._kept:
            self._weight -= self._kept.pop(key)[1]
        self._kept[key] = (rendered, weight)
        self._weight += weight
        while len(self._kept) > self._entries or self._weight > self._characters:
            self._weight -= self._kept.popitem(last=False)[1][1]
