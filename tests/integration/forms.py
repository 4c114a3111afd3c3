"""A form sent as a browser sends it: the page that serves it fetched first (which sets the CSRF cookie), then
the form POSTed with every hidden field of that page, `csrf` among them (web/csrf.py)."""

from __future__ import annotations

import re

import httpx

CSRF_FIELD = re.compile(r'<input type="hidden" name="csrf" value="([^"]*)">')


def csrf_of(page: str) -> str:
    """The CSRF field's value in a page's form; fails if the page has none."""
    found = CSRF_FIELD.search(page)
    assert found is not None, f"no csrf field in the page:\n{page[:2000]}"
    return found.group(1)


def submit(client: httpx.Client, page: str, data: dict[str, str], action: str | None = None) -> httpx.Response:
    """DATA POSTed to ACTION (default: PAGE itself) with the CSRF field of the form PAGE serves."""
    served = client.get(page)
    return client.post(action or page, data={**data, "csrf": csrf_of(served.text)})
