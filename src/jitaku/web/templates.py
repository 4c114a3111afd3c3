"""The pages' templates: one Jinja2 environment for every page, made when the first page is served, so that
the idle daemon goes without jinja2 (its memory is held under 80 MB, issue 20)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.templating import Jinja2Templates


@cache
def templates() -> Jinja2Templates:
    from starlette.templating import Jinja2Templates

    return Jinja2Templates(directory=str(Path(__file__).parent / "templates"))
