"""The lists' archives on the web (issue 22): pages.py the pages at /lists/ADDRESS/archive/, message.py one post
as its page shows it, threads.py a month's posts as threads, mbox.py a month as mbox, logins.py the members'
one-time links."""

from __future__ import annotations

from starlette.routing import Route

from jitaku.config import Settings
from jitaku.store import Database
from jitaku.web.archive.logins import ArchiveLogins
from jitaku.web.archive.pages import ArchivePages
from jitaku.web.comment_mail import LocalMail
from jitaku.web.search import Searches


def routes(
    settings: Settings, database: Database, mail: LocalMail | None, secret: str, searches: Searches
) -> list[Route]:
    """MAIL carries the login links; SECRET (web/secret.py's key) signs the members' cookies; SEARCHES runs the
    archive's searches with the site's, two at a time in a thread."""
    logins = ArchiveLogins(settings, database, mail, secret)
    return ArchivePages(settings, database, logins, searches).routes()
