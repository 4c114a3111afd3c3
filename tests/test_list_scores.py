"""lists/scores.py: a bounce counts once a day, a score fades with a 90-day half-life."""

from __future__ import annotations

from jitaku.lists.scores import DAY, after_bounce, decayed

T0 = 1_800_000_000.0


def test_a_bounce_counts_at_most_once_a_day() -> None:
    score, counted = after_bounce(0.0, None, T0)
    assert (score, counted) == (1.0, True)
    assert after_bounce(score, T0, T0 + DAY - 1) == (1.0, False)
    assert after_bounce(score, T0, T0 + DAY)[1]


def test_a_score_fades_by_half_in_ninety_whole_days() -> None:
    assert decayed(4.0, T0, T0 + 0.9 * DAY) == 4.0  # whole days: the same day compares exactly
    assert decayed(4.0, T0, T0 + 90 * DAY) == 2.0
    assert decayed(4.0, T0, T0 + 180 * DAY) == 1.0
    assert decayed(4.0, None, T0) == 4.0


def test_a_dead_address_reaches_five_on_a_daily_list_and_on_a_fortnightly_one() -> None:
    for interval_days, bounces_needed in ((1, 6), (7, 6), (14, 7)):
        score, since, count = 0.0, None, 0
        while score < 5:
            now = T0 + count * interval_days * DAY
            score, _counted = after_bounce(score, since, now)
            since, count = now, count + 1
        assert count == bounces_needed, interval_days
