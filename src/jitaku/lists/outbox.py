"""What a list sends of its own: word to its owners, replies to requesters, mail to -owner passed on.

It goes through the inbound pipeline (signed, queued or stored) in the transaction that also commits the
change that caused it, such as taking the item out of the inbox: a crash sends it either once or not yet.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from jitaku import log, store
from jitaku.addresses import Role
from jitaku.lists import notices
from jitaku.mail.pipeline import Arrival, Pipeline
from jitaku.mail.policy import Accepted, Policy
from jitaku.store import Database, Tx
from jitaku.store.lists import InboxItem, MailingList

# A write committed with what a list sends, in the writer's transaction
Change = Callable[[Tx], None]


def owners_of(mailing_list: MailingList) -> list[str]:
    return list(mailing_list.owners) or [f"postmaster@{mailing_list.domain}"]


def forget(item: InboxItem) -> Change:
    """The change that takes ITEM out of the inbox, to commit with whatever handled it."""
    return partial(store.lists.remove_inbox, item_id=item.id, lease=item.lease)


class Outbox:
    """Sends a list's own mail from its role addresses, its bounces coming back to its -bounces address."""

    def __init__(self, database: Database, policy: Policy, pipeline: Pipeline) -> None:
        self._database = database
        self._policy = policy
        self._pipeline = pipeline

    async def decisions(self, addresses: list[str]) -> tuple[Accepted, ...]:
        """Where the list's own mail goes; never back into a list, which could loop for ever."""
        decided = [await self._policy.recipient(address, authenticated=True) for address in addresses]
        return tuple(d for d in decided if isinstance(d, Accepted) and d.list_role is None)

    async def send(
        self,
        mailing_list: MailingList,
        role: Role,
        to: list[str],
        subject: str,
        text: str,
        also: Change,
        attachment: bytes | None = None,
    ) -> None:
        """Mail TO from the list's ROLE address (-owner or -request), committed with ALSO."""
        decisions = await self.decisions(to)
        if not decisions:
            await self._database.transact(also)
            return
        data = notices.message(mailing_list.role_address(role), to, subject, text, attachment)
        arrival = Arrival(mailing_list.role_address("bounces"), decisions, data, session=None)
        await self._pipeline.accept(arrival, also=also)

    async def forward(self, item: InboxItem, to: list[str]) -> None:
        """Pass ITEM on as it came, envelope sender and all, to TO; it leaves the inbox in the same commit."""
        decisions = await self.decisions(to)
        if not decisions:
            await self._database.transact(forget(item))
            return
        arrival = Arrival(item.sender, decisions, item.body, session=None)
        await self._pipeline.accept(arrival, also=forget(item))

    async def drop(self, item: InboxItem, reason: str) -> None:
        """Take ITEM out of the inbox unanswered, saying why in the log."""
        await self._database.transact(forget(item))
        log.event("list_dropped", item=item.id, sender=f"<{item.sender}>", reason=reason)
