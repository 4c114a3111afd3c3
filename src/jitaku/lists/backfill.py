"""Posts archived before the archive kept their Message-ID (migration 0021) given what a new post gets when it is
archived: its Message-ID (a post that had none gets one made of the list and its number, the same each time),
the hash that names its page, its place in its thread, and its words in the search index. The list runner does it
when the daemon starts, a few posts to a transaction (mail keeps flowing meanwhile); `jitaku list reindex` does it
at once; running it again finds nothing left to do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jitaku.addresses import obfuscated
from jitaku.lists import message_ids
from jitaku.mail import parts
from jitaku.mail.headers import split_fields
from jitaku.store import archive, lists, search
from jitaku.store.transaction import Tx, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


def backfill(target: Connection | Tx, list_id: int, limit: int = -1) -> int:
    """Place and index each older post of the list (the first LIMIT of them; -1: all), oldest first (a reply's
    parent is placed before it); how many."""
    tx = tx_of(target)
    mailing_list = lists.list_by_id(tx, list_id)
    done = 0
    for post_id, number in lists.unplaced(tx, list_id, limit):
        body = archive.body(tx, post_id) or b""
        fields, _body = split_fields(body)
        identifier = message_ids.message_id(fields) or f"{mailing_list.local_part}.{number}@{mailing_list.domain}"
        hashed = message_ids.message_hash(identifier)
        lists.place(tx, list_id, post_id, number, identifier, hashed, message_ids.answers(fields))
        (post,) = archive.by_ids(tx, list_id, [post_id])
        words = obfuscated(f"{post.author}\n{parts.plain_text(body)}")  # as lists/posting.py's Words has them
        search.index_list_post(tx, post_id, post.subject, words)
        done += 1
    return done
