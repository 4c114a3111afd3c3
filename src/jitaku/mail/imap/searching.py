"""SEARCH and UID SEARCH (RFC 3501 §6.4.4) over the selected mailbox, in worker threads within the command's
time budget, answered as SEARCH or, with RETURN options, ESEARCH (RFC 4731) and SEARCHRES (RFC 5182).
jitaku.mail.imap.search is the matcher."""

from __future__ import annotations

import functools
from dataclasses import replace

from jitaku.mail.imap.backend import Backend, Refused
from jitaku.mail.imap.budget import Budget, OutOfTime
from jitaku.mail.imap.fetching import Reader, batches
from jitaku.mail.imap.parser import Search
from jitaku.mail.imap.search import Candidate, Mailbox, Program, needs_body, needs_stored, uses_modseq
from jitaku.mail.imap.session import Session
from jitaku.mail.imap.view import View, sequence_set
from jitaku.mail.lineserver import LoggedIn
from jitaku.store import mailstore


async def search(backend: Backend, user: LoggedIn, session: Session, view: View, command: Search, tag: str) -> str:
    """SEARCH: the matching messages as the view numbers them; TAG goes in an ESEARCH response."""
    address = user.address
    budget = Budget(backend.settings.max_command_time)
    mailbox = Mailbox(len(view.uids), view.uids[-1] if view.uids else 0, frozenset(view.saved))
    program = Program(command.key, mailbox, budget)
    stored_needed, bodies = needs_stored(command.key), needs_body(command.key)
    prefix = backend.settings.max_search_bytes
    uids: list[int] = []
    unsearched = False  # a message the view has was expunged by another session, and its text is gone
    for batch, _size in batches(view, list(view.uids), bodies, prefix):
        # what the view says of each message, taken here: the worker thread never looks at the view
        known = [
            Candidate(view.number(uid), uid, view.flags_of(uid), view.modseqs[uid], view.sizes[uid], 0, b"")
            for uid in batch
        ]
        read = functools.partial(
            mailstore.fetch_messages, address=address, name=view.name, uids=batch, bodies=bodies, prefix=prefix
        )

        def work(known: list[Candidate] = known, read: Reader = read) -> tuple[list[int], bool]:
            """The UIDs that match, and whether a message had to be passed over: gone from the store."""
            searchable = known  # flags, sizes, UIDs and the rest: what the view knows is enough
            if stored_needed:
                stored = {message.uid: message for message in backend.database.query_now(read)}
                searchable = [
                    replace(message, received_at=stored[message.uid].received_at, body=stored[message.uid].body)
                    for message in known
                    if message.uid in stored
                ]
            return [message.uid for message in searchable if program.matches(message)], len(searchable) < len(known)

        try:
            matched, gone = await backend.workers.run(budget, work)
        except OutOfTime:
            raise Refused("[LIMIT] the search took too long: narrow it, or search fewer messages") from None
        uids.extend(matched)
        unsearched = unsearched or gone
    found = uids if command.uid else [view.number(uid) for uid in uids]
    # RFC 7162 §3.1.5: a search by MODSEQ says the highest mod-sequence of what it found
    modseqs = [view.modseqs[uid] for uid in uids] if uses_modseq(command.key) else []
    options = command.return_options
    if options is None:
        modseq = f" (MODSEQ {max(modseqs)})" if modseqs else ""
        session.say("* SEARCH" + "".join(f" {number}" for number in found) + modseq)
    else:
        if "SAVE" in options:  # with MIN or MAX, only what they name is saved (RFC 5182 §2.4)
            kept = [pick(uids) for pick, option in ((min, "MIN"), (max, "MAX")) if option in options and uids]
            view.saved = set(kept if {"MIN", "MAX"} & set(options) else uids)
        if options != ("SAVE",):  # SAVE alone answers nothing but OK
            session.say(_esearch(tag, command, found, modseqs))
    # RFC 3501 §7.4.1 keeps an expunge untold during SEARCH; RFC 5530 lets a result miss what it took away
    if unsearched:
        return "OK [EXPUNGEISSUED] messages another session expunged could not be searched"
    return "OK SEARCH completed"


def _esearch(tag: str, command: Search, found: list[int], modseqs: list[int]) -> str:
    """The ESEARCH response (RFC 4731) to SEARCH RETURN (MIN MAX COUNT ALL). FOUND is in ascending order, and
    MODSEQS, given for a search by MODSEQ, are those of the messages found, in the same order."""
    options = command.return_options or ("ALL",)
    parts = [f'* ESEARCH (TAG "{tag}")'] + (["UID"] if command.uid else [])
    if found and "MIN" in options:
        parts.append(f"MIN {found[0]}")
    if found and "MAX" in options:
        parts.append(f"MAX {found[-1]}")
    if "COUNT" in options:
        parts.append(f"COUNT {len(found)}")
    if found and "ALL" in options:
        parts.append(f"ALL {sequence_set(found)}")
    if modseqs:  # RFC 7162 §3.1.5: the highest of the messages reported, which MIN or MAX alone narrow
        if not {"ALL", "COUNT"} & set(options):
            modseqs = [modseqs[0]] * ("MIN" in options) + [modseqs[-1]] * ("MAX" in options)
        parts.append(f"MODSEQ {max(modseqs)}")
    return " ".join(parts)
