"""What a user teaches the spam engines over IMAP (issue 23): a message moved or copied into their \\Junk
mailbox, appended to it, or flagged $Junk (Thunderbird, Apple Mail) is spam; one moved out of Junk into any
mailbox but a trash folder, or flagged $NotJunk, is ham.

Moving spam from Junk into the trash is deleting it, no verdict; expunging it from Junk neither. A trash
folder is the one of special use \\Trash, or one a client made without it under a name clients give theirs
(TRASH_NAMES). Every other move out of Junk is ham, into \\Archive too (filing a message away says it is
wanted), as Dovecot's IMAPSieve example for spam learning has it (report-ham.sieve: any COPY out of Junk but
into "Trash").

The IMAP command records what it taught in its own transaction (filter_training); the main process's learner
(mail/filters/learning.py) teaches every engine later and records in filter_learned what it learned, so that
a message is learned at most once each way (by its SHA-256 as stored).

The decisions (`moved`, `appended`, `flagged`) are plain functions of what the command did; `record_*` run
inside the command's transaction."""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from jitaku.store.mailstore import DELIMITER, Target, canonical
from jitaku.store.statements import Statements
from jitaku.store.transaction import statements_of, tx_of

JUNK, TRASH = "\\Junk", "\\Trash"
SPAM_KEYWORD, HAM_KEYWORD = "$junk", "$notjunk"  # keywords are case-insensitive (RFC 3501 §2.3.2)
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
    """What the keywords FLAGS teach: $Junk spam, $NotJunk ham, both or neither nothing."""
    found = _keywords(flags)
    spam, ham = SPAM_KEYWORD in found, HAM_KEYWORD in found
    return spam if spam != ham else None


def appended(target_use: str | None, flags: Iterable[str]) -> bool | None:
    """An APPEND into a mailbox of TARGET_USE with FLAGS: its keywords decide, else Junk means spam."""
    said = by_keywords(flags)
    if said is not None:
        return said
    return True if target_use == JUNK else None


def flagged(given: Iterable[str], mode: str, after: Iterable[str]) -> bool | None:
    """A STORE of GIVEN flags in MODE ("add", "remove", "replace") that left a message with AFTER: setting
    $Junk teaches spam and $NotJunk ham, as long as the message does not carry both after it."""
    if mode == "remove":
        return None
    said = by_keywords(given)
    if said is None:
        return None
    return said if by_keywords(after) == said else None


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
    " SELECT messages.id, ?, '', 0, ? FROM messages JOIN mailboxes ON mailboxes.id = messages.mailbox_id"
    " JOIN users ON users.id = mailboxes.user_id"
    " WHERE users.address = ? AND mailboxes.name = ? AND messages.uid = ?"
)


def record(target: Target, address: str, name: str, uids: Collection[int], spam: bool) -> None:
    """Teach the engines the messages UIDS of the user's mailbox NAME as SPAM (or ham), in the caller's
    transaction."""
    if uids:
        now = time.time()
        tx_of(target).run_many(_ADD, [(spam, now, address.lower(), canonical(name), uid) for uid in uids])


def record_copy(target: Target, address: str, source: str, into: str, new_uids: Collection[int]) -> bool | None:
    """A COPY or MOVE of messages from SOURCE that became NEW_UIDS of INTO; returns what it taught."""
    if not new_uids:
        return None
    spam = moved(role(target, address, source), role(target, address, into))
    if spam is not None:
        record(target, address, into, new_uids, spam)
    return spam


@dataclass(frozen=True)
class Pending:
    id: int
    message_id: int
    spam: bool
    engines: frozenset[str]  # those that learned it already
    tries: int


def pending(source: Statements, now: float, limit: int = BATCH) -> list[Pending]:
    rows = source.run(
        "SELECT id, message_id, spam, engines, tries FROM filter_training WHERE due_at <= ? ORDER BY id LIMIT ?",
        (now, limit),
    )
    return [
        Pending(int(id_), int(message_id), bool(spam), frozenset(filter(None, engines.split(","))), int(tries))
        for id_, message_id, spam, engines, tries in rows
    ]


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
    """ITEM again at DUE_AT, ENGINES having learned it so far."""
    tx_of(target).run(
        "UPDATE filter_training SET engines = ?, tries = tries + 1, due_at = ? WHERE id = ?",
        (",".join(sorted(engines)), due_at, item.id),
    )


def waiting(source: Statements) -> int:
    return int(source.run("SELECT COUNT(*) FROM filter_training")[0][0])
