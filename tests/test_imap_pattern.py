"""LIST patterns: the same answers as the regular expression they stand for, in time that no pattern can blow up."""

from __future__ import annotations

import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from jitaku.mail.imap.pattern import Pattern


def reference(pattern: str, name: str) -> bool:
    """RFC 3501 §6.3.8 read literally: "*" is anything, "%" anything but "/"."""
    parts = (re.escape(char) if char not in "*%" else ".*" if char == "*" else "[^/]*" for char in pattern)
    return re.fullmatch("".join(parts), name, re.DOTALL) is not None


def test_what_clients_send() -> None:
    assert Pattern("*").matches("a/b/c") and Pattern("%").matches("Sent") and not Pattern("%").matches("a/b")
    assert Pattern("Lists/%").matches("Lists/sota") and not Pattern("Lists/%").matches("Lists/sota/2026")
    assert Pattern("INBOX").matches("INBOX") and not Pattern("INBOX").matches("INBOX/x")
    assert Pattern("%/%").matches("a/b") and not Pattern("%/%").matches("a/b/c") and not Pattern("%/%").matches("a")
    assert Pattern("*x%y").matches("x/xy")  # the first "x" would leave "%" to cross a "/": the second one is taken
    assert Pattern("a*b*").matches("ab") and not Pattern("a*b*c").matches("acb")


@settings(max_examples=500, deadline=None)
@given(st.text("ab/*%", max_size=8), st.text("ab/", max_size=10))
def test_patterns_answer_as_the_regular_expression_does(pattern: str, name: str) -> None:
    assert Pattern(pattern).matches(name) == reference(pattern, name)


def test_a_pattern_of_many_wildcards_costs_no_more_than_a_long_name_allows() -> None:
    """`*a*a*a...*b` against "aaa...a" is the regular expression's worst case: backtracking over every way to
    place each "a". Here it is the pattern's length times the name's: 3,000 tries take about a second."""
    name = "a" * 255
    patterns = [Pattern("*a" * 60 + "*b"), Pattern("%a" * 60 + "%b"), Pattern("a%" * 100 + "*b")]
    started = time.monotonic()
    assert not any(pattern.matches(name) for pattern in patterns for _ in range(1000))
    assert time.monotonic() - started < 15  # a loaded machine is slower; the regular expression takes hours
    assert Pattern("*a" * 60 + "*").matches(name) and not Pattern("a" * 256 + "*").matches(name)
