"""What every page and feed of the blog says of the site: where it is (`[web] url`), its name (`[blog] title`, the
hostname when unset), description and language, and the time zone its dates are told in. Made once from the
settings, so that the pages, the feeds and the sitemap never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from jitaku.blog.paths import absolute
from jitaku.blog.permalink import zone
from jitaku.config import Settings
from jitaku.web import stylesheet


@dataclass(frozen=True)
class SiteInfo:
    """The site as its pages and feeds name it."""

    base: str  # `[web] url`, without a trailing slash
    title: str
    description: str
    language: str  # as configured: "ja", "en-US"
    zone: tzinfo | None  # None: the system's

    @classmethod
    def of(cls, settings: Settings) -> SiteInfo:
        """From SETTINGS; the time zone checked by config.py already."""
        blog = settings.blog
        title = blog.title or settings.mail_hostname
        return cls(settings.web_url, title, blog.description, blog.language, zone(blog.timezone))

    @property
    def words(self) -> str:
        """The language's primary subtag ("ja" of "ja-JP"): what picks the words the pages and feeds are in."""
        return self.language.split("-")[0].lower()

    def url(self, path: str) -> str:
        """PATH (Unicode text, as posts.url keeps it) as an absolute URL, percent-encoded."""
        return absolute(self.base, path)

    def when(self, timestamp: float) -> datetime:
        """TIMESTAMP in the blog's time zone: a post's date is the one its writer saw."""
        return datetime.fromtimestamp(timestamp, self.zone) if self.zone else datetime.fromtimestamp(timestamp)

    def day(self, timestamp: float, minutes: bool = False) -> str:
        """TIMESTAMP's date as its writer saw it, in the blog's time zone; with the time to the MINUTES (a
        comment's)."""
        return self.when(timestamp).strftime("%Y-%m-%d %H:%M" if minutes else "%Y-%m-%d")

    def iso(self, timestamp: float) -> str:
        """The same instant for <time datetime>, with its UTC offset."""
        return self.when(timestamp).astimezone(self.zone).isoformat(timespec="seconds")

    def month_path(self, timestamp: float) -> str:
        """The archive of the month TIMESTAMP falls in: /YYYY/MM/."""
        when = self.when(timestamp)
        return f"/{when.year:04d}/{when.month:02d}/"

    def context(self) -> dict[str, Any]:
        """`site` in the pages' templates (site/base.html)."""
        return {
            "title": self.title,
            "description": self.description,
            "language": self.language,
            "css_version": stylesheet.version(),
            "search": "検索" if self.words == "ja" else "Search",  # the search box's, in the header of every page
        }
