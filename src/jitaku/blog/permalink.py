"""A post's URL: `[blog] permalink` filled in with its slug and the year, month and day of its date in
`[blog] timezone`. The URL is a path of Unicode text (a Japanese slug stays as written); a web page
percent-encodes it where it links to it."""

from __future__ import annotations

import string
from datetime import datetime, tzinfo

FIELDS = frozenset({"year", "month", "day", "slug"})


def check_pattern(pattern: str) -> None:
    """A ValueError naming what is wrong with PATTERN: every URL must be a path of its own per post."""
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError as error:
        raise ValueError(f"{pattern!r}: {error}") from None
    if not pattern.startswith("/"):
        raise ValueError(f"expected a path starting with /, got {pattern!r}")
    if unknown := names - FIELDS:
        raise ValueError(
            f"{pattern!r}: unknown field {{{sorted(unknown)[0]}}}; fields: {{year}} {{month}} {{day}} {{slug}}"
        )
    if "slug" not in names:
        raise ValueError(f"{pattern!r} needs {{slug}}, or two posts of one day would share a URL")


def zone(name: str) -> tzinfo | None:
    """The time zone NAME (a checked `[blog] timezone`); None for the system's."""
    if not name:
        return None
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def url_of(pattern: str, slug: str, published_at: float, timezone: tzinfo | None) -> str:
    """The URL of the post with SLUG dated PUBLISHED_AT (a UTC timestamp)."""
    when = datetime.fromtimestamp(published_at, timezone) if timezone else datetime.fromtimestamp(published_at)
    return pattern.format(year=f"{when.year:04d}", month=f"{when.month:02d}", day=f"{when.day:02d}", slug=slug)
