"""The list runner: works through mail the MX committed for lists, one item at a time, after the 250.

It takes the next item from the lists' inbox, leased to it (store/lists.py's take_inbox), and hands it by
role to posting.py (a post, or a held one approved), requests.py (-request), bounces.py (-bounces) or the
owners (-owner); tries a failed item again later, and in the end holds a post for the owners or drops
anything else. Between items it sends the digests that are due and expires old confirmations and held posts.

Each item ends in one transaction that also removes it from the inbox: a post
takes its number, goes to the archive and into the queue (queue entries by
destination domain, one copy per member) together, so a crash before the
commit leaves the item to be done again and a crash after it leaves nothing
to redo: no gap, no repeat.

Several daemons may share a PostgreSQL database, and during a switchover both boxes
of a pair may run a runner: an item leased to one is not taken by another until LEASE_SECONDS have passed since
the holder last renewed the lease (it does while it works on the item; a runner killed mid-item leaves it to the
others that long, or until it starts again: each lets go of the leases its node held first), and the runner
whose lease ran out meanwhile finds its commit refused (LeaseLost), leaves the item to the one that has it, and
counts an attempt: an item no runner finishes within its lease is held or dropped after MAX_ATTEMPTS.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from email.message import Message
from functools import partial
from pathlib import Path

from jitaku import log, store
from jitaku.lists import backfill, bounces, digest, posting, requests
from jitaku.lists.outbox import Outbox, forget, owners_of
from jitaku.mail import headers
from jitaku.mail.dkim import Signer
from jitaku.mail.pipeline import Pipeline
from jitaku.mail.policy import Policy
from jitaku.store import Database, Tx
from jitaku.store.lists import InboxItem, MailingList

POLL_SECONDS = 1.0
MAX_ATTEMPTS = 5
RETRY_SECONDS = 10.0  # then 20, 40, 80: about five minutes in all
HELD_SECONDS = 30 * 86400
LEASE_SECONDS = 120.0  # an item's handling takes well under a second; a post to a large list, a few
RENEWALS = 4  # times the lease is renewed within LEASE_SECONDS while its item is worked on
EXPIRY_CHECK_SECONDS = 3600.0
DIGEST_CHECK_SECONDS = 5.0


def node_id(data_dir: Path) -> str:
    """Whose leases a runner starting lets go of: this box's and data directory's, the same after a restart, and
    never another daemon's sharing the database (which may be working on its items)."""
    return hashlib.sha256(f"{socket.gethostname()}\0{data_dir.resolve()}".encode()).hexdigest()[:32]


class ListRunner:
    """One per daemon, in the main process."""

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
        node: str | None = None,
    ) -> None:
        """WAKEUP is set by whoever commits mail for a list; WAKE_QUEUE once copies are queued. NODE (node_id):
        whose leases to let go of at start; None, a runner of its own whose leases none before it held."""
        self._database = database
        self._node = node or secrets.token_hex(16)
        self._outbox = Outbox(database, policy, pipeline)
        self._posting = posting.Posting(database, signer, policy, hostname, web_url, wake_queue)
        self.requests = requests.Requests(database, self._outbox, hostname, web_url)
        self._bounces = bounces.Bounces(database, self._outbox)
        self._digests = digest.Digests(database, signer, policy, web_url, wake_queue)
        self._wakeup = wakeup
        self._digests_checked = 0.0
        self._expired_at = 0.0

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        """The inbox's items as they come, while the older posts are placed in the archive beside them."""
        backfilling = asyncio.create_task(self._backfill())
        try:
            await self._work()
        finally:
            backfilling.cancel()

    async def _work(self) -> None:
        try:
            released = await self._database.transact(lambda tx: store.lists.release_leases(tx, self._node))
        except Exception as error:  # the store failing at start: the loop below says so as it goes on
            log.event("list_engine_error", error=repr(error))
        else:
            if released:
                log.event("list_leases_released", items=released)
        while True:
            self._wakeup.clear()
            try:
                # a read first, so that an idle runner writes nothing; another runner may take the item before this
                # one does, and the next turn of the loop no longer sees it
                if await self._database.query(lambda s: store.lists.next_inbox(s, time.time()), snapshot=False):
                    if await self._take():
                        continue
                    # another runner was taking what the read saw: it is theirs, and this one waits for more
                else:
                    await self._send_digests()
                    await self._expire()
            except Exception as error:  # the store or a digest failing must not stop the daemon's mail
                log.event("list_engine_error", error=repr(error))  # the event keeps its name: log watchers grep for it
            with contextlib.suppress(TimeoutError):  # asyncio.timeout: 3.11's wait_for can lose a cancel
                async with asyncio.timeout(POLL_SECONDS):
                    await self._wakeup.wait()

    async def _take(self) -> bool:
        """Take the next item and handle it; whether there was one. The take writes a lease alone, which a power
        cut may undo (durable=False): the item is then taken again."""
        node = self._node
        taken = await self._database.transact(
            lambda tx: store.lists.take_inbox(tx, time.time(), LEASE_SECONDS, node), durable=False
        )
        if taken is None:
            return False
        item = await self._database.query(lambda s: store.lists.inbox_item(s, taken.id, taken.lease), snapshot=False)
        if item is not None:
            async with self._renewing(item):
                await self._handle_safely(item)
        return True

    @contextlib.asynccontextmanager
    async def _renewing(self, item: InboxItem) -> AsyncIterator[None]:
        """Renew ITEM's lease while it is worked on: a post to a large list may take longer than LEASE_SECONDS,
        and another runner taking it then would do it again, and lose it in turn, for ever."""

        async def renew() -> None:
            assert item.lease is not None
            lease = item.lease
            while True:
                await asyncio.sleep(LEASE_SECONDS / RENEWALS)
                try:
                    held = await self._database.transact(
                        lambda tx: store.lists.renew_lease(tx, item.id, lease, LEASE_SECONDS), durable=False
                    )
                except Exception as error:  # the store failing: the lease may run out, and the commit say so
                    log.event("list_engine_error", item=item.id, error=repr(error))
                    continue
                if not held:
                    return

        renewing = asyncio.create_task(renew())
        try:
            yield
        finally:
            renewing.cancel()
            # waited for, not awaited under suppress(CancelledError): a cancel of this runner that comes while
            # the renewal ends would be the error suppressed, and the runner, not ended, would run on with its
            # cancel pending, where 3.11's asyncio.timeout can no longer cancel it (its POLL_SECONDS wait for ever)
            await asyncio.wait([renewing])

    async def _handle_safely(self, item: InboxItem) -> None:
        """Handle ITEM; on failure try again later, and in the end hold a post for the owners rather than
        let one message stop the list (what else cannot be done is dropped, and logged)."""
        if item.attempts >= MAX_ATTEMPTS:  # its leases lost as often (LeaseLost): it ends as a failing item does
            held = item.role in ("post", "approved")
            log.event(
                "list_error",
                item=item.id,
                role=item.role,
                attempts=item.attempts,
                error="lease lost each time",
                action="held" if held else "dropped",
            )
            await self._give_up(item, "could not be processed: another runner took it each time")
            return
        try:
            await self._handle(item)
        except store.lists.LeaseLost:  # another runner had it: its commit counts, this one's was rolled back
            log.event("list_item_taken_elsewhere", item=item.id, role=item.role, attempts=item.attempts + 1)
            await self._database.transact(lambda tx: store.lists.inbox_lost(tx, item.id))
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
                await self._database.transact(lambda tx: store.lists.inbox_failed(tx, item.id, retry, item.lease))
            else:
                await self._give_up(item, f"could not be processed: {error!r}")

    async def _give_up(self, item: InboxItem, reason: str) -> None:
        """A post is held for the owners, with REASON; anything else is dropped."""
        if item.role in ("post", "approved"):
            await self._park(item, reason)
        else:
            await self._database.transact(forget(item))

    async def _handle(self, item: InboxItem) -> None:
        mailing_list = await self._database.query(lambda s: store.lists.list_by_id(s, item.list_id), snapshot=False)
        if item.role in ("post", "approved"):
            await self._post(mailing_list, item)
        elif item.role == "rejected":
            await self._rejected(mailing_list, item)
        elif item.role == "request":
            await self.requests.handle(mailing_list, item)
        elif item.role == "owner":
            await self._outbox.forward(item, owners_of(mailing_list))
        else:
            await self._bounces.handle(mailing_list, item)

    async def _post(self, mailing_list: MailingList, item: InboxItem) -> None:
        try:
            await self._posting.process(mailing_list, item)
        except posting.Drop as drop:
            await self._outbox.drop(item, drop.reason)
        except posting.Hold as hold:
            await self._hold(mailing_list, item, hold.reason, hold.header)

    async def _backfill(self) -> None:
        """The posts archived before the web archive kept their Message-ID given their page and their words in the
        search index: read and parsed in a worker thread, written backfill.BATCH to a short transaction, so that
        the writer takes mail in between. A list whose posts cannot be placed is logged and left; the runner's
        own work never waits for any of it."""
        try:
            mailing_lists = await self._database.query(store.lists.all_lists, snapshot=False)
        except Exception as error:  # the store failing at start: the runner's loop says so as it goes on
            log.event("list_engine_error", error=repr(error))
            return
        for mailing_list in mailing_lists:
            done = 0
            try:
                while placings := await asyncio.to_thread(backfill.prepare, self._database, mailing_list):
                    place = partial(backfill.place, list_id=mailing_list.id, placings=placings)
                    done += await self._database.transact(place)
            except Exception as error:  # an old post the archive cannot place must not stop the lists' mail
                log.event("list_engine_error", list=mailing_list.address, error=repr(error))
            if done:
                log.event("list_archive_backfilled", list=mailing_list.address, posts=done)

    async def _expire(self) -> None:
        """Hourly: drop confirmations nobody used and held posts no owner decided on within HELD_SECONDS."""
        now = time.time()
        if now - self._expired_at < EXPIRY_CHECK_SECONDS:
            return
        self._expired_at = now
        confirmations, held = await self._database.transact(
            lambda tx: store.lists.expire(tx, now - requests.CONFIRMATION_SECONDS, now - HELD_SECONDS)
        )
        if confirmations or held:
            log.event("list_expired", confirmations=confirmations, held=held)

    async def _send_digests(self) -> None:
        """Every DIGEST_CHECK_SECONDS, not daily: `jitaku list digest` marks a digest due in the database."""
        now = time.time()
        if now - self._digests_checked < DIGEST_CHECK_SECONDS:
            return
        self._digests_checked = now
        await self._digests.send_due(now)

    async def _hold(self, mailing_list: MailingList, item: InboxItem, reason: str, message: Message) -> None:
        held_id = await self._database.transact(store.lists.new_held_id)
        author = headers.decoded(message["From"])
        subject = headers.decoded(message["Subject"])
        text = (
            f"A post to {mailing_list.address} is held for your approval.\n\n"
            f"  From:    {author}\n  Subject: {subject}\n  Reason:  {reason}\n\n"
            f"  jitaku list approve {mailing_list.address} {held_id}\n"
            f"  jitaku list reject {mailing_list.address} {held_id} --reason '...'\n"
        )

        def hold(target: Tx) -> None:
            store.lists.remove_inbox(target, item.id, item.lease)
            store.lists.hold(target, held_id, mailing_list.id, item.sender, author, subject, reason, item.body)

        await self._outbox.send(
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
        message = headers.parse(item.body)
        subject = headers.decoded(message["Subject"])
        if not item.sender or bounces.is_auto_reply(message):
            await self._database.transact(forget(item))
            return
        text = f"Your post to {mailing_list.address} ({subject}) was not accepted by the list's moderator."
        if item.note:
            text += f"\n\nReason: {item.note}"
        subject = f"Your post to {mailing_list.address} was rejected"
        await self._outbox.send(mailing_list, "owner", [item.sender], subject, text, forget(item))

    async def _park(self, item: InboxItem, reason: str) -> None:
        held_id = await self._database.transact(store.lists.new_held_id)
        message = headers.parse(item.body)
        author, subject = headers.decoded(message["From"]), headers.decoded(message["Subject"])

        def park(tx: Tx) -> None:
            store.lists.remove_inbox(tx, item.id, item.lease)
            store.lists.hold(tx, held_id, item.list_id, item.sender, author, subject, reason, item.body)

        await self._database.transact(park)
