"""The list engine: works through mail the MX committed for lists, one item at a time, after the 250.

Each item ends in one transaction that also removes it from the inbox: a post
takes its number, goes to the archive and into the queue (queue entries by
destination domain, one copy per member) together, so a crash before the
commit leaves the item to be done again and a crash after it leaves nothing
to redo: no gap, no repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from email.message import Message
from functools import partial

from sqlalchemy.engine import Connection

from jitaku import log, store
from jitaku.addresses import Role
from jitaku.lists import bounces, commands, digest, notices, posting, scores, verp
from jitaku.mail import authcheck, delivery, headers
from jitaku.mail.dkim import Signer
from jitaku.mail.pipeline import Arrival, Pipeline
from jitaku.mail.policy import Accepted, Policy
from jitaku.store import Database
from jitaku.store.lists import InboxItem, MailingList

POLL_SECONDS = 1.0
MAX_ATTEMPTS = 5
RETRY_SECONDS = 10.0  # then 20, 40, 80: about five minutes in all
CONFIRMATION_SECONDS = 3 * 86400
HELD_SECONDS = 30 * 86400
EXPIRY_CHECK_SECONDS = 3600.0
DIGEST_SECONDS = 86400.0
DIGEST_CHECK_SECONDS = 5.0


def owners_of(mailing_list: MailingList) -> list[str]:
    return list(mailing_list.owners) or [f"postmaster@{mailing_list.domain}"]


class ListEngine:
    def __init__(
        self,
        database: Database,
        signer: Signer,
        policy: Policy,
        pipeline: Pipeline,
        hostname: str,
        web_url: str,
        wakeup: asyncio.Event,
        wake_queue: Callable[[], None],
    ) -> None:
        """WAKEUP is set by whoever commits mail for a list; WAKE_QUEUE once copies are queued."""
        self._database = database
        self._signer = signer
        self._policy = policy
        self._pipeline = pipeline
        self._hostname = hostname
        self._web_url = web_url
        self._wake_queue = wake_queue
        self._posting = posting.Posting(database, signer, policy, hostname, web_url, wake_queue)
        self._wakeup = wakeup
        self._digests_checked = 0.0
        self._expired_at = 0.0

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            self._wakeup.clear()
            try:
                item = await self._database.read(lambda c: store.lists.next_inbox(c, time.time()))
                if item is not None:
                    await self._handle_safely(item)
                    continue
                await self._digests()
                await self._expire()
            except Exception as error:  # the store or a digest failing must not stop the daemon's mail
                log.event("list_engine_error", error=repr(error))
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can lose a cancel
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wakeup.wait()

    async def _handle_safely(self, item: InboxItem) -> None:
        """Handle ITEM; on failure try again later, and in the end hold a post for the owners rather than
        let one message stop the list (what else cannot be done is dropped, and logged)."""
        try:
            await self._handle(item)
        except Exception as error:
            gave_up = item.attempts + 1 >= MAX_ATTEMPTS
            log.event(
                "list_error",
                item=item.id,
                role=item.role,
                sender=f"<{item.sender}>",
                attempts=item.attempts + 1,
                error=repr(error),
                action=("held" if item.role in ("post", "approved") else "dropped") if gave_up else "retry later",
            )
            if not gave_up:
                retry = time.time() + RETRY_SECONDS * 2**item.attempts
                await self._database.write(lambda c: store.lists.inbox_failed(c, item.id, retry))
            elif item.role in ("post", "approved"):
                await self._park(item, f"could not be processed: {error!r}")
            else:
                await self._database.write(_forget(item))

    async def _handle(self, item: InboxItem) -> None:
        mailing_list = await self._database.read(lambda c: store.lists.list_by_id(c, item.list_id))
        if item.role in ("post", "approved"):
            await self._post(mailing_list, item)
        elif item.role == "rejected":
            await self._rejected(mailing_list, item)
        elif item.role == "request":
            await self._request(mailing_list, item)
        elif item.role == "owner":
            await self._to_owners(mailing_list, item)
        else:
            await self._bounce(mailing_list, item)

    # posts

    async def _post(self, mailing_list: MailingList, item: InboxItem) -> None:
        try:
            await self._posting.process(mailing_list, item)
        except posting.Drop as drop:
            await self._drop(item, drop.reason)
        except posting.Hold as hold:
            await self._hold(mailing_list, item, hold.reason, hold.header)

    async def _expire(self) -> None:
        """Hourly: drop confirmations nobody used and held posts no owner decided on within HELD_SECONDS."""
        now = time.time()
        if now - self._expired_at < EXPIRY_CHECK_SECONDS:
            return
        self._expired_at = now
        confirmations, held = await self._database.write(
            lambda c: store.lists.expire(c, now - CONFIRMATION_SECONDS, now - HELD_SECONDS)
        )
        if confirmations or held:
            log.event("list_expired", confirmations=confirmations, held=held)

    # digests

    async def _digests(self) -> None:
        """Send each list's digest once a day (at once after `jitaku list digest`), if it has new posts."""
        now = time.time()
        if now - self._digests_checked < DIGEST_CHECK_SECONDS:
            return
        self._digests_checked = now
        for mailing_list in await self._database.read(lambda c: store.lists.digests_due(c, now - DIGEST_SECONDS)):
            await self._digest(mailing_list)

    async def _digest(self, mailing_list: MailingList) -> None:
        members = await self._database.read(lambda c: store.lists.members(c, mailing_list.id))
        readers = [m.address for m in members if m.enabled and m.digest]
        posts = await self._database.read(
            lambda c: store.lists.posts_after(c, mailing_list.id, mailing_list.digest_last_number)
        )
        previous = mailing_list.digest_last_number
        last = posts[-1][0].number if posts else previous
        copies = None
        if readers and posts:
            mailboxes = await self._policy.local_mailboxes(readers)
            message = digest.compose_digest(mailing_list, posts, self._web_url)
            copies = await asyncio.to_thread(
                posting.personalise, self._signer, self._web_url, mailing_list, message, readers, mailboxes
            )

        def commit(connection: Connection) -> None:
            if store.lists.digest_sent(connection, mailing_list.id, previous, last, time.time()) and copies is not None:
                delivery.commit(connection, copies)

        await self._database.write(commit)
        log.event("list_digest", list=mailing_list.address, posts=f"{previous + 1}-{last}", readers=len(readers))
        if copies is not None and copies.queued:
            self._wake_queue()

    async def _hold(self, mailing_list: MailingList, item: InboxItem, reason: str, message: Message) -> None:
        held_id = await self._database.read(store.lists.next_held_id)
        author = headers.decoded(message["From"])
        subject = headers.decoded(message["Subject"])
        text = (
            f"A post to {mailing_list.address} is held for your approval.\n\n"
            f"  From:    {author}\n  Subject: {subject}\n  Reason:  {reason}\n\n"
            f"  jitaku list approve {mailing_list.address} {held_id}\n"
            f"  jitaku list reject {mailing_list.address} {held_id} --reason '...'\n"
        )

        def hold(connection: Connection) -> None:
            store.lists.hold(connection, held_id, mailing_list.id, item.sender, author, subject, reason, item.body)
            store.lists.remove_inbox(connection, item.id)

        await self._send(
            mailing_list,
            "owner",
            owners_of(mailing_list),
            f"{mailing_list.address}: post {held_id} held for approval",
            text,
            also=hold,
            attachment=item.body,
        )
        log.event("list_held", list=mailing_list.address, held=held_id, sender=f"<{item.sender}>", reason=reason)

    async def _rejected(self, mailing_list: MailingList, item: InboxItem) -> None:
        forget = _forget(item)
        message = headers.parse(item.body)
        subject = headers.decoded(message["Subject"])
        if not item.sender or bounces.is_auto_reply(message):
            await self._database.write(forget)
            return
        text = f"Your post to {mailing_list.address} ({subject}) was not accepted by the list's moderator."
        if item.note:
            text += f"\n\nReason: {item.note}"
        subject = f"Your post to {mailing_list.address} was rejected"
        await self._send(mailing_list, "owner", [item.sender], subject, text, forget)

    # -request: commands and confirmations

    async def _request(self, mailing_list: MailingList, item: InboxItem) -> None:
        forget = _forget(item)
        if not item.sender or bounces.is_auto_reply(headers.parse(item.body)):
            await self._database.write(forget)
            return
        # answering would mail someone who never asked
        if authcheck.forged(headers.split_fields(item.body)[0], self._hostname):
            await self._drop(item, "request from a sender that fails SPF or DMARC: no reply")
            return
        requester = (headers.from_addresses(item.body) or [item.sender.lower()])[0]
        changes: list[Callable[[Connection], None]] = [forget]
        replies: list[str] = []
        verbs: list[str] = []
        subject = f"Re: your request to {mailing_list.role_address('request')}"
        attachment: bytes | None = None
        members = await self._database.read(lambda c: store.lists.members(c, mailing_list.id))
        is_member = any(m.address == requester for m in members)
        for command in commands.parse(item.body) or [commands.Command("help", None)]:
            verbs.append(command.verb)
            if command.verb in ("subscribe", "unsubscribe"):
                if (command.verb == "subscribe") == is_member:
                    replies.append(f"{command.verb}: {requester} is {'already' if is_member else 'not'} a member.")
                    continue
                if await self._database.read(
                    partial(
                        store.lists.pending_confirmation,
                        list_id=mailing_list.id,
                        address=requester,
                        action=command.verb,
                    )
                ):
                    continue  # asked within the hour already: no second mail, or a stranger could flood them
                token = secrets.token_hex(16)
                changes.append(self._confirmation(token, mailing_list.id, requester, command.verb))
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
                body = await self._database.read(partial(store.lists.post_body, list_id=mailing_list.id, number=number))
                if body is None or not is_member:
                    replies.append(f"get {number}: {'no such post' if is_member else 'members only'}.")
                else:
                    attachment = body
                    replies.append(f"get {number}: attached.")
            else:
                replies.append(
                    notices.HELP.format(list=mailing_list.address, request=mailing_list.role_address("request"))
                )

        def apply(connection: Connection) -> None:
            for change in changes:
                change(connection)

        if not replies:
            await self._database.write(apply)
            return
        await self._send(mailing_list, "request", [requester], subject, "\n\n".join(replies) + "\n", apply, attachment)
        log.event(
            "list_request",
            list=mailing_list.address,
            requester=requester,
            commands=",".join(verbs),
        )

    @staticmethod
    def _confirmation(token: str, list_id: int, address: str, action: str) -> Callable[[Connection], None]:
        return lambda connection: store.lists.add_confirmation(connection, token, list_id, address, action)

    async def _confirm(self, mailing_list: MailingList, token: str, changes: list[Callable[[Connection], None]]) -> str:
        found = await self._database.read(lambda c: store.lists.find_confirmation(c, token))
        if found is None or found[0] != mailing_list.id:
            return "confirm: unknown or used token."
        _list_id, address, action = found

        def apply(connection: Connection) -> None:
            confirmed = store.lists.take_confirmation(connection, token, CONFIRMATION_SECONDS)
            if confirmed is not None:
                apply_confirmed(connection, mailing_list.id, address, action)

        changes.append(apply)
        return f"confirm: {address} is {'subscribed to' if action == 'subscribe' else 'unsubscribed from'} the list."

    # -owner and -bounces

    async def _to_owners(self, mailing_list: MailingList, item: InboxItem) -> None:
        forget = _forget(item)
        decisions = await self._decisions(owners_of(mailing_list))
        if not decisions:
            await self._database.write(forget)
            return
        await self._pipeline.accept(Arrival(item.sender, decisions, item.body, session=None), also=forget)

    async def _bounce(self, mailing_list: MailingList, item: InboxItem) -> None:
        if item.sender:  # a bounce comes from the null sender; anything else here is not one
            await self._drop(item, "mail to the bounce address with a sender: not a bounce")
            return
        members = {m.address: m for m in await self._database.read(lambda c: store.lists.members(c, mailing_list.id))}
        address = verp.parse_bounce_address(item.recipient)
        member = verp.signed_member(address, mailing_list.key, members) if address else None
        failed = await asyncio.to_thread(bounces.failures, item.body)  # 0.2 s of parsing for a bounce of 20 MB
        if member is None:
            # Anyone can send a DSN naming any member to -bounces@ or to an unsigned or guessed VERP
            # address: it counts for nobody. Copies we sent carry signed addresses (verp.py).
            log.event(
                "list_bounce_unverified",
                list=mailing_list.address,
                to=item.recipient,
                names=",".join(sorted(failed.permanent)) or None,
            )
            await self._database.write(_forget(item))
            return
        if member not in members or not members[member].enabled:
            await self._drop(item, f"a bounce for {member}, who is not an enabled member")
            return
        if member in failed.temporary and member not in failed.permanent:
            await self._drop(item, f"a delay for {member}, not a failure")
            return
        if member in failed.whole_session:
            await self._refused(mailing_list, item, member)
            return
        now = time.time()
        found = members[member]
        threshold = mailing_list.bounce_threshold
        score, counted = scores.after_bounce(found.bounce_score, found.bounce_at, now)
        values: dict[str, object] = {"bounce_score": score, "bounce_at": now} if counted else {}
        if score >= threshold:
            values.update(enabled=False, disabled_reason=f"bounce score {score:.3g} reached {threshold:g}")

        def record(connection: Connection) -> None:
            store.lists.remove_inbox(connection, item.id)
            if values:
                store.lists.set_member(connection, mailing_list.id, member, **values)

        log.event(
            "list_bounce",
            list=mailing_list.address,
            member=member,
            score=f"{score:.3g}",
            counted="yes" if counted else "no (one a day)",
        )
        if score < threshold:
            await self._database.write(record)
            return
        await self._send(
            mailing_list,
            "owner",
            owners_of(mailing_list),
            f"{mailing_list.address}: delivery disabled for {member}",
            f"Delivery to {member} is now disabled: its bounce score {score:.3g} reached {threshold:g} (a bounce"
            f" counts once a day; a delivery halves the score). `jitaku list add {mailing_list.address} {member}`"
            " enables it again.\n",
            record,
            attachment=item.body,
        )
        log.event("list_member_disabled", list=mailing_list.address, members=member)

    async def _refused(self, mailing_list: MailingList, item: InboxItem, member: str) -> None:
        """A bounce for MEMBER that our queue says was a refusal of the whole session: their domain's
        servers refused our mail (a blocklist, a rate limit, our reputation), not them. It counts once
        for the domain, however many members there got one; the owners hear of it when the domain's
        score reaches the threshold, and the members stay enabled."""
        domain = member.rpartition("@")[2]
        now = time.time()
        found = await self._database.read(lambda c: store.lists.refusal(c, mailing_list.id, domain))
        previous, since = (found.score, found.refused_at) if found else (0.0, None)
        before = scores.decayed(previous, since, now)
        score, counted = scores.after_bounce(previous, since, now)
        threshold = mailing_list.bounce_threshold

        def record(connection: Connection) -> None:
            store.lists.remove_inbox(connection, item.id)
            if counted:
                store.lists.set_refusal(connection, mailing_list.id, domain, score, now)

        log.event(
            "list_refused",
            list=mailing_list.address,
            domain=domain,
            member=member,
            score=f"{score:.3g}",
            counted="yes" if counted else "no (one a day)",
        )
        if not (counted and before < threshold <= score):
            await self._database.write(record)
            return
        await self._send(
            mailing_list,
            "owner",
            owners_of(mailing_list),
            f"{mailing_list.address}: {domain} refuses the list's mail",
            f"The servers of {domain} keep refusing this list's mail as a whole (score {score:.3g}, threshold"
            f" {threshold:g}; one refusal a day counts, a delivery there halves it). They refuse our server, not"
            f" one member, so the members at {domain} stay enabled. The bounce attached is the latest: look its"
            f" words up on {domain}'s postmaster pages (a blocklist, a rate limit, our address's reputation)."
            f" `jitaku list show {mailing_list.address}` lists the domains that refuse.\n",
            record,
            attachment=item.body,
        )
        log.event("list_domain_refusing", list=mailing_list.address, domain=domain)

    # helpers

    async def _decisions(self, addresses: list[str]) -> tuple[Accepted, ...]:
        """Where the list's own mail goes; never back into a list, which could loop for ever."""
        decided = [await self._policy.recipient(address, authenticated=True) for address in addresses]
        return tuple(d for d in decided if isinstance(d, Accepted) and d.list_role is None)

    async def _send(
        self,
        mailing_list: MailingList,
        role: Role,
        to: list[str],
        subject: str,
        text: str,
        also: Callable[[Connection], None],
        attachment: bytes | None = None,
    ) -> None:
        """Mail TO from the list's ROLE address (-owner or -request), committed with ALSO."""
        decisions = await self._decisions(to)
        if not decisions:
            await self._database.write(also)
            return
        data = notices.message(mailing_list.role_address(role), to, subject, text, attachment)
        arrival = Arrival(mailing_list.role_address("bounces"), decisions, data, session=None)
        await self._pipeline.accept(arrival, also=also)

    async def _drop(self, item: InboxItem, reason: str) -> None:
        await self._database.write(_forget(item))
        log.event("list_dropped", item=item.id, sender=f"<{item.sender}>", reason=reason)

    async def _park(self, item: InboxItem, reason: str) -> None:
        held_id = await self._database.read(store.lists.next_held_id)
        message = headers.parse(item.body)
        author, subject = headers.decoded(message["From"]), headers.decoded(message["Subject"])

        def park(connection: Connection) -> None:
            store.lists.hold(connection, held_id, item.list_id, item.sender, author, subject, reason, item.body)
            store.lists.remove_inbox(connection, item.id)

        await self._database.write(park)


def _forget(item: InboxItem) -> Callable[[Connection], None]:
    """The change that takes ITEM out of the inbox, to commit with whatever handled it."""
    return partial(store.lists.remove_inbox, item_id=item.id)


def apply_confirmed(connection: Connection, list_id: int, address: str, action: str) -> None:
    if action == "subscribe":
        store.lists.add_members(connection, list_id, [address])
    else:
        store.lists.remove_members(connection, list_id, [address])


def on_personal_delivered(connection: Connection, delivered: list[tuple[str, str]]) -> None:
    """Halve a member's bounce score, and their domain's, once a copy reaches them (the queue calls
    this as it records)."""
    by_list: dict[str, list[str]] = {}
    for sender, recipient in delivered:
        parsed = verp.parse_bounce_address(sender)
        if parsed is not None:
            by_list.setdefault(parsed.list_address, []).append(recipient)
    for list_address, recipients in by_list.items():
        store.lists.halve_bounces(connection, list_address, recipients, scores.FORGOTTEN)
