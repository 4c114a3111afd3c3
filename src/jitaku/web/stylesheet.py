"""The site's one stylesheet (templates/site/site.css, served at /site.css) and the version the pages put in
its URL, so that a changed one is fetched anew though browsers keep it a day: the post pages (web/site.py) and
a comment's own pages (web/comments.py) alike."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

PATH = Path(__file__).parent / "templates" / "site" / "site.css"


@cache
def version() -> str:
    """The start of the stylesheet's digest, which its ETag also starts with."""
    return hashlib.sha256(PATH.read_bytes()).hexdigest()[:12]
