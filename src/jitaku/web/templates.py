"""The pages' templates: one Jinja2 environment for every page, made when the first page is served, so that
the idle daemon goes without jinja2 (its memory is held under 80 MB, issue 20). Every POST form calls
`{{ csrf_field(request) }}` (csrf.py)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from jitaku.web import csrf

if TYPE_CHECKING:
    from markupsafe import Markup
    from starlette.requests import Request
    from starlette.templating import Jinja2Templates


@cache
def templates() -> Jinja2Templates:
    from starlette.templating import Jinja2Templates

    pages = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
    pages.env.globals["csrf_field"] = csrf_field
    return pages


def csrf_field(request: Request) -> Markup:
    """The hidden input that lets the form on this page be POSTed (csrf.Protect checks it)."""
    from markupsafe import Markup

    return Markup('<input type="hidden" name="{}" value="{}">').format(csrf.FIELD, csrf.field(request))
