"""List pages: the RFC 8058 one-click unsubscribe endpoint and subscribe/unsubscribe confirmations.

A GET never changes anything (mail scanners follow links); a POST does. The
one-click POST needs no login: the token in its URL is the member's proof.
Subscribing and confirming here call lists/requests.py, as mail to -request@ does,
so both paths send the same confirmation mail and store the same rows.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jitaku import addresses, log, store
from jitaku.lists import requests
from jitaku.lists.requests import Requests
from jitaku.lists.tokens import member_for_token
from jitaku.store import Database
from jitaku.web.bodies import read_form
from jitaku.web.templates import templates


def _page(
    request: Request, title: str, message: str, status: int = 200, form: dict[str, Any] | None = None
) -> Response:
    context = {"title": title, "message": message, "form": form}
    return templates().TemplateResponse(request, "list_page.html", context, status_code=status)


def routes(database: Database, asked: Requests) -> list[Route]:
    """ASKED answers subscriptions: it mails the confirmation, as the list runner does for mail to -request@."""

    async def unsubscribe(request: Request) -> Response:
        list_address = request.path_params["list"].lower()
        token = request.path_params["token"]
        found = await database.query(lambda s: store.lists.find_list(s, list_address), snapshot=False)
        if found is None:
            return _page(request, "No such list", f"There is no list {list_address} here.", 404)
        members = await database.query(lambda s: store.lists.members(s, found.id), snapshot=False)
        member = member_for_token(found, members, token)
        if member is None:
            return _page(
                request, "Link not valid", "This unsubscribe link is not valid, or you have left already.", 404
            )
        if request.method == "GET":
            return _page(
                request,
                f"Leave {found.name}?",
                f"{member} will get no more mail from {found.address}.",
                form={"hidden": {"List-Unsubscribe": "One-Click"}, "button": "Unsubscribe"},
            )
        form = await read_form(request)
        if form.get("List-Unsubscribe") != "One-Click":
            return _page(request, "Bad request", "Expected List-Unsubscribe=One-Click (RFC 8058).", 400)
        await database.transact(lambda tx: store.lists.remove_members(tx, found.id, [member]))
        log.event("list_unsubscribed", list=found.address, member=member, via="one-click")
        return _page(request, "Unsubscribed", f"{member} has left {found.address}.")

    async def subscribe(request: Request) -> Response:
        list_address = request.path_params["list"].lower()
        found = await database.query(lambda s: store.lists.find_list(s, list_address), snapshot=False)
        if found is None:
            return _page(request, "No such list", f"There is no list {list_address} here.", 404)
        if request.method == "GET":
            return _page(
                request,
                f"Join {found.name}",
                f"We will mail a confirmation link to the address you give; {found.address} mail starts after that.",
                form={"hidden": {}, "ask_address": True, "button": "Subscribe"},
            )
        form = await read_form(request)
        parsed = addresses.parse(str(form.get("address", "")).strip())
        if parsed is None:
            return _page(request, "Not an address", "Please give a plain mail address like name@example.com.", 400)
        who = addresses.normalize(str(parsed))
        await asked.subscribe(found, who)
        return _page(request, "Check your mail", f"A confirmation has been mailed to {who}.")

    async def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        pending = await database.query(lambda s: store.lists.find_confirmation(s, token), snapshot=False)
        if pending is None:
            return _page(request, "Link not valid", "This confirmation link is unknown or was used already.", 404)
        list_id, who, action = pending
        found = await database.query(lambda s: store.lists.list_by_id(s, list_id), snapshot=False)
        verb = "join" if action == "subscribe" else "leave"
        if request.method == "GET":
            return _page(
                request,
                f"Confirm: {verb} {found.name}",
                f"{who} asked to {verb} {found.address}.",
                form={"hidden": {}, "button": f"Yes, {verb}"},
            )

        if not await database.transact(lambda tx: requests.confirm(tx, token, list_id, who, action)):
            return _page(request, "Link expired", "This confirmation link has expired; please ask again.", 410)
        log.event("list_confirmed", list=found.address, member=who, action=action, via="web")
        return _page(request, "Done", f"{who} has {'joined' if action == 'subscribe' else 'left'} {found.address}.")

    return [
        Route("/lists/{list}/unsubscribe/{token}", unsubscribe, methods=["GET", "POST"]),
        Route("/lists/{list}/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/lists/confirm/{token}", confirm, methods=["GET", "POST"]),
    ]
