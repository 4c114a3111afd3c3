"""terminal.visible: what would steer a terminal is spelled out, everything else is itself."""

from __future__ import annotations

from jitaku.terminal import visible


def test_controls_are_spelled_out() -> None:
    assert visible("\x1b]0;title\x07\x1b[2J") == "\\x1b]0;title\\x07\\x1b[2J"
    assert visible("a\tb\nc\rd\x00\x7f\x85\x9b") == "a\\x09b\\x0ac\\x0dd\\x00\\x7f\\x85\\x9b"
    assert visible("\u202eevil\u2066x\u2069\u200f\u2028") == "\\u202eevil\\u2066x\\u2069\\u200f\\u2028"
    assert visible("lone \udce9 surrogate") == "lone \\udce9 surrogate"


def test_everything_else_is_itself() -> None:
    for text in ("日本語の件名　全角スペース", "[bold]x[/] [/]", "Ünïcödé — “quotes” 😀\u200d👩", "back\\slash", ""):
        assert visible(text) == text
