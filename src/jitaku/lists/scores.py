"""Bounce scores: how sure a list is that mail to a member, or to a whole domain, fails.

What a real list needs, and the rule for each:

- A full mailbox for an afternoon is one bad day, not twenty bounces of a busy list: a bounce counts
  at most once a day (Mailman 3's rule).
- A delivery that goes through halves the score (it used to reset it): one lucky copy between weeks
  of failures no longer wipes them out, while an address that works again is forgiven within a few
  posts. An address that fails three posts in four still reaches the threshold.
- Old news fades: a score halves every 90 days without a counted bounce, in whole days. Mailman
  forgets everything after 7 quiet days (`bounce_info_stale_after`), so a dead address on a list
  that posts weekly or less is never disabled; with a 90-day half-life it is, on a list posting
  every two weeks or more often (a daily list disables it on the sixth day, a weekly one in six
  weeks), and a burst of bounces during an outage months ago no longer weighs like yesterday's.
"""

from __future__ import annotations

import math

DAY = 86400.0
HALF_LIFE_DAYS = 90
FORGOTTEN = 0.05  # below this a halved score is 0, so that members show 0 rather than 1.2e-05


def decayed(score: float, since: float | None, now: float) -> float:
    """SCORE as it stands at NOW, counted SINCE (the last counted bounce)."""
    if since is None or score <= 0:
        return score
    days = max(0, int((now - since) // DAY))
    return score * math.pow(0.5, days / HALF_LIFE_DAYS)


def after_bounce(score: float, since: float | None, now: float) -> tuple[float, bool]:
    """(the score after a bounce at NOW, whether it counted): at most one a day."""
    if since is not None and 0 <= now - since < DAY:
        return score, False
    return decayed(score, since, now) + 1.0, True
