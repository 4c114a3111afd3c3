"""Counts and truth values as every command, sentence and alert words them."""

from __future__ import annotations

from jitaku.words import counted, yes_no


def test_a_count_of_one_takes_the_singular_and_any_other_the_plural() -> None:
    assert [counted(n, "minute") for n in (0, 1, 2)] == ["0 minutes", "1 minute", "2 minutes"]
    assert counted(1, "copy", "copies") == "1 copy" and counted(3, "copy", "copies") == "3 copies"
    assert counted(16950, "hour") == "16,950 hours"


def test_a_fraction_agrees_with_the_number_shown() -> None:
    assert counted(0.7, "hour") == "1 hour" and counted(1.2, "hour") == "1 hour"
    assert counted(1.6, "day") == "2 days" and counted(0.2, "minute") == "0 minutes"


def test_a_setting_reads_yes_or_no() -> None:
    assert (yes_no(True), yes_no(False)) == ("yes", "no")
