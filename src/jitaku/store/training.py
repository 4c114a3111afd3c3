"""What a user teaches the spam engines over IMAP (issue 23): a message moved or copied into their \\Junk
mailbox, appended to it, or given a junk keyword is spam; one moved out of Junk into any mailbox but a trash
folder, or given a not-junk keyword that rescues it, is ham.

Moving spam from Junk into the trash is deleting it, no verdict; expunging it from Junk neither. A trash
folder is the one of special use \\Trash, or one a client made without it under a name clients give theirs
(TRASH_NAMES). Every other move out of Junk is ham, into \\Archive too (filing a message away says it is
wanted), as Dovecot's IMAPSieve example for spam learning has it (report-ham.sieve: any COPY out of Junk but
into "Trash").

Keywords: $Junk and $NotJunk (IANA's registry), and the older names clients still set where a server takes
any keyword, as ours does: Thunderbird's Junk and NonJunk (it turns them into $Junk and $NotJunk only for a
server that takes no other keyword), Apple Mail's NotJunk. Clients set them by themselves, not only when the
user says so: Thunderbird's junk filter marks every new message it classifies, most of them NonJunk, and
teaching ham on each would teach the engines every message as ham, whatever they scored it. So:

- a STORE or APPEND that sets a junk keyword on a message that had none teaches spam (the user's Junk button,
  or a client's filter that found what ours let through), and so does any APPEND into Junk, whatever its
  keywords;
- one that sets a not-junk keyword on a message that had none teaches ham only when that rescues the message:
  a STORE on a message in Junk, or one that had a junk keyword (Thunderbird's "Not Junk" adds NonJunk before
  it removes Junk), or whose first X-Spam-Status says Yes (our filter called it spam: that is what the store
  keeps of its verdict);
- removing either, or setting both at once, teaches nothing.

The IMAP command records what it taught in its own transaction (filter_training); the main process's learner
(mail/filters/learning.py) teaches every engine later and records in filter_learned what it learned, so that
a message is learned at most once each way (by its SHA-256 as stored).

An IMAP command reads no stored message under the write lock: SQLite reads the whole blob for its first bytes
(20 messages of 5 MB: 38 ms). A not-junk keyword whose rescue hangs on our filter's verdict alone (a message
outside Junk without a junk keyword: Thunderbird's NonJunk on new mail) is recorded as ham only if our filter
called the message spam (IF_CALLED_SPAM), and the learner, which reads the message anyway, outside any
transaction, drops the item when the header says otherwise. Such an item is no reason for the STORE's commit
to reach the disk (`sure`): most of them teach nothing.

The decisions (`moved`, `appended`, `flagged`) are plain functions of what the command did; `record_*` run
inside the command's transaction."""

from __future__ import annotations

import re
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from jitaku.store.mailstore import DELIMITER, StoreResult, Target, canonical
from jitaku.store.statements import Statements
from jitaku.store.transaction import statements_of, tx_of

JUNK, TRASH = "\\Junk", "\\Trash"
# Keywords are case-insensitive (RFC 3501 §2.3.2): these are lower-cased
SPAM_KEYWORDS = frozenset({"$junk", "junk"})
HAM_KEYWORDS = frozenset({"$notjunk", "nonjunk", "notjunk"})
# In filter_training.engines beside the names of the engines that learned the item: ham only if our filter called
# the message spam (not an engine's name: those are rspamd and spamassassin)
IF_CALLED_SPAM = "if-called-spam"
# Bytes of a message read for its first X-Spam-Status, wherever it is in the header section: ours is near the top,
# after Return-Path and, on a message the virus scanner saw in part, X-Virus-Status (filters/decision.py)
HEAD = 16384
_SPAM_STATUS = re.compile(rb"^x-spam-status:[ \t]*(\S*)", re.IGNORECASE | re.MULTILINE)
# Seconds before each retry of an item an engine could not learn; after the last, the item is given up (logged)
RETRIES = (2.0, 30.0, 300.0, 1800.0)
BATCH = 20
# The names clients give a trash folder they make where the server marks none, compared with a name's last
# level, case-insensitively: Thunderbird's "Trash", Outlook's "Deleted Items" (削除済みアイテム in Japanese),
# Apple Mail's "Deleted Messages", Gmail's "Bin" (British English), and the Japanese ゴミ箱 and ごみ箱.
# Dovecot's antispam plugin gives the English ones as its example of antispam_trash.
TRASH_NAMES = frozenset(
    name.casefold()
    for name in ("Trash", "Deleted Items", "Deleted Messages", "Bin", "ゴミ箱", "ごみ箱", "削除済みアイテム")
)


def _keywords(flags: Iterable[str]) -> set[str]:
    return {flag.lower() for flag in flags}


def moved(source_use: str | None, target_use: str | None) -> bool | None:
    """What a MOVE or COPY from a mailbox of SOURCE_USE (its `role`) into one of TARGET_USE teaches: True spam
    (into Junk), False ham (out of Junk, except into the trash: deleting spam is no verdict), None nothing. A
    client without MOVE moves by COPY and then deletes, so both count alike."""
    if target_use == JUNK and source_use != JUNK:
        return True
    if source_use == JUNK and target_use not in (JUNK, TRASH):
        return False
    return None


def by_keywords(flags: Iterable[str]) -> bool | None:
    """What the keywords FLAGS say: True junk, False not junk, None neither or both."""
    found = _keywords(flags)
    spam, ham = bool(found & SPAM_KEYWORDS), bool(found & HAM_KEYWORDS)
    return spam if spam != ham else None


def flagged(given: Iterable[str], mode: str, before: Iterable[str], rescue: bool) -> bool | None:
    """What a STORE of GIVEN flags in MODE ("add", "remove", "replace") teaches of a message that had BEFORE:
    spam when it sets a junk keyword the message had none of; ham when it sets a not-junk keyword the message
    had none of and that rescues it: it had a junk keyword, or RESCUE (it is in Junk, or our filter called it
    spam); else nothing."""
    said = None if mode == "remove" else by_keywords(given)
    had = _keywords(before)
    if said is True:
        return None if had & SPAM_KEYWORDS else True
    if said is False and not had & HAM_KEYWORDS and (rescue or had & SPAM_KEYWORDS):
        return False
    return None


def teaching(given: Iterable[str], mode: str) -> bool:
    """Whether a STORE of GIVEN flags in MODE may teach at all: it sets a junk or a not-junk keyword, not both
    (removing one teaches nothing: Thunderbird removes Junk after each NonJunk its filter sets)."""
    return mode != "remove" and by_keywords(given) is not None


def sure(given: Iterable[str], mode: str, befores: Iterable[Iterable[str]], in_junk: bool) -> bool:
    """Whether a STORE of GIVEN flags in MODE, on messages that had BEFORES in Junk or not (IN_JUNK), teaches
    one of them whatever our filter called it: what makes its commit durable."""
    given = list(given)
    return any(flagged(given, mode, before, in_junk) is not None for before in befores)


def appended(target_use: str | None, flags: Iterable[str], marked: bool) -> bool | None:
    """An APPEND into a mailbox of TARGET_USE with FLAGS, of a message our filter called spam or not (MARKED):
    into Junk is spam whatever its keywords, the user junking it (Thunderbird keeps a message's keywords when
    it copies it across accounts, NonJunk on nearly every one: only a STORE on a message in Junk rescues it);
    elsewhere by its keywords as a STORE would set them."""
    if target_use == JUNK:
        return True
    return flagged(flags, "add", (), marked)


def said_spam(message: bytes) -> bool:
    """Whether the first X-Spam-Status field of MESSAGE (or of its first bytes) says Yes."""
    head = message[:HEAD]
    end = min((at for at in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if at >= 0), default=len(head))
    found = _SPAM_STATUS.search(head, 0, end)
    return found is not None and found[1].lower().startswith(b"yes")


def special_use(source: Target | Statements, address: str, name: str) -> str | None:
    rows = statements_of(source).run(
        "SELECT mailboxes.special_use FROM mailboxes JOIN users ON users.id = mailboxes.user_id"
        " WHERE users.address = ? AND mailboxes.name = ?",
        (address.lower(), canonical(name)),
    )
    return rows[0][0] if rows else None


def trash_named(name: str) -> bool:
    return name.rpartition(DELIMITER)[2].casefold() in TRASH_NAMES


def role(source: Target | Statements, address: str, name: str) -> str | None:
    """The part the user's mailbox NAME plays in training: its special use, or \\Trash for a folder without one
    that is named as clients name their trash."""
    use = special_use(source, address, name)
    return TRASH if use is None and trash_named(name) else use


_ADD = (
    "INSERT INTO filter_training (message_id, spam, engines, tries, due_at)"
    " SELECT messages.id, ?, ?, 0, ? FROM messages JOIN mailboxes ON mailboxes.id = messages.mailbox_id"
    " JOIN users ON users.id = mailboxes.user_id"
    " WHERE users.address = ? AND mailboxes.name = ? AND messages.uid = ?"
)


def record(
    target: Target, address: str, name: str, uids: Collection[int], spam: bool, if_called_spam: bool = False
) -> None:
    """Teach the engines the messages UIDS of the user's mailbox NAME as SPAM (or ham; IF_CALLED_SPAM: only
    if our filter called it spam), in the caller's transaction."""
    if uids:
        now, engines = time.time(), IF_CALLED_SPAM if if_called_spam else ""
        tx_of(target).run_many(_ADD, [(spam, engines, now, address.lower(), canonical(name), uid) for uid in uids])


def record_copy(target: Target, address: str, source: str, into: str, new_uids: Collection[int]) -> bool | None:
    """A COPY or MOVE of messages from SOURCE that became NEW_UIDS of INTO; returns what it taught."""
    if not new_uids:
        return None
    spam = moved(role(target, address, source), role(target, address, into))
    if spam is not None:
        record(target, address, into, new_uids, spam)
    return spam


def record_append(target: Target, address: str, name: str, uid: int, flags: Iterable[str], message: bytes) -> None:
    """An APPEND of MESSAGE with FLAGS that became UID of NAME."""
    marked = by_keywords(flags) is False and said_spam(message)
    spam = appended(special_use(target, address, name), flags, marked)
    if spam is not None:
        record(target, address, name, [uid], spam)


def record_flags(
    target: Target, address: str, name: str, given: Iterable[str], mode: str, result: StoreResult, in_junk: bool
) -> None:
    """A STORE of GIVEN flags in MODE on messages of NAME (a mailbox of special use \\Junk or not: IN_JUNK),
    which did RESULT; the caller checked that it may teach (`teaching`)."""
    given, before = list(given), result.before
    for spam in (True, False):
        taught = [uid for uid in result.changed if flagged(given, mode, before[uid], in_junk) is spam]
        record(target, address, name, taught, spam)
    if not in_junk:  # where only our filter's verdict, read later by the learner, can make it a rescue
        unsure = [
            uid
            for uid in result.changed
            if flagged(given, mode, before[uid], False) is None and flagged(given, mode, before[uid], True) is False
        ]
        record(target, address, name, unsure, False, if_called_spam=True)


@dataclass(frozen=True)
class Pending:
    id: int
    message_id: int
    spam: bool
    engines: frozenset[str]  # those that learned it already
    tries: int
    if_called_spam: bool = False  # ham only if our filter called the message spam (the learner reads it)


def pending(source: Statements, now: float, limit: int = BATCH) -> list[Pending]:
    rows = source.run(
        "SELECT id, message_id, spam, engines, tries FROM filter_training WHERE due_at <= ? ORDER BY id LIMIT ?",
        (now, limit),
    )
    found = []
    for id_, message_id, spam, engines, tries in rows:
        names = frozenset(filter(None, engines.split(",")))
        engines_done, conditional = names - {IF_CALLED_SPAM}, IF_CALLED_SPAM in names
        found.append(Pending(int(id_), int(message_id), bool(spam), engines_done, int(tries), conditional))
    return found


def body(source: Statements, message_id: int) -> bytes | None:
    rows = source.run("SELECT body FROM messages WHERE id = ?", (message_id,))
    return bytes(rows[0][0]) if rows else None


def learned(source: Statements, digest: str, spam: bool) -> bool:
    return bool(source.run("SELECT 1 FROM filter_learned WHERE digest = ? AND spam = ?", (digest, spam)))


_LEARNED = "INSERT INTO filter_learned (digest, spam, learned_at) VALUES (?, ?, ?)"


def finish(target: Target, item: Pending, digest: str | None) -> None:
    """ITEM is done: learned by every engine (DIGEST recorded), or nothing to learn (None: the message gone or
    learned so before)."""
    tx = tx_of(target)
    tx.run("DELETE FROM filter_training WHERE id = ?", (item.id,))
    if digest is not None and not learned(tx, digest, item.spam):
        tx.run(_LEARNED, (digest, item.spam, time.time()))


def retry(target: Target, item: Pending, engines: Iterable[str], due_at: float) -> None:
    """ITEM again at DUE_AT, ENGINES having learned it so far (an item IF_CALLED_SPAM was found so by then: a
    message never changes, and the item is plain from now on)."""
    tx_of(target).run(
        "UPDATE filter_training SET engines = ?, tries = tries + 1, due_at = ? WHERE id = ?",
        (",".join(sorted(engines)), due_at, item.id),
    )


def waiting(source: Statements) -> int:
    return int(source.run("SELECT COUNT(*) FROM filter_training")[0][0])
