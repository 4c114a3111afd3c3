"""Draws an admin page on templates/admin/base.html, with what its header needs: the host's name, which nav entry
is this page's, and whether there is a session to log out of (a browser let in on loopback has none). Every time
an admin page shows is told in the blog's time zone, as the posts' dates are: a server's own zone is often UTC."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from jitaku.config import Settings
from jitaku.web.auth import Gate
from jitaku.web.site_info import SiteInfo
from jitaku.web.templates import templates


class AdminPages:
    def __init__(self, settings: Settings, gate: Gate) -> None:
        self._settings = settings
        self.gate = gate
        self._site = SiteInfo.of(settings)

    def when(self, timestamp: float | None) -> str:
        """TIMESTAMP to the minute in the blog's time zone; "" for none."""
        return "" if timestamp is None else self._site.when(timestamp).strftime("%Y-%m-%d %H:%M")

    async def render(
        self, request: Request, template: str, current: str, context: dict[str, Any], status_code: int = 200
    ) -> Response:
        """TEMPLATE (under templates/admin/) as the page of nav entry CURRENT ("/admin/posts")."""
        full = {
            "hostname": self._settings.mail_hostname,
            "current": current,
            "signed_in": await self.gate.signed_in(request),
            **context,
        }
        return templates().TemplateResponse(request, f"admin/{template}", full, status_code=status_code)
