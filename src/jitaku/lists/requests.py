"""Subscribe, unsubscribe and confirm: the commands mailed to a list's -request address, and the list's web
pages, which call the same functions so that both send the same confirmation mail and store the same rows.

A subscription or an unsubscription waits for the address's owner to confirm it, by replying to the
confirmation mail or on the page it links to, within CONFIRMATION_SECONDS: anyone can ask in anyone's name.
"""

from __future__ import annotations

import secrets
from functools import partial

from jitaku import log, store
from jitaku.lists import bounces, commands, notices
from jitaku.lists.commands import Command
from jitaku.lists.outbox import Change, Outbox, forget, owners_of
from jitaku.mail import authcheck, headers
from jitaku.store import Database, Tx
from jitaku.store.lists import InboxItem, MailingList

CONFIRMATION_SECONDS = 3 * 86400


def confirm(target: Tx, token: str, list_id: int, address: str, action: str) -> bool:
    """Use up TOKEN and make the change it confirms; False when it was used meanwhile or is too old."""
    if store.lists.take_confirmation(target, token, CONFIRMATION_SECONDS) is None:
        return False
    if action == "subscribe":
        store.lists.add_members(target, list_id, [address])
    else:
        store.lists.remove_members(target, list_id, [address])
    return True


class Requests:
    """Answers what people ask of a list: by mail to its -request address (`handle`) or on its page (`subscribe`)."""

    def __init__(self, database: Database, outbox: Outbox, hostname: str, web_url: str) -> None:
        self._database = database
        self._outbox = outbox
        self._hostname = hostname
        self._web_url = web_url

    async def handle(self, mailing_list: MailingList, item: InboxItem) -> None:
        """The commands mailed to the list's -request address in ITEM; the answer leaves it in the inbox."""
        if not item.sender or bounces.is_auto_reply(headers.parse(item.body)):
            await self._database.transact(forget(item))
            return
        # answering would mail someone who never asked
        if authcheck.forged(headers.split_fields(item.body)[0], self._hostname):
            await self._outbox.drop(item, "request from a sender that fails SPF or DMARC: no reply")
            return
        requester = (headers.from_addresses(item.body) or [item.sender.lower()])[0]
        asked = commands.parse(item.body) or [Command("help", None)]
        await self._answer(mailing_list, requester, asked, [forget(item)])

    async def subscribe(self, mailing_list: MailingList, address: str) -> None:
        """ADDRESS asked on the list's web page to join: the same answer as to "subscribe" mailed to -request@."""
        await self._answer(mailing_list, address, [Command("subscribe", None)], [])

    async def _answer(
        self, mailing_list: MailingList, requester: str, asked: list[Command], changes: list[Change]
    ) -> None:
        """Answer REQUESTER's commands ASKED in one mail, committed with CHANGES and what the commands change."""
        replies: list[str] = []
        verbs: list[str] = []
        subject = f"Re: your request to {mailing_list.role_address('request')}"
        attachment: bytes | None = None
        members = await self._database.query(lambda s: store.lists.members(s, mailing_list.id), snapshot=False)
        is_member = any(m.address == requester for m in members)
        for command in asked:
            verbs.append(command.verb)
            if command.verb in ("subscribe", "unsubscribe"):
                if (command.verb == "subscribe") == is_member:
                    replies.append(f"{command.verb}: {requester} is {'already' if is_member else 'not'} a member.")
                    continue
                if await self._database.query(
                    partial(
                        store.lists.pending_confirmation,
                        list_id=mailing_list.id,
                        address=requester,
                        action=command.verb,
                    ),
                    snapshot=False,
                ):
                    continue  # asked within the hour already: no second mail, or a stranger could flood them
                token = secrets.token_hex(16)
                changes.append(
                    partial(
                        store.lists.add_confirmation,
                        token=token,
                        list_id=mailing_list.id,
                        address=requester,
                        action=command.verb,
                    )
                )
                subject = f"confirm {token}"
                replies.append(
                    f"{command.verb}: to confirm that {requester} wants to {command.verb}, reply to this mail "
                    f"keeping its subject, or open\n  {self._web_url}/lists/confirm/{token}"
                )
            elif command.verb == "confirm":
                replies.append(await self._confirm(mailing_list, command.argument or "", changes))
            elif command.verb == "members":
                if requester in owners_of(mailing_list):
                    replies.append("members:\n" + "\n".join(f"  {m.address}" for m in members))
                else:
                    replies.append("members: only the list's owners may ask for the member list.")
            elif command.verb == "get":
                number = int(command.argument or 0)
                body = await self._database.query(
                    partial(store.lists.post_body, list_id=mailing_list.id, number=number), snapshot=False
                )
                if body is None or not is_member:
                    replies.append(f"get {number}: {'no such post' if is_member else 'members only'}.")
                else:
                    attachment = body
                    replies.append(f"get {number}: attached.")
            else:
                replies.append(
                    notices.HELP.format(list=mailing_list.address, request=mailing_list.role_address("request"))
                )

        def apply(target: Tx) -> None:
            for change in changes:
                change(target)

        if not replies:
            if changes:
                await self._database.transact(apply)
            return
        text = "\n\n".join(replies) + "\n"
        await self._outbox.send(mailing_list, "request", [requester], subject, text, apply, attachment)
        log.event("list_request", list=mailing_list.address, requester=requester, commands=",".join(verbs))

    async def _confirm(self, mailing_list: MailingList, token: str, changes: list[Change]) -> str:
        found = await self._database.query(lambda s: store.lists.find_confirmation(s, token), snapshot=False)
        if found is None or found[0] != mailing_list.id:
            return "confirm: unknown or used token."
        _list_id, address, action = found

        def apply(target: Tx) -> None:
            confirm(target, token, mailing_list.id, address, action)

        changes.append(apply)
        return f"confirm: {address} is {'subscribed to' if action == 'subscribe' else 'unsubscribed from'} the list."
