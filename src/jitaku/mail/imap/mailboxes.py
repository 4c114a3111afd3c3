"""The commands on a user's mailboxes (RFC 3501 §6.3): LIST and LSUB, STATUS, SELECT and EXAMINE, CLOSE and
UNSELECT, CREATE, DELETE, RENAME, SUBSCRIBE and UNSUBSCRIBE."""

from __future__ import annotations

import bisect
import functools
from collections.abc import Callable

from jitaku.mail.imap import listing
from jitaku.mail.imap.backend import Backend, Refused
from jitaku.mail.imap.budget import Budget, OutOfTime
from jitaku.mail.imap.parser import Create, ListMailboxes, MailboxCommand, Rename, Select, Status
from jitaku.mail.imap.session import Session, claim_recent
from jitaku.mail.imap.view import View
from jitaku.mail.lineserver import LoggedIn
from jitaku.store import mailstore


async def list_mailboxes(backend: Backend, user: LoggedIn, session: Session, command: ListMailboxes) -> str:
    """LIST and LSUB. With STATUS asked for, every mailbox's messages are counted: in a worker thread. Without,
    the names (bounded by [imap] max_mailboxes) are read at once, and when few are listed here too: a hop to a
    thread, with the event loop busy, cost more than listing them."""
    address = user.address
    budget = Budget(backend.settings.max_command_time)
    work: Callable[[], list[str]]
    few = False
    if any(option.startswith("STATUS ") for option in command.return_options):

        def work() -> list[str]:
            boxes, subscribed = backend.database.query_now(
                lambda s: (mailstore.mailboxes(s, address), mailstore.subscriptions(s, address))
            )
            return listing.responses(command, boxes, set(subscribed), budget)

    else:
        # two statements, each its own snapshot: nothing ties a mailbox's name to whether it is subscribed
        folders, subscribed = await backend.database.query(
            lambda s: (mailstore.folders(s, address), mailstore.subscriptions(s, address)), snapshot=False
        )
        work = functools.partial(listing.responses, command, folders, set(subscribed), budget)
        few = len(folders) + len(subscribed) <= listing.NAMES_PER_CHECK
    try:
        lines = work() if few else await backend.workers.run(budget, work)
    except OutOfTime:
        raise Refused("[LIMIT] listing took too long: ask for fewer mailboxes") from None
    session.lines.extend(line.encode() for line in lines)
    return f"OK {'LSUB' if command.lsub else 'LIST'} completed"


async def status(backend: Backend, user: LoggedIn, session: Session, command: Status) -> str:
    address = user.address
    found = await backend.database.query(
        lambda s: mailstore.status(s, address, command.mailbox, command.items), snapshot=False
    )
    if found is None:
        raise Refused(f"[NONEXISTENT] no mailbox {command.mailbox!r}")
    session.say(listing.status_line(found[0], command.items, found[1]))
    return "OK STATUS completed"


async def select(backend: Backend, user: LoggedIn, session: Session, command: Select) -> str:
    if session.view is not None:
        session.say("* OK [CLOSED] the mailbox selected before is closed")  # RFC 7162 §3.2.11, RFC 9051
    session.view = None
    address, name = user.address, command.mailbox
    before = backend.selections.kept(address, name)
    selected = backend.selections.keep(
        address, name, await backend.read(lambda c: mailstore.select(c, address, name, before))
    )
    recent_from = selected.recent_from
    # EXAMINE leaves \Recent to the next SELECT; with nothing new to claim, SELECT writes nothing
    if not command.read_only and recent_from < selected.uidnext:
        recent_from = await claim_recent(backend.database, address, command.mailbox, selected.uidnext)
    session.condstore = session.condstore or command.condstore
    view = View(
        name=command.mailbox,
        read_only=command.read_only,
        uidvalidity=selected.uidvalidity,
        uids=selected.uids,
        flags=selected.flags,
        modseqs=selected.modseqs,
        sizes=selected.sizes,
        recent=set(selected.uids[bisect.bisect_left(selected.uids, recent_from) :]),  # all below UIDNEXT
        state=(selected.uidnext, selected.highestmodseq),
        keywords=selected.keywords,
    )
    session.lines.extend(line.encode() for line in view.flag_lines())
    session.say(f"* {len(view.uids)} EXISTS")
    session.say(f"* {len(view.recent)} RECENT")
    unseen = next((number for number, uid in enumerate(view.uids, 1) if "\\Seen" not in view.flags[uid]), None)
    if unseen is not None:
        session.say(f"* OK [UNSEEN {unseen}] first unseen")
    session.say(f"* OK [UIDVALIDITY {view.uidvalidity}] UIDs valid")
    session.say(f"* OK [UIDNEXT {selected.uidnext}] predicted next UID")
    session.say(f"* OK [HIGHESTMODSEQ {selected.highestmodseq}] highest")
    session.view = view
    session.up_to_date(view, view.state)
    return f"OK [{'READ-ONLY' if view.read_only else 'READ-WRITE'}] selected"


async def close(backend: Backend, user: LoggedIn, session: Session, view: View, name: str) -> str:
    """CLOSE, which expunges a mailbox selected read-write, and UNSELECT (RFC 3691), which does not."""
    if name == "CLOSE" and not view.read_only:
        await backend.write(lambda tx: mailstore.expunge(tx, user.address, view.name), durable=False)
    session.view = None
    return f"OK {name} completed"


async def manage(backend: Backend, user: LoggedIn, session: Session, command: Create | MailboxCommand | Rename) -> str:
    """CREATE, RENAME, DELETE, SUBSCRIBE and UNSUBSCRIBE: a change to the user's mailboxes or subscriptions."""
    address = user.address
    if isinstance(command, Create):
        asked = command.special_use[0] if command.special_use else None
        use = mailstore.SPECIAL_USES.get(asked) if asked is not None else None
        if asked is not None and use is None:
            return f"NO [USEATTR] {asked} is not a special use"
        limit = backend.settings.max_mailboxes
        await backend.write(lambda tx: mailstore.create_mailbox(tx, address, command.mailbox, use, limit))
        return "OK CREATE completed"
    if isinstance(command, Rename):
        limit = backend.settings.max_mailboxes
        await backend.write(
            lambda tx: mailstore.rename_mailbox(tx, address, command.old, command.new, limit), "NONEXISTENT"
        )
        return "OK RENAME completed"
    if command.name == "DELETE":
        if session.view is not None and session.view.name == command.mailbox:
            session.view = None
        await backend.write(lambda tx: mailstore.delete_mailbox(tx, address, command.mailbox), "NONEXISTENT")
    elif command.name == "SUBSCRIBE":
        limit = backend.settings.max_mailboxes  # subscriptions outlive their mailboxes: bounded apart, alike
        await backend.write(lambda tx: mailstore.subscribe(tx, address, command.mailbox, limit), "NONEXISTENT")
    else:
        await backend.write(lambda tx: mailstore.unsubscribe(tx, address, command.mailbox), "NONEXISTENT")
    return f"OK {command.name} completed"
