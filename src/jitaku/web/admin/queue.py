"""/admin/queue: what waits for delivery, each message with "retry now" (due at once, as `jitaku queue flush`
makes them all) and "delete" (dropped without a bounce, as `jitaku queue delete`). The queue notices either
within a second, as it does the CLI's."""

from __future__ import annotations

import re
import time

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from jitaku import log
from jitaku.store import Database, queue
from jitaku.web.admin.page import AdminPages
from jitaku.web.bodies import read_form

PATH = "/admin/queue"
ACTIONS = {"retry": "is due now", "delete": "is deleted"}
_QUEUE_ID = re.compile(r"[0-9A-Za-z]{1,40}")


class QueueAdmin:
    def __init__(self, admin: AdminPages, database: Database) -> None:
        self._admin = admin
        self._database = database

    def routes(self) -> list[Route]:
        protect = self._admin.gate.protect
        return [
            Route(PATH, protect(self._page), methods=["GET"]),
            Route(PATH, protect(self._act), methods=["POST"]),
        ]

    async def _page(self, request: Request) -> Response:
        waiting = await self._database.query(queue.list_queue)
        done, queue_id = request.query_params.get("done", ""), request.query_params.get("id", "")
        said = f"{queue_id} {ACTIONS[done]}." if done in ACTIONS and _QUEUE_ID.fullmatch(queue_id) else ""
        shown = [
            {
                "id": m.id,
                "sender": m.sender,
                "recipients": m.recipients,
                "attempts": m.attempts,
                "queued": self._admin.when(m.created_at),
                "next": self._admin.when(m.next_attempt),
                "last_error": m.last_error or "",
            }
            for m in waiting
        ]
        return await self._admin.render(request, "queue.html", PATH, {"queue": shown, "said": said})

    async def _act(self, request: Request) -> Response:
        form = await read_form(request)
        action, queue_id = str(form.get("action", "")), str(form.get("id", "")).upper()
        if action not in ACTIONS or not _QUEUE_ID.fullmatch(queue_id):
            return await self._refused(request, "Unknown action or message: use the buttons of the queue page.", 400)
        if action == "retry":
            found = await self._database.transact(lambda tx: queue.retry(tx, queue_id, time.time()))
        else:
            found = await self._database.transact(lambda tx: queue.remove(tx, queue_id))
        if not found:
            return await self._refused(
                request, f"{queue_id} is no longer queued (delivered or deleted meanwhile).", 404
            )
        log.event("queue_admin", id=queue_id, action=action)
        return RedirectResponse(f"{PATH}?done={action}&id={queue_id}", status_code=303)

    async def _refused(self, request: Request, message: str, status_code: int) -> Response:
        context = {"title": "queue: not done", "message": message, "back": PATH}
        return await self._admin.render(request, "refused.html", PATH, context, status_code=status_code)
