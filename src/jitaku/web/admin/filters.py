"""/admin/filters: the allow and block lists of senders (store/filters.py), for everyone, a domain of ours or one
user, added and removed with the checks of `jitaku filter` (cli/filters.py): a pattern that is an address or a
domain, a user who exists, a domain that is ours."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from jitaku import addresses, log
from jitaku.config import Settings
from jitaku.store import Database, accounts, filters
from jitaku.web.admin.page import AdminPages
from jitaku.web.bodies import read_form

PATH = "/admin/filters"
EMPTY_FORM = {"scope": "global", "owner": "", "action": "block", "pattern": ""}


class Refused(Exception):
    """Input the page refuses, in words for the owner; nothing was changed."""


class FiltersAdmin:
    def __init__(self, admin: AdminPages, settings: Settings, database: Database) -> None:
        self._admin = admin
        self._settings = settings
        self._database = database

    def routes(self) -> list[Route]:
        protect = self._admin.gate.protect
        return [
            Route(PATH, protect(self._page), methods=["GET"]),
            Route(PATH, protect(self._add), methods=["POST"]),
            Route(f"{PATH}/remove", protect(self._remove), methods=["POST"]),
        ]

    async def _render(
        self, request: Request, said: str = "", error: str = "", form: dict[str, str] | None = None, status: int = 200
    ) -> Response:
        found = await self._database.query(filters.rules, snapshot=False)
        context = {
            "rules": found,
            "said": said,
            "error": error,
            "form": form or EMPTY_FORM,
            "domains": self._settings.domains,
        }
        return await self._admin.render(request, "filters.html", PATH, context, status_code=status)

    async def _page(self, request: Request) -> Response:
        said = {"added": "Rule saved.", "removed": "Rule removed."}.get(request.query_params.get("done", ""), "")
        return await self._render(request, said=said)

    async def _add(self, request: Request) -> Response:
        form = await read_form(request)
        typed = {key: str(form.get(key, default)).strip() for key, default in EMPTY_FORM.items()}
        try:
            if typed["action"] not in filters.ACTIONS:
                raise Refused(f"The action is allow or block, not {typed['action'][:40]!r}")
            action: filters.Action = "allow" if typed["action"] == "allow" else "block"
            scope, owner = await self._scope(typed["scope"], typed["owner"])
            pattern = filters.pattern_of(typed["pattern"])
        except (Refused, filters.RuleError) as refused:
            return await self._render(request, error=f"{refused} (nothing changed).", form=typed, status=400)
        rule = await self._database.transact(lambda tx: filters.add(tx, scope, owner, action, pattern))
        log.event("filter_rule_added", id=rule.id, scope=scope, owner=owner or None, action=action, pattern=pattern)
        return RedirectResponse(f"{PATH}?done=added", status_code=303)

    async def _scope(self, scope: str, owner: str) -> tuple[filters.Scope, str]:
        """SCOPE and its OWNER as `jitaku filter` takes them: global has none, a domain is ours, a user exists."""
        if scope == "global":
            return "global", ""
        if scope == "domain":
            name = owner.lower().rstrip(".")
            if not self._settings.is_local_domain(name):
                ours = ", ".join(self._settings.domains)
                raise Refused(f"{name[:80]!r} is not one of this server's domains ({ours})")
            return "domain", name
        if scope == "user":
            parsed = addresses.parse(owner)
            if parsed is None:
                raise Refused(f"{owner[:80]!r} is not a plain mail address")
            address = addresses.normalize(str(parsed))
            if await self._database.query(lambda s: accounts.find_user(s, address), snapshot=False) is None:
                raise Refused(f"There is no user {address} (see jitaku user list)")
            return "user", address
        raise Refused(f"The scope is global, domain or user, not {scope[:40]!r}")

    async def _remove(self, request: Request) -> Response:
        form = await read_form(request)
        text = str(form.get("id", ""))
        if not (text.isascii() and text.isdigit() and len(text) < 19):
            error = f"{text[:40]!r} is not a rule's number (nothing changed)."
            return await self._render(request, error=error, status=400)
        rule_id = int(text)
        if not await self._database.transact(lambda tx: filters.remove(tx, rule_id)):
            return await self._render(request, error=f"There is no rule {rule_id} (nothing changed).", status=404)
        log.event("filter_rule_removed", id=rule_id)
        return RedirectResponse(f"{PATH}?done=removed", status_code=303)
