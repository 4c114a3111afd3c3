"""The commands that change messages: APPEND (RFC 3501 §6.3.11, APPENDLIMIT RFC 7889), STORE (with
CONDSTORE's UNCHANGEDSINCE, RFC 7162), COPY and MOVE (RFC 6851) with UIDPLUS's COPYUID (RFC 4315), and
EXPUNGE and UID EXPUNGE.

A session's own change to its selected mailbox reaches its view at once. When the mailbox was just as the view
last saw it, the view is then up to date with the mailbox's state after the change, and the look at the
mailbox after the command (session.refresh) finds nothing to read back: under ten clients, reading their own
changes back cost a snapshot read for every STORE, APPEND and EXPUNGE (issue 20).
"""

from __future__ import annotations

import asyncio

from jitaku.mail.imap import binary
from jitaku.mail.imap.backend import Backend
from jitaku.mail.imap.parser import Append, Copy, Store
from jitaku.mail.imap.session import Session, caught_up, forget, tell_new
from jitaku.mail.imap.view import View, sequence_set
from jitaku.mail.lineserver import LoggedIn
from jitaku.store import mailstore, training
from jitaku.store.transaction import Tx


async def append(backend: Backend, user: LoggedIn, session: Session, command: Append) -> str:
    if not command.message:
        return "NO an empty message cannot be appended"
    if len(command.message) > backend.max_message_size:  # RFC 7889 (APPENDLIMIT)
        return f"NO [TOOBIG] a message may hold at most {backend.max_message_size} bytes"
    address = user.address
    # the limit is on the message as sent, the one size a client can know; its binary parts grow by a third.
    # Encoding parses the whole message (up to the limit's megabytes): a thread's work, not the event loop's
    message = await asyncio.to_thread(binary.encoded, command.message) if command.binary else command.message
    view = session.view
    if view is not None and mailstore.canonical(view.name) != mailstore.canonical(command.mailbox):
        view = None  # the selected mailbox is not the one appended to

    def change(tx: Tx) -> tuple[int, int, int]:
        uid = mailstore.append(tx, address, message, command.mailbox, command.flags, command.internal_date)
        if backend.training:
            training.record_append(tx, address, command.mailbox, uid, command.flags, message)
        # RFC 3501 §6.3.11: a session told at once of a message it appended to its mailbox is the first told,
        # so the message is \Recent to it; an EXAMINE claims none (before 0) and, as refresh does, shows as
        # \Recent what no session has claimed
        recent_from = uid + 1
        if view is not None:
            recent_from = mailstore.claim_recent(tx, address, view.name, 0 if view.read_only else uid + 1)
        return mailstore.uidvalidity(tx, address, command.mailbox), uid, recent_from

    if view is None:
        validity, uid, _recent_from = await backend.write(change)
    else:
        (validity, uid, recent_from), after = await backend.write(caught_up(address, view, change))
        if after is not None and session.view is view:
            flags = mailstore.flag_set(command.flags)
            session.list_keywords([flags])
            tell_new(session, view, [mailstore.Listed(uid, flags, after[1], len(message))], recent_from, after[0])
            session.up_to_date(view, after)
    return f"OK [APPENDUID {validity} {uid}] APPEND completed"


async def store(backend: Backend, user: LoggedIn, session: Session, view: View, command: Store) -> str:
    if view.read_only:
        return "NO [READ-ONLY] the mailbox is selected read-only"
    address = user.address
    uids = view.resolve(command.sequence, command.uid)
    teaches = backend.training and training.teaching(command.flags, command.mode)
    in_junk = teaches and await backend.database.query(
        lambda s: training.special_use(s, address, view.name) == training.JUNK, snapshot=False
    )
    # Flags need not outlive a crash, unless they teach the spam engines (recorded in the same transaction). What
    # they teach is known once the transaction has read the flags each message had; the session's view of them
    # says it beforehand, right but for another session's change in between, which costs an fsync too many or
    # leaves the item to reach the disk with the next durable commit
    durable = teaches and training.sure(command.flags, command.mode, (view.flags[uid] for uid in uids), in_junk)

    def change(tx: Tx) -> mailstore.StoreResult:
        result = mailstore.store_flags(
            tx, address, view.name, uids, command.flags, command.mode, command.unchanged_since
        )
        if teaches:
            training.record_flags(tx, address, view.name, command.flags, command.mode, result, in_junk)
        return result

    result, after = await backend.write(caught_up(address, view, change), durable=durable)
    session.list_keywords(state.flags for state in result.messages)
    for state in result.messages:
        view.flags[state.uid], view.modseqs[state.uid] = state.flags, state.modseq
        if command.silent and not (session.condstore and state.uid in result.changed):
            continue
        parts = [f"FLAGS ({' '.join(sorted(view.flags_of(state.uid)))})"]
        if command.uid:
            parts.append(f"UID {state.uid}")
        if session.condstore:
            parts.append(f"MODSEQ ({state.modseq})")
        session.say(f"* {view.number(state.uid)} FETCH ({' '.join(parts)})")
    if after is not None:
        session.up_to_date(view, after)
    if result.failed:
        return f"OK [MODIFIED {sequence_set(result.failed)}] some messages were changed by another session"
    return "OK STORE completed"


async def copy(backend: Backend, user: LoggedIn, session: Session, view: View, command: Copy) -> str:
    address = user.address
    uids = view.resolve(command.sequence, command.uid)
    if not uids:
        return f"OK {'MOVE' if command.move else 'COPY'} completed (nothing to do)"
    operation = mailstore.move if command.move else mailstore.copy

    def change(tx: Tx) -> tuple[int, list[tuple[int, int]]]:
        pairs = operation(tx, address, view.name, uids, command.mailbox)
        if backend.training:
            training.record_copy(tx, address, view.name, command.mailbox, [new for _old, new in pairs])
        return mailstore.uidvalidity(tx, address, command.mailbox), pairs

    validity, pairs = await backend.write(change)
    olds, news = sequence_set([old for old, _new in pairs]), sequence_set([new for _old, new in pairs])
    code = f"COPYUID {validity} {olds} {news}"
    if not command.move:
        return f"OK [{code}] COPY completed"
    session.say(f"* OK [{code}] moved")
    forget(session, view, [old for old, _new in pairs])
    return "OK MOVE completed"


async def expunge(backend: Backend, user: LoggedIn, session: Session, view: View, uids: list[int] | None) -> str:
    if view.read_only:
        return "NO [READ-ONLY] the mailbox is selected read-only"
    address = user.address
    gone, after = await backend.write(
        caught_up(address, view, lambda tx: mailstore.expunge(tx, address, view.name, uids)), durable=False
    )
    forget(session, view, gone)
    if after is not None:
        session.up_to_date(view, after)
    return "OK EXPUNGE completed"
