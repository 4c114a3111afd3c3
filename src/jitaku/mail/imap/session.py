"""An IMAP session: who is connected and logged in, the selected mailbox's view, and the untagged responses
waiting to go out.

The view is brought up to date from the store (refresh): what other sessions and deliveries did reaches the
client as EXISTS, EXPUNGE and FETCH FLAGS responses (RFC 3501 §7.4.1 rules: no EXPUNGE during FETCH, STORE or
SEARCH), after a new FLAGS when they bring a keyword the client has not been told of. Polling one row of the
mailbox table works the same whether the change came from this process, an SMTP worker or the CLI; when it
moved, only the messages changed since are read.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from jitaku import log
from jitaku.mail import login
from jitaku.mail.imap.view import View
from jitaku.mail.lineserver import Closed, LoggedIn
from jitaku.store import Database, mailstore
from jitaku.store.errors import StoreError
from jitaku.store.mailstore import NoSuchMailbox
from jitaku.store.transaction import Tx

AUTOLOGOUT = 1800.0  # RFC 3501 §5.4: at least 30 minutes
LOGIN_TIMEOUT = 60.0  # before login a connection holds nothing worth keeping (RFC 9051 §5.4 allows it shorter)

T = TypeVar("T")


@dataclass
class Session:
    """One connection's state between commands: the responses a command gathers go out before its tagged one."""

    client: str
    tls: bool
    user: LoggedIn | None = None
    view: View | None = None
    condstore: bool = False
    bad: int = 0  # BAD answers in a row
    refreshed_at: float = 0.0  # when the selected mailbox was last compared with the store (monotonic)
    fresh: bool = False  # the command under way brought the view up to date: the look after it is spared
    lines: list[bytes] = field(default_factory=list)  # untagged responses waiting to go out

    @property
    def may_log_in(self) -> bool:
        return login.may_send_password(self.client, self.tls)

    @property
    def timeout(self) -> float:
        """How long the client may keep us waiting for its next line."""
        return AUTOLOGOUT if self.user is not None else LOGIN_TIMEOUT

    def say(self, line: str | bytes) -> None:
        self.lines.append(line.encode() if isinstance(line, str) else line)

    def list_keywords(self, flag_sets: Iterable[frozenset[str]]) -> None:
        """A client may be shown only the keywords FLAGS has listed (RFC 3501 §7.2.6; imaptest counted hundreds of
        "Keyword used without being in FLAGS"): before flags that bring a new one go out, FLAGS and
        PERMANENTFLAGS are said again. Call it with each set of flags the view takes in."""
        view = self.view
        if view is None:
            return
        new = {flag for flags in flag_sets for flag in flags if not flag.startswith("\\")} - view.keywords
        if new:
            view.keywords |= new
            self.lines.extend(line.encode() for line in view.flag_lines())

    def up_to_date(self, view: View, state: State) -> None:
        """VIEW is as the store was at STATE, which the command under way read or made. The look at the
        mailbox after the command (refresh) would find nothing in all but a rare race, and is spared: it was a
        read for every SELECT, APPEND and EXPUNGE (issue 20). A change made in that race is told after the
        next command, as one made just after the look would be."""
        view.state = state
        self.fresh = True

    def enable_condstore(self) -> None:
        """RFC 7162 §3.1: after the first CONDSTORE enabling command every FETCH of flags carries MODSEQ, and
        in a selected mailbox the client hears, once, the HIGHESTMODSEQ its view is up to date with."""
        if self.condstore:
            return
        self.condstore = True
        if self.view is not None:
            self.say(f"* OK [HIGHESTMODSEQ {self.view.state[1]}] highest")


State = tuple[int, int]  # a mailbox's (uidnext, highestmodseq), as View.state


def caught_up(address: str, view: View, change: Callable[[Tx], T]) -> Callable[[Tx], tuple[T, State | None]]:
    """CHANGE to the selected mailbox, and the mailbox's state after it if just before it the mailbox was as
    the view last saw it (None otherwise): then the view, once told CHANGE's own effects, is up to date."""
    seen = view.state

    def job(tx: Tx) -> tuple[T, State | None]:
        before = mailstore.state(tx, address, view.name)
        done = change(tx)
        return done, mailstore.state(tx, address, view.name) if before == seen else None

    return job


def forget(session: Session, view: View, uids: list[int]) -> None:
    """Tell the client UIDS are gone, highest message number first, so each number is still right."""
    for uid in sorted((u for u in uids if u in view.flags), key=view.number, reverse=True):
        session.say(f"* {view.number(uid)} EXPUNGE")
        view.uids.remove(uid)
        view.recent.discard(uid)
        del view.flags[uid], view.modseqs[uid], view.sizes[uid]


async def refresh(database: Database, user: LoggedIn, session: Session, allow_expunge: bool) -> None:
    """What changed in the selected mailbox since the session last looked, as untagged responses."""
    view, address = session.view, user.address
    if view is None:
        return
    session.refreshed_at = time.monotonic()
    since = view.state
    try:
        # nothing changed, mostly: one statement says so, without a snapshot around it
        if await database.query(lambda s: mailstore.state(s, address, view.name), snapshot=False) == since:
            return
        found = await database.query(lambda s: mailstore.changes(s, address, view.name, since, view.uids))
    except NoSuchMailbox:
        session.say("* BYE the selected mailbox was deleted")
        raise Closed from None
    if found is None:
        return
    if found.expunged and not allow_expunge:
        return
    forget(session, view, found.expunged)
    now = {message.uid: message for message in found.messages}
    changed = [uid for uid in now if uid in view.flags and now[uid].flags != view.flags[uid]]
    new = [uid for uid in now if uid not in view.flags and uid >= since[0]]
    session.list_keywords(now[uid].flags for uid in changed + new)
    for uid in changed:
        view.flags[uid], view.modseqs[uid] = now[uid].flags, now[uid].modseq
        extra = f" MODSEQ ({now[uid].modseq})" if session.condstore else ""
        flags = " ".join(sorted(view.flags_of(uid)))
        session.say(f"* {view.number(uid)} FETCH (FLAGS ({flags}) UID {uid}{extra})")
    if new:
        # new mail is \Recent to this session if no other has claimed it since
        recent_from = found.recent_from
        if not view.read_only and any(uid >= recent_from for uid in new):
            try:
                recent_from = await claim_recent(database, address, view.name, found.uidnext)
            except StoreError as error:  # a full disk: the new mail is told, as \Recent to no one
                log.event("imap_store_failed", user=address, error=repr(error))
                recent_from = found.uidnext
        tell_new(session, view, [now[uid] for uid in new], recent_from, found.uidnext)
    view.state = (found.uidnext, found.highestmodseq)


def tell_new(session: Session, view: View, messages: list[mailstore.Listed], recent_from: int, uidnext: int) -> None:
    """MESSAGES, new in the mailbox, join the view and the client hears of them (EXISTS, RECENT); those from
    RECENT_FROM to UIDNEXT are \\Recent to this session (claim_recent)."""
    for message in messages:
        uid = message.uid
        view.uids.append(uid)
        view.flags[uid], view.modseqs[uid], view.sizes[uid] = message.flags, message.modseq, message.size
        if recent_from <= uid < uidnext:
            view.recent.add(uid)
    session.say(f"* {len(view.uids)} EXISTS")
    session.say(f"* {len(view.recent)} RECENT")


async def claim_recent(database: Database, address: str, name: str, before: int) -> int:
    """The first UID of the messages below BEFORE that are \\Recent to this session (none: BEFORE)."""
    try:
        return await database.transact(lambda tx: mailstore.claim_recent(tx, address, name, before), durable=False)
    except NoSuchMailbox:  # deleted meanwhile: the next look at the mailbox says so
        return before
