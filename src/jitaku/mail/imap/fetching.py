"""FETCH (RFC 3501 §6.4.5): the messages read from the store a batch at a time, their items written by
jitaku.mail.imap.fetch, and the \\Seen that reading a body sets."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable, Iterator

from jitaku.mail.imap import mime
from jitaku.mail.imap.backend import Backend, Refused
from jitaku.mail.imap.fetch import VIEW_ITEMS, Fetched, needs_body, sets_seen, view_item
from jitaku.mail.imap.parser import Fetch, FetchItem
from jitaku.mail.imap.session import Session, caught_up
from jitaku.mail.imap.view import View
from jitaku.mail.imap.wire import Wire
from jitaku.mail.lineserver import LoggedIn
from jitaku.store import mailstore
from jitaku.store.mailstore import NoSuchMailbox
from jitaku.store.statements import Statements

Reader = Callable[[Statements], list[mailstore.StoredMessage]]
BATCH_BYTES = 1024 * 1024  # message bytes read from the store at a time
BATCH_MESSAGES = 500  # messages read at a time when their bodies are not needed: mailstore's one statement
FLUSH_BYTES = 64 * 1024  # FETCH responses gathered before they go out in one write


async def fetch(backend: Backend, wire: Wire, user: LoggedIn, session: Session, view: View, command: Fetch) -> str:
    """FETCH and UID FETCH. Unlike other commands it writes to WIRE as it goes: a mailbox's worth of
    responses would not fit in memory."""
    address = user.address
    uids = view.resolve(command.sequence, command.uid)
    items = command.items
    if command.changed_since is not None:
        uids = [uid for uid in uids if view.modseqs.get(uid, 0) > command.changed_since]
        items = _with(items, "MODSEQ")
    if sets_seen(items) and not view.read_only:
        unseen = [uid for uid in uids if "\\Seen" not in view.flags.get(uid, frozenset())]
        if unseen:
            await _check_decodable(backend, address, view, unseen, items)
            stored, after = await backend.write(
                caught_up(
                    address, view, lambda tx: mailstore.store_flags(tx, address, view.name, unseen, ["\\Seen"], "add")
                ),
                durable=False,
            )
            session.list_keywords(state.flags for state in stored.messages)  # others' keywords came along
            for state in stored.messages:
                view.flags[state.uid], view.modseqs[state.uid] = state.flags, state.modseq
            if after is not None:
                session.up_to_date(view, after)
            items = _with(items, "FLAGS")  # the client hears of the \Seen it caused
    if session.condstore and any(item.name == "FLAGS" for item in items):
        items = _with(items, "MODSEQ")  # RFC 7162 §3.1.4
    if all(item.name in VIEW_ITEMS for item in items) and await _unmoved(backend, address, view):
        await _from_view(wire, session, view, uids, tuple(item.name for item in items))
        return "OK FETCH completed"
    pending = 0  # bytes of responses in session.lines
    told = 0  # messages answered: the others were expunged by another session, which the view does not know yet
    async for message in _messages(backend, address, view, uids, needs_body(items)):
        told += 1
        fetched = Fetched(
            message.uid,
            view.flags_of(message.uid),
            view.modseqs[message.uid],
            message.size,
            message.received_at,
            message.body,
        )
        response = [b"* %d FETCH (" % view.number(message.uid)]
        try:
            for index, item in enumerate(items):
                response.extend((b" ", *fetched.item(item)) if index else fetched.item(item))
        except mime.UnknownEncoding as error:
            raise Refused(f"[UNKNOWN-CTE] {error}") from None
        response.append(b")")
        size = sum(len(piece) for piece in response)
        if size <= FLUSH_BYTES:  # gathered, to go out with others in one write (mbsync fetches one at a time)
            session.say(b"".join(response))
            pending += size
        else:  # a large literal goes out in pieces as the client reads them, never copied whole
            await wire.send(*session.lines)
            session.lines.clear()
            pending = 0
            await wire.stream([*response, b"\r\n"])
        if pending >= FLUSH_BYTES:  # the client reads while we go on, and memory stays flat
            await wire.send(*session.lines)
            session.lines.clear()
            pending = 0
    if told < len(uids):  # RFC 2180 §4.1 lets the data of those go missing, and RFC 5530 says why
        return "OK [EXPUNGEISSUED] messages another session expunged could not be fetched"
    return "OK FETCH completed"


async def _check_decodable(
    backend: Backend, address: str, view: View, uids: list[int], items: tuple[FetchItem, ...]
) -> None:
    """A BINARY[part] that cannot be decoded is refused before the FETCH marks anything \\Seen."""
    parts = [item.section.part for item in items if item.name == "BINARY" and item.section is not None]
    if not parts:
        return
    async for message in _messages(backend, address, view, uids, bodies=True):
        tree = mime.parse(message.body)
        for part in parts:
            try:
                mime.decoded(tree, part)
            except mime.UnknownEncoding as error:
                raise Refused(f"[UNKNOWN-CTE] {error}") from None


async def _unmoved(backend: Backend, address: str, view: View) -> bool:
    """Whether the mailbox is as the view last saw it: then every message of the view is still there (an
    expunge moves the mailbox's state on), and what the view holds of them is what the store would say."""
    try:
        state = await backend.database.query(lambda s: mailstore.state(s, address, view.name), snapshot=False)
    except NoSuchMailbox:
        return False
    return state == view.state


async def _from_view(wire: Wire, session: Session, view: View, uids: list[int], names: tuple[str, ...]) -> None:
    """The messages UIDS as the view holds them: a client's look at the flags of its newest messages (every
    mail program's, after SELECT) reads one row of the store, not one per message. Each response is written
    straight from the view: a message read from the store, with its FETCH data item objects, cost several
    times as much, and a mail program asks this after every SELECT (issue 20)."""
    pending = 0
    # most messages share a few sets of flags, each written once
    flag_items = _FlagItems() if "FLAGS" in names else None
    for uid in uids:
        flags, modseq, size = view.flags_of(uid), view.modseqs[uid], view.sizes[uid]
        if flag_items is None:
            data = b" ".join([view_item(name, uid, flags, modseq, size) for name in names])
        else:
            data = b" ".join(
                [flag_items[flags] if name == "FLAGS" else view_item(name, uid, flags, modseq, size) for name in names]
            )
        response = b"* %d FETCH (%b)" % (view.number(uid), data)
        session.lines.append(response)
        pending += len(response)
        if pending >= FLUSH_BYTES:  # the client reads while we go on, and memory stays flat
            await wire.send(*session.lines)
            session.lines.clear()
            pending = 0


class _FlagItems(dict[frozenset[str], bytes]):
    """A set of flags to its FLAGS item."""

    def __missing__(self, flags: frozenset[str]) -> bytes:
        item = self[flags] = view_item("FLAGS", 0, flags, 0, 0)
        return item


async def _messages(
    backend: Backend, address: str, view: View, uids: list[int], bodies: bool
) -> AsyncIterator[mailstore.StoredMessage]:
    """The messages UIDS that the view still has, a batch at a time: never more than BATCH_BYTES of bodies
    at once (issue 15: 200 at once, of any size, held gigabytes), but for one larger message, which is
    read in a thread: reading tens of megabytes would hold the event loop. Other connections get their turn
    between batches and before each large message (parsing one for BODYSTRUCTURE takes a while): reads
    and writes that need not wait would never hand the loop over."""
    for number, (batch, size) in enumerate(batches(view, uids, bodies)):
        if number:
            await asyncio.sleep(0)
        read: Reader = functools.partial(
            mailstore.fetch_messages, address=address, name=view.name, uids=batch, bodies=bodies
        )
        if size > BATCH_BYTES:
            stored = await asyncio.to_thread(backend.database.query_now, read)
        else:  # a batch is one statement (BATCH_MESSAGES UIDs at most): a snapshot of its own
            stored = await backend.database.query(read, snapshot=False)
        for message in stored:
            if message.uid in view.flags:
                if len(message.body) > FLUSH_BYTES:
                    await asyncio.sleep(0)
                yield message


def batches(view: View, uids: list[int], bodies: bool, prefix: int | None = None) -> Iterator[tuple[list[int], int]]:
    """UIDS in runs to read together, each with the bytes of body it costs (at most PREFIX of each message):
    up to BATCH_BYTES, and BATCH_MESSAGES, but at least one message."""
    batch: list[int] = []
    size = 0
    for uid in uids:
        cost = view.sizes.get(uid, 0) if bodies else 0
        if prefix is not None:
            cost = min(cost, prefix)
        if batch and (size + cost > BATCH_BYTES or len(batch) >= BATCH_MESSAGES):
            yield batch, size
            batch, size = [], 0
        batch.append(uid)
        size += cost
    if batch:
        yield batch, size


def _with(items: tuple[FetchItem, ...], name: str) -> tuple[FetchItem, ...]:
    """ITEMS, with NAME added unless the client asked for it already."""
    return items if any(item.name == name for item in items) else (*items, FetchItem(name))
