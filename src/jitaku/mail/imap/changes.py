"""The commands that change messages: APPEND (RFC 3501 §6.3.11, APPENDLIMIT RFC 7889), STORE (with
CONDSTORE's UNCHANGEDSINCE, RFC 7162), COPY and MOVE (RFC 6851) with UIDPLUS's COPYUID (RFC 4315), and
EXPUNGE and UID EXPUNGE."""

from __future__ import annotations

import asyncio

from sqlalchemy.engine import Connection

from jitaku.mail.imap import binary
from jitaku.mail.imap.backend import Backend
from jitaku.mail.imap.parser import Append, Copy, Store
from jitaku.mail.imap.session import Session, forget
from jitaku.mail.imap.view import View, sequence_set
from jitaku.mail.lineserver import LoggedIn
from jitaku.store import mailstore


async def append(backend: Backend, user: LoggedIn, command: Append) -> str:
    if not command.message:
        return "NO an empty message cannot be appended"
    if len(command.message) > backend.max_message_size:  # RFC 7889 (APPENDLIMIT)
        return f"NO [TOOBIG] a message may hold at most {backend.max_message_size} bytes"
    address = user.address
    # the limit is on the message as sent, the one size a client can know; its binary parts grow by a third.
    # Encoding parses the whole message (up to the limit's megabytes): a thread's work, not the event loop's
    message = await asyncio.to_thread(binary.encoded, command.message) if command.binary else command.message

    def change(connection: Connection) -> tuple[int, int]:
        uid = mailstore.append(connection, address, message, command.mailbox, command.flags, command.internal_date)
        return mailstore.uidvalidity(connection, address, command.mailbox), uid

    validity, uid = await backend.write(change)
    return f"OK [APPENDUID {validity} {uid}] APPEND completed"


async def store(backend: Backend, user: LoggedIn, session: Session, view: View, command: Store) -> str:
    if view.read_only:
        return "NO [READ-ONLY] the mailbox is selected read-only"
    address = user.address
    uids = view.resolve(command.sequence, command.uid)
    result = await backend.write(
        lambda c: mailstore.store_flags(
            c, address, view.name, uids, command.flags, command.mode, command.unchanged_since
        )
    )
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
    if result.failed:
        return f"OK [MODIFIED {sequence_set(result.failed)}] some messages were changed by another session"
    return "OK STORE completed"


async def copy(backend: Backend, user: LoggedIn, session: Session, view: View, command: Copy) -> str:
    address = user.address
    uids = view.resolve(command.sequence, command.uid)
    if not uids:
        return f"OK {'MOVE' if command.move else 'COPY'} completed (nothing to do)"
    operation = mailstore.move if command.move else mailstore.copy

    def change(connection: Connection) -> tuple[int, list[tuple[int, int]]]:
        pairs = operation(connection, address, view.name, uids, command.mailbox)
        return mailstore.uidvalidity(connection, address, command.mailbox), pairs

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
    gone = await backend.write(lambda c: mailstore.expunge(c, address, view.name, uids))
    forget(session, view, gone)
    return "OK EXPUNGE completed"
