"""jitaku.table: rows for a person at any width, nothing cut; long text under its row, or blocks on a phone."""

from __future__ import annotations

import os

from rich.cells import cell_len
from rich.console import Console

from jitaku.table import rendered

TITLES = ["id", "attempts", "next attempt", "sender", "recipients", "last error"]
ROWS: list[list[object]] = [
    [
        "Q0ABCDEFGH",
        1,
        "2026-12-06T08:25:57+00:00",
        "alice@example.test",
        ["dave@example.net", "erin@example.org"],
        "4.4.1 connection refused by mx.example.net (203.0.113.25, port 25)",
    ],
    ["Q1ABCDEFGH", 12, "2026-12-06T09:00:00+00:00", "bob@example.test", ["kenji@example.jp"], None],
]
WHOLE = {"id", "attempts", "next attempt"}


def lines(
    width: int, titles: list[str], rows: list[list[object]], whole: set[str], below: str | None = None
) -> list[str]:
    with open(os.devnull, "w") as nowhere:
        console = Console(width=width, file=nowhere)
        return [line.plain for line in rendered(console, titles, rows, whole=whole, below=below)]


def test_at_80_columns_the_error_goes_under_its_row_and_nothing_is_cut() -> None:
    """Rich cut the error and the next attempt with "…" at 80 columns, and on a pipe (issue 17)."""
    assert lines(80, TITLES, ROWS, WHOLE, "last error") == [
        "id          attempts  next attempt               sender           recipients",
        "Q0ABCDEFGH  1         2026-12-06T08:25:57+00:00  alice            dave",
        "                                                 @example.test    @example.net",
        "                                                                  erin",
        "                                                                  @example.org",
        "  last error: 4.4.1 connection refused by mx.example.net (203.0.113.25, port 25)",
        "Q1ABCDEFGH  12        2026-12-06T09:00:00+00:00  bob              kenji",
        "                                                 @example.test    @example.jp",
    ]


def test_where_the_columns_cannot_fit_each_row_becomes_a_block() -> None:
    assert lines(40, TITLES, ROWS, WHOLE, "last error") == [
        "id            Q0ABCDEFGH",
        "attempts      1",
        "next attempt  2026-12-06T08:25:57+00:00",
        "sender        alice@example.test",
        "recipients    dave@example.net",
        "              erin@example.org",
        "last error    4.4.1 connection refused",
        "              by mx.example.net",
        "              (203.0.113.25, port 25)",
        "",
        "id            Q1ABCDEFGH",
        "attempts      12",
        "next attempt  2026-12-06T09:00:00+00:00",
        "sender        bob@example.test",
        "recipients    kenji@example.jp",
    ]
    # a value that cannot sit beside its title goes under it, whole
    assert lines(28, ["id", "next attempt"], [["Q1", "2026-12-06T09:00:00+00:00"]], {"id", "next attempt"}) == [
        "id            Q1",
        "next attempt",
        "  2026-12-06T09:00:00+00:00",
    ]


def test_at_every_width_no_line_is_too_long_and_every_whole_cell_is_on_one_line() -> None:
    subject = "日本語の件名とても長い件名です Meeting notes for the spring operating session"
    titles = ["uid", "date", "from", "subject", "size"]
    rows: list[list[object]] = [[7, "2025-03-04T09:15:42+09:00", "山田 太郎 <yamada@remote.example.jp>", subject, 1234]]
    for width in range(30, 141):
        shown = lines(width, titles, rows, {"uid", "date", "size"})
        assert all(cell_len(line) <= width for line in shown), (width, shown)  # a kanji takes two cells
        assert "…" not in "".join(shown)
        assert any("2025-03-04T09:15:42+09:00" in line for line in shown), (width, shown)
        words = " ".join(shown).split()
        assert set("Meeting notes for the spring operating session".split()) <= set(words), (width, shown)


def test_truth_values_read_yes_or_no_and_lists_one_item_a_line() -> None:
    assert lines(80, ["address", "admin"], [["alice@example.test", True], ["bob@example.test", False]], {"admin"}) == [
        "address             admin",
        "alice@example.test  yes",
        "bob@example.test    no",
    ]
    assert lines(80, ["setting", "value"], [["owners", ("a@example.test", "b@example.test")]], {"setting"}) == [
        "setting  value",
        "owners   a@example.test",
        "         b@example.test",
    ]


def test_a_strangers_text_cannot_steer_the_terminal_in_any_layout() -> None:
    for width in (80, 20):
        shown = "\n".join(lines(width, ["subject", "from"], [["\x1b]0;pwned\x07 hi", "\u202eevil"]], set()))
        assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
        assert "\\u202eevil" in shown and ("\\x1b]0;pwned\\x07" in shown or width < 30)
