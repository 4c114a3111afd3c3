"""Posts archived before the archive kept their Message-ID (migration 0021) given what a new post gets when it is
archived: its Message-ID (a post that had none gets one made of the list and its number, the same each time),
the hash that names its page, its place in its thread, and its words in the search index. The list runner does it
beside its work when the daemon starts; `jitaku list reindex` does it at once; running it again finds nothing
left to do.

A post may be megabytes: its body is read and parsed outside any write transaction, one post at a time
(prepare), and only the few values found are written, BATCH posts to a short transaction (place). Parsing in the
writer's transaction held up every other write meanwhile: the MX's commit before its 250 among them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitaku.addresses import obfuscated
from jitaku.lists import message_ids
from jitaku.mail import parts
from jitaku.mail.headers import split_fields
from jitaku.store import Database, archive, lists, search
from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

BATCH = 50  # posts placed in one transaction
# and of as many bytes at most (or one post): SQLite writes a row anew when it is updated, a 25 MB post's body with
# it, a quarter of a second each
BATCH_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class Placing:
    """What an older post is given, found from its body."""

    post_id: int
    number: int
    message_id: str
    message_hash: str
    answers: tuple[str, ...]
    subject: str
    words: str  # for the search index


def prepare(database: Database, mailing_list: lists.MailingList, limit: int = BATCH) -> list[Placing]:
    """The next LIMIT older posts of the list (fewer, past BATCH_BYTES of them), oldest first (a reply's parent is
    placed before it), read and parsed in this thread (a worker's: it may take seconds), each body on a read of its
    own and let go before the next."""
    pending = database.query_now(lambda s: lists.unplaced(s, mailing_list.id, limit))
    placings: list[Placing] = []
    size = 0
    for post_id, _number in pending:
        if size >= BATCH_BYTES:
            break

        def read(source: Statements, post_id: int = post_id) -> tuple[list[archive.Archived], bytes | None]:
            return archive.by_ids(source, mailing_list.id, [post_id]), archive.body(source, post_id)

        found, body = database.query_now(read)
        if not found:  # gone meanwhile
            continue
        placings.append(_placing(mailing_list, found[0], body or b""))
        size += len(body or b"")
    return placings


def _placing(mailing_list: lists.MailingList, post: archive.Archived, body: bytes) -> Placing:
    fields, _body = split_fields(body)
    identifier = message_ids.message_id(fields) or f"{mailing_list.local_part}.{post.number}@{mailing_list.domain}"
    words = obfuscated(f"{post.author}\n{parts.plain_text(body)}")  # as lists/posting.py's Words has them
    return Placing(
        post.id,
        post.number,
        identifier,
        message_ids.message_hash(identifier),
        tuple(message_ids.answers(fields)),
        post.subject,
        words,
    )


def place(target: Connection | Tx, list_id: int, placings: list[Placing]) -> int:
    """Write what prepare found, in order; how many posts were placed (one placed meanwhile, by the daemon or
    `jitaku list reindex`, is left as it is)."""
    tx = tx_of(target)
    done = 0
    for placing in placings:
        if lists.place(
            tx, list_id, placing.post_id, placing.number, placing.message_id, placing.message_hash, placing.answers
        ):
            search.index_list_post(tx, placing.post_id, placing.subject, placing.words)
            done += 1
    return done


def reindex(database: Database, mailing_list: lists.MailingList) -> int:
    """Every older post of the list, BATCH to a transaction (the CLI's: the daemon's writes wait for none of them
    longer than a moment); how many."""
    done = 0
    while placings := prepare(database, mailing_list):
        with database.transaction() as connection:
            done += place(connection, mailing_list.id, placings)
    return done
