"""The admin tells every time in the blog's time zone, as the posts' dates are, whatever the server's own zone."""

from __future__ import annotations

from datetime import UTC, datetime

from jitaku.config import Settings
from jitaku.web.admin.page import AdminPages


def admin_pages(timezone: str) -> AdminPages:
    settings = Settings(domains=["example.test"], blog={"timezone": timezone})  # type: ignore[arg-type]
    return AdminPages(settings, gate=None)  # type: ignore[arg-type]


def test_admin_times_are_the_blogs_time_zone() -> None:
    moment = datetime(2026, 12, 6, 23, 30, tzinfo=UTC).timestamp()
    assert admin_pages("Asia/Tokyo").when(moment) == "2026-12-07 08:30"
    assert admin_pages("UTC").when(moment) == "2026-12-06 23:30"
    assert admin_pages("Asia/Tokyo").when(None) == ""
