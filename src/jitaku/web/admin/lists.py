"""/admin/lists: every list with its members, posts and held posts; a list's page with its settings (checked by
store.lists.check_setting, as `jitaku list set` is), its members and their delivery (added, removed, enabled
and disabled as `jitaku list add|remove|member` do), the posts held for a moderator (approved or rejected as
`jitaku list approve|reject` do: handed back to the list runner's inbox, which posts them or tells the sender)
and the bounce scores, per member and per domain that refused the list's mail."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from jitaku import addresses, log
from jitaku.store import Database, Tx, lists
from jitaku.store.accounts import AccountError
from jitaku.web.admin.page import AdminPages
from jitaku.web.bodies import read_form

PATH = "/admin/lists"
# The settings the form shows and saves, in this order; each is checked by lists.check_setting
SETTINGS = ("name", "subject_tag", "reply_to", "dmarc", "owners", "bounce_threshold", "archive")
CHOICES: dict[str, tuple[str, ...]] = {
    "reply_to": lists.REPLY_TO,
    "dmarc": lists.DMARC,
    "archive": lists.ARCHIVE,
}
HINTS = {
    "subject_tag": "with one %d or %05d-style number: [sota:%05d]",
    "reply_to": "where replies go: the list, the sender, or nowhere added",
    "dmarc": "what From becomes when the author's domain asks for DMARC",
    "owners": "addresses separated by commas: they hear of held posts and bounces",
    "bounce_threshold": "a member whose bounce score reaches it is disabled",
    "archive": "who may read the archive on the web",
}
MAX_ADDED = 1000  # addresses one form adds; `jitaku list import FILE` takes more
DONE = {
    "settings": "Settings saved.",
    "added": "Members added (any who were members already: delivery enabled).",
    "removed": "Member removed.",
    "enabled": "Delivery enabled.",
    "disabled": "Delivery disabled.",
    "changed": "Member's delivery changed.",
    "approved": "Approved: the list sends it within seconds.",
    "rejected": "Rejected: the sender is told within seconds.",
    "discarded": "Discarded: nobody is told.",
}
MEMBER_ACTIONS = ("remove", "enable", "disable")
# What a member's own settings buttons set, as `jitaku list member --digest/--self-copy` do
MEMBER_SETTINGS = {
    "digest": {"digest": True},
    "each": {"digest": False},
    "self-copy": {"self_copy": True},
    "no-self-copy": {"self_copy": False},
}
HELD_ACTIONS = {"approve": "approved", "reject": "rejected", "discard": "discarded"}


def _value(mailing_list: lists.MailingList, key: str) -> str:
    """A setting as the form shows it."""
    value = getattr(mailing_list, key, "")
    return ", ".join(value) if isinstance(value, tuple) else str(value)


class ListsAdmin:
    def __init__(self, admin: AdminPages, database: Database) -> None:
        self._admin = admin
        self._database = database

    def routes(self) -> list[Route]:
        protect = self._admin.gate.protect
        one = PATH + "/{address}"
        return [
            Route(PATH, protect(self._index), methods=["GET"]),
            Route(one, protect(self._page), methods=["GET"]),
            Route(one + "/settings", protect(self._settings), methods=["POST"]),
            Route(one + "/members", protect(self._members), methods=["POST"]),
            Route(one + "/held", protect(self._held), methods=["POST"]),
        ]

    async def _index(self, request: Request) -> Response:
        found = await self._database.query(lists.summaries, snapshot=False)
        shown = [{**summary, "href": f"{PATH}/{quote(summary['address'], safe='@')}"} for summary in found]
        return await self._admin.render(request, "lists.html", PATH, {"lists": shown})

    async def _find(self, request: Request) -> lists.MailingList | None:
        address = str(request.path_params["address"]).lower()
        return await self._database.query(lambda s: lists.find_list(s, address), snapshot=False)

    async def _page(self, request: Request) -> Response:
        found = await self._find(request)
        if found is None:
            return await self._no_list(request)
        return await self._render(request, found, said=DONE.get(request.query_params.get("done", ""), ""))

    async def _render(
        self,
        request: Request,
        found: lists.MailingList,
        said: str = "",
        error: str = "",
        typed: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        def read(s: Any) -> tuple[list[lists.Member], list[lists.Held], list[lists.Refusal], int]:
            return (
                lists.members(s, found.id),
                lists.held(s, found.id),
                lists.refusals(s, found.id),
                lists.post_count(s, found.id),
            )

        members, held, refusals, posts = await self._database.query(read)
        settings = [
            {
                "key": key,
                "value": (typed or {}).get(key, _value(found, key)),
                "choices": CHOICES.get(key),
                "hint": HINTS.get(key, ""),
            }
            for key in SETTINGS
        ]
        context = {
            "list": found,
            "action": f"{PATH}/{quote(found.address, safe='@')}",
            "said": said,
            "error": error,
            "settings": settings,
            "posts": posts,
            "members": [
                {
                    **member.as_json(),
                    "bounce_at": self._admin.when(member.bounce_at),
                    "score": f"{member.bounce_score:.3g}",
                }
                for member in members
            ],
            "held": [{**vars(h), "received": self._admin.when(h.received_at)} for h in held],
            "refusals": [
                {"domain": r.domain, "score": f"{r.score:.3g}", "at": self._admin.when(r.refused_at)} for r in refusals
            ],
            "added": (typed or {}).get("addresses", ""),
        }
        return await self._admin.render(request, "list.html", PATH, context, status_code=status)

    async def _no_list(self, request: Request) -> Response:
        address = str(request.path_params["address"]).lower()
        context = {"title": "lists: no such list", "message": f"There is no list {address}.", "back": PATH}
        return await self._admin.render(request, "refused.html", PATH, context, status_code=404)

    def _done(self, found: lists.MailingList, done: str) -> Response:
        return RedirectResponse(f"{PATH}/{quote(found.address, safe='@')}?done={done}", status_code=303)

    async def _settings(self, request: Request) -> Response:
        """Every setting of the form checked first; any wrong one is a 400 naming it, with nothing saved."""
        found = await self._find(request)
        if found is None:
            return await self._no_list(request)
        form = await read_form(request)
        typed = {key: str(form.get(key, "")) for key in SETTINGS}
        try:
            for key in SETTINGS:
                if key not in form:
                    raise AccountError(f"{key}: missing from the form")
                lists.check_setting(key, typed[key])
        except AccountError as wrong:
            return await self._render(request, found, error=f"{wrong} (nothing saved)", typed=typed, status=400)

        def save(tx: Tx) -> None:
            for key in SETTINGS:
                lists.set_setting(tx, found.address, key, typed[key])

        await self._database.transact(save)
        log.event("list_settings", list=found.address, via="admin")
        return self._done(found, "settings")

    async def _members(self, request: Request) -> Response:
        found = await self._find(request)
        if found is None:
            return await self._no_list(request)
        form = await read_form(request)
        action = str(form.get("action", ""))
        if action == "add":
            return await self._add(request, found, str(form.get("addresses", "")))
        member = addresses.normalize(str(form.get("member", "")))
        if (action not in MEMBER_ACTIONS and action not in MEMBER_SETTINGS) or addresses.parse(member) is None:
            return await self._render(request, found, error="Unknown action or member: nothing changed.", status=400)

        def change(tx: Tx) -> bool:
            if action in MEMBER_SETTINGS:
                return lists.set_member(tx, found.id, member, **MEMBER_SETTINGS[action])
            if action == "remove":
                return bool(lists.remove_members(tx, found.id, [member])[0])
            enabled = action == "enable"  # as `jitaku list member --enable/--disable`: the bounce score starts over
            reason = None if enabled else "disabled by owner"
            return lists.set_member(
                tx, found.id, member, enabled=enabled, bounce_score=0.0, bounce_at=None, disabled_reason=reason
            )

        if not await self._database.transact(change):
            return await self._render(request, found, error=f"{member} is not a member of {found.address}.", status=404)
        done = {"remove": "removed", "enable": "enabled", "disable": "disabled"}.get(action, "changed")
        log.event("list_member", list=found.address, member=member, action=action, via="admin")
        return self._done(found, done)

    async def _add(self, request: Request, found: lists.MailingList, text: str) -> Response:
        """ADDRESSES, one a line (or separated by commas or spaces), added as `jitaku list add` adds them."""
        wanted = [word for word in text.replace(",", " ").split() if word]
        typed = {"addresses": text}
        if not wanted:
            return await self._render(
                request, found, error="Give at least one address to add.", typed=typed, status=400
            )
        if len(wanted) > MAX_ADDED:
            error = f"At most {MAX_ADDED} addresses at once: use jitaku list import FILE for more (nothing added)."
            return await self._render(request, found, error=error, typed=typed, status=400)
        wrong = [word for word in wanted if addresses.parse(word) is None]
        if wrong:
            error = f"Not a plain mail address: {', '.join(wrong[:5])} (nothing added)."
            return await self._render(request, found, error=error, typed=typed, status=400)

        def add(tx: Tx) -> None:
            added, already = lists.add_members(tx, found.id, [addresses.normalize(word) for word in wanted])
            for member in already:
                lists.set_member(
                    tx, found.id, member, enabled=True, bounce_score=0.0, bounce_at=None, disabled_reason=None
                )

        await self._database.transact(add)
        log.event("list_members_added", list=found.address, count=len(wanted), via="admin")
        return self._done(found, "added")

    async def _held(self, request: Request) -> Response:
        """A held post approved or rejected goes back to the list runner's inbox (role "approved" or "rejected",
        as the CLI's do), which posts it to the members or tells the sender; a discarded one is dropped."""
        found = await self._find(request)
        if found is None:
            return await self._no_list(request)
        form = await read_form(request)
        action, held_id, note = str(form.get("action", "")), str(form.get("id", "")), str(form.get("note", "")).strip()
        if action not in HELD_ACTIONS or not held_id.isascii() or not held_id.isdigit() or len(held_id) > 18:
            return await self._render(request, found, error="Unknown action or held post: nothing changed.", status=400)

        def release(tx: Tx) -> None:
            sender, body = lists.take_held(tx, found.id, int(held_id))
            if action != "discard":
                role: lists.InboxRole = "approved" if action == "approve" else "rejected"
                lists.add_inbox(tx, found.address, role, found.address, sender, body, time.time(), note or None)

        try:
            await self._database.transact(release)
        except AccountError:
            error = f"Held post {held_id} is not waiting any more (decided meanwhile): nothing changed."
            return await self._render(request, found, error=error, status=404)
        log.event("list_held_decided", list=found.address, held=held_id, action=action, via="admin")
        return self._done(found, HELD_ACTIONS[action])
