"""The site's search page, /search?q=: the blog's published posts and pages, then the archived posts of the lists
whose archive is public, holding every word asked (store/search.py). Drawn on the site's own layout, never kept
(its answer depends on the query). The query is bounded, and runs in a thread, SEARCHES at a time: a word of one or
two characters reads every row (a quarter of a second on 20,000 long posts), which on the event loop would hold
up mail and every other page, and any visitor may ask it again and again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from jitaku.store import Database, search
from jitaku.store.statements import Statements
from jitaku.web.site import Site

T = TypeVar("T")
SEARCHES = 2  # at once, the site's and the list archives' together; more wait their turn
PER_PAGE = 20
MAX_PAGE = 50  # deeper than anyone reads: a crawler's page 10,000 costs nothing


class Searches:
    """The searches of the site and of the list archives, each in a thread, SEARCHES at a time."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._turns = asyncio.Semaphore(SEARCHES)

    async def run(self, job: Callable[[Statements], T]) -> T:
        async with self._turns:
            return await asyncio.to_thread(self._database.query_now, job)


class SearchPage:
    def __init__(self, searches: Searches, site: Site) -> None:
        self._searches = searches
        self._site = site

    def routes(self) -> list[Route]:
        return [Route("/search", self._search, methods=["GET", "HEAD"])]

    async def _search(self, request: Request) -> Response:
        query = request.query_params.get("q", "")[: search.MAX_QUERY]
        try:
            number = min(max(int(request.query_params.get("page", "1")), 1), MAX_PAGE)
        except ValueError:
            number = 1
        offset = (number - 1) * PER_PAGE
        context: dict[str, Any] = {"query": query, "number": number, "posts": [], "archived": []}
        if search.words(query):
            context.update(await self._searches.run(lambda s: _found(s, query, offset)))
        more = len(context["posts"]) > PER_PAGE or len(context["archived"]) > PER_PAGE
        context.update(posts=context["posts"][:PER_PAGE], archived=context["archived"][:PER_PAGE])
        context["older"] = f"/search?{_query(query, number + 1)}" if more and number < MAX_PAGE else None
        context["newer"] = f"/search?{_query(query, number - 1)}" if number > 1 else None
        return HTMLResponse(self._site.html("search.html", None, **context))


def _found(statements: Statements, query: str, offset: int) -> dict[str, Any]:
    """One more than a page of each kind: whether there is an older page is then known."""
    posts = search.find_posts(statements, query, time.time(), PER_PAGE + 1, offset)
    urls = dict(statements.run(_URLS.format(", ".join("?" for _ in posts)), [p.ref for p in posts])) if posts else {}
    found = search.find_list_posts(statements, search.public_lists(statements), query, PER_PAGE + 1, offset)
    pages = search.archived(statements, [f.ref for f in found])
    return {
        "posts": [(urls[p.ref], p) for p in posts if p.ref in urls],
        "archived": [(pages[f.ref], f) for f in found if f.ref in pages],
    }


_URLS = "SELECT id, url FROM posts WHERE id IN ({})"


def _query(query: str, number: int) -> str:
    return urlencode({"q": query, "page": number})
