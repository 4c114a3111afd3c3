"""Rows for a person at any terminal width: nothing cut, a long sentence on a line of its own.

Rich's tables cut a cell that does not fit with "…": at 80 columns, and on a pipe, `queue list` lost each
message's error and the time of its next attempt, and `mailbox list` its dates (issue 17). Here a short
cell (an id, a date, a number: the WHOLE columns) is never broken; the others wrap within their column at
spaces, a word longer than the column folding; the BELOW column goes under its row across the width; and
where even that does not fit (a phone's terminal), each row becomes a block of "title  value" lines.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from jitaku.terminal import visible
from jitaku.words import yes_no

GAP = 2  # spaces between two columns
NARROWEST = 10  # a wrapping column narrower than this reads as a column of syllables: rows become blocks


def lines_of(value: object) -> list[str]:
    """A cell's lines: a list or tuple one item a line, a truth value yes or no, nothing for None, and in
    each whatever would steer the terminal spelled out (it is often a stranger's text)."""
    if value is None:
        return []
    if isinstance(value, bool):
        return [yes_no(value)]
    if isinstance(value, list | tuple):
        return [visible(str(item)) for item in value]
    return [visible(str(value))]


def show(
    console: Console,
    titles: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    empty: str,
    whole: Collection[str] = (),
    below: str | None = None,
) -> None:
    """Print ROWS under TITLES, or the sentence EMPTY when there are none (a lone header said nothing)."""
    if not rows:
        console.print(empty)
        return
    for line in rendered(console, titles, rows, whole=whole, below=below):
        console.print(line)


def rendered(
    console: Console,
    titles: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    whole: Collection[str] = (),
    below: str | None = None,
) -> list[Text]:
    """The lines `show` prints, at the console's width."""
    cells = [[lines_of(value) for value in row] for row in rows]
    side = [index for index, title in enumerate(titles) if title != below]
    natural = {
        index: max([cell_len(titles[index]), *(cell_len(line) for row in cells for line in row[index])])
        for index in side
    }
    kept = {index for index in side if titles[index] in whole}
    least = {
        index: min(natural[index], max([NARROWEST, *(_longest_word(line) for row in cells for line in row[index])]))
        for index in side
        if index not in kept
    }
    widths = _fitted(natural, least, console.width)
    if widths is None:
        return _blocks(console, titles, cells, kept)
    note = titles.index(below) if below is not None else None
    return _grid(console, titles, cells, widths, note)


def _fitted(natural: dict[int, int], least: dict[int, int], width: int) -> dict[int, int] | None:
    """Each column's width: a whole one its longest cell; a wrapping one (those in LEAST) an even share of what
    is left, but at least its longest word and at most its longest cell (one that needs less than its share
    leaves the rest to the others); None when the whole ones and those least widths do not fit in WIDTH."""
    room = width - GAP * (len(natural) - 1) - sum(natural[index] for index in natural if index not in least)
    if room < sum(least.values()):
        return None
    widths = dict(natural)
    wrapping = sorted(least, key=natural.__getitem__)
    for place, index in enumerate(wrapping):
        later = sum(least[other] for other in wrapping[place + 1 :])
        share = min(room // (len(wrapping) - place), room - later)
        widths[index] = min(natural[index], max(least[index], share))
        room -= widths[index]
    return widths


def _longest_word(line: str) -> int:
    """The widest piece of LINE that wrapping never breaks: a word, or either side of an address's @."""
    return max(cell_len(piece) for word in line.split(" ") for piece in _at_break(word, 0).split(" "))


def _wrapped(console: Console, lines: list[str], width: int) -> list[str]:
    """LINES broken to WIDTH cells at spaces, a mail address too long for them before its @, any other
    longer word folded (Rich counts a kanji as two cells)."""
    out: list[str] = []
    for line in lines:
        words = [_at_break(word, width) for word in line.split(" ")]
        wrapped = Text(" ".join(words)).wrap(console, max(width, 1), overflow="fold")
        out += [part.plain.rstrip() for part in wrapped] or [""]
    return out


def _at_break(word: str, width: int) -> str:
    """WORD with a space before its @ when it is too long for WIDTH: "alice" and "@example.test" read better
    on two lines than "alice@example.t" and "est"."""
    at = word.find("@", 1)
    return word[:at] + " " + word[at:] if at > 0 and cell_len(word) > width else word


def _joined(columns: list[tuple[list[str], int]]) -> list[str]:
    """Cells side by side, each padded to its column's width, as many lines as the tallest."""
    lines = []
    for place in range(max([1, *(len(cell) for cell, _width in columns)])):
        parts = []
        for cell, width in columns:
            text = cell[place] if place < len(cell) else ""
            parts.append(text + " " * (width - cell_len(text)))
        lines.append((" " * GAP).join(parts).rstrip())
    return lines


def _grid(
    console: Console, titles: Sequence[str], cells: list[list[list[str]]], widths: dict[int, int], note: int | None
) -> list[Text]:
    header = [(_wrapped(console, [titles[index]], width), width) for index, width in widths.items()]
    out = [Text(line, style="bold") for line in _joined(header)]
    for row in cells:
        out += [Text(line) for line in _joined([(_wrapped(console, row[i], w), w) for i, w in widths.items()])]
        if note is not None and row[note]:
            head = f"  {titles[note]}: "
            lines = _wrapped(console, row[note], console.width - cell_len(head))
            out += [Text((head if place == 0 else " " * cell_len(head)) + line) for place, line in enumerate(lines)]
    return out


def _blocks(console: Console, titles: Sequence[str], cells: list[list[list[str]]], kept: set[int]) -> list[Text]:
    """One "title  value" line per cell, a blank line between rows; a value that cannot sit beside its
    title (a date on a very narrow screen) goes under it."""
    indent = max(cell_len(title) for title in titles) + GAP
    room = console.width - indent
    out: list[Text] = []
    for number, row in enumerate(cells):
        if number:
            out.append(Text(""))
        for index, lines in enumerate(row):
            if not lines:
                continue
            title = titles[index]
            fits = room >= NARROWEST and (index not in kept or all(cell_len(line) <= room for line in lines))
            if fits:
                wrapped = _wrapped(console, lines, room)
                out.append(Text(title + " " * (indent - cell_len(title)) + wrapped[0]))
                out += [Text(" " * indent + line) for line in wrapped[1:]]
            else:
                out.append(Text(title))
                out += [Text("  " + line) for line in _wrapped(console, lines, console.width - 2)]
    return out
