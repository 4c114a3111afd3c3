"""Readers' comments: written by the daemon's form handler in one transaction with the checks that depend on
what is stored (a replayed form's nonce, the address's rate, a reply's parent, whether the author was
approved before), listed and moderated by the CLI and the owner's signed links.

Prepared SQL on the DB-API, as the rest of the daemon's store (store/statements.py); the CLI passes its Core
connections, which statements_of and tx_of wrap."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jitaku.store.blog import changed
from jitaku.store.site import POST
from jitaku.store.statements import Statements
from jitaku.store.transaction import Tx, statements_of, tx_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

PENDING, PUBLISHED, SPAM = "pending", "published", "spam"


@dataclass(frozen=True)
class NewComment:
    post_id: int
    parent_id: int | None
    author: str
    email: str
    url: str
    body: str
    html: str
    address: str
    nonce: str
    created_at: float


@dataclass
class Comment:
    id: int
    post_id: int
    post_url: str
    parent_id: int | None
    author: str
    email: str
    url: str
    body: str
    html: str
    status: str
    created_at: float
    replies: list[Comment] = field(default_factory=list)


_COMMENT = (
    "SELECT c.id, c.post_id, p.url, c.parent_id, c.author, c.email, c.url, c.body, c.html, c.status, c.created_at"
    " FROM comments c JOIN posts p ON p.id = c.post_id"
)


def _comment(row: Any) -> Comment:
    parent = row[3]
    return Comment(
        int(row[0]),
        int(row[1]),
        str(row[2]),
        None if parent is None else int(parent),
        str(row[4]),
        str(row[5]),
        str(row[6]),
        str(row[7]),
        str(row[8]),
        str(row[9]),
        float(row[10]),
    )


def open_post(source: Connection | Statements, post_id: int, now: float) -> str | None:
    """The URL of the published post POST_ID, which takes comments; None for a draft, a post scheduled after NOW
    (no reader has seen it), a static page (whose page shows no comments, so one stored would never be seen) or
    no post."""
    rows = statements_of(source).run(
        "SELECT url FROM posts WHERE id = ? AND draft = ? AND kind = ? AND published_at <= ?",
        (post_id, False, POST, now),
    )
    return str(rows[0][0]) if rows else None


def nonce_used(source: Connection | Statements, nonce: str) -> bool:
    return bool(statements_of(source).run("SELECT 1 FROM comments WHERE nonce = ?", (nonce,)))


def count_from(source: Connection | Statements, address: str, since: float) -> int:
    """Comments sent from ADDRESS since SINCE, whatever became of them: the rate limit's count."""
    rows = statements_of(source).run(
        "SELECT COUNT(*) FROM comments WHERE address = ? AND created_at >= ?", (address, since)
    )
    return int(rows[0][0])


def can_reply_to(source: Connection | Statements, parent_id: int, post_id: int) -> bool:
    """Whether PARENT_ID is a published top-level comment of POST_ID: replies nest one level."""
    rows = statements_of(source).run(
        "SELECT 1 FROM comments WHERE id = ? AND post_id = ? AND status = ? AND parent_id IS NULL",
        (parent_id, post_id, PUBLISHED),
    )
    return bool(rows)


def approved_before(source: Connection | Statements, author: str, email: str) -> bool:
    """Whether this name and email have a published comment: "first" moderation publishes them directly."""
    rows = statements_of(source).run(
        "SELECT 1 FROM comments WHERE author = ? AND email = ? AND status = ? LIMIT 1", (author, email, PUBLISHED)
    )
    return bool(rows)


def add(target: Connection | Tx, comment: NewComment, status: str) -> int:
    """Store COMMENT as STATUS; a published one changes the pages, which the running site then drops."""
    tx = tx_of(target)
    (comment_id,) = tx.run(
        "INSERT INTO comments (post_id, parent_id, author, email, url, body, html, status, address, nonce,"
        " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (
            comment.post_id,
            comment.parent_id,
            comment.author,
            comment.email,
            comment.url,
            comment.body,
            comment.html,
            status,
            comment.address,
            comment.nonce,
            comment.created_at,
        ),
    )[0]
    if status == PUBLISHED:
        changed(tx)
    return int(comment_id)


def find(source: Connection | Statements, comment_id: int) -> Comment | None:
    rows = statements_of(source).run(f"{_COMMENT} WHERE c.id = ?", (comment_id,))
    return _comment(rows[0]) if rows else None


def listed(source: Connection | Statements, pending_only: bool = False) -> list[Comment]:
    """Every comment, or only those held for moderation, oldest first."""
    if pending_only:
        rows = statements_of(source).run(f"{_COMMENT} WHERE c.status = ? ORDER BY c.id", (PENDING,))
    else:
        rows = statements_of(source).run(f"{_COMMENT} ORDER BY c.id")
    return [_comment(row) for row in rows]


def published(source: Connection | Statements, post_id: int) -> list[Comment]:
    """POST_ID's published comments as a post's page shows them: top-level ones oldest first, each with its
    published replies (a reply whose parent is no longer published is not shown)."""
    rows = statements_of(source).run(
        f"{_COMMENT} WHERE c.post_id = ? AND c.status = ? ORDER BY c.created_at, c.id", (post_id, PUBLISHED)
    )
    found = [_comment(row) for row in rows]
    top = {comment.id: comment for comment in found if comment.parent_id is None}
    for comment in found:
        if comment.parent_id is not None and comment.parent_id in top:
            top[comment.parent_id].replies.append(comment)
    return list(top.values())


def set_status(target: Connection | Tx, comment_id: int, status: str) -> bool:
    """Mark COMMENT_ID as STATUS; False when there is no such comment."""
    tx = tx_of(target)
    if not tx.run("UPDATE comments SET status = ? WHERE id = ? RETURNING id", (status, comment_id)):
        return False
    changed(tx)
    return True


def decide(target: Connection | Tx, comment_id: int, status: str) -> bool:
    """Mark COMMENT_ID as STATUS only while it is pending: the owner's mailed link, which works for 14 days,
    must not undo what the owner decided since with the CLI. False when it is decided already (or gone)."""
    tx = tx_of(target)
    if not tx.run(
        "UPDATE comments SET status = ? WHERE id = ? AND status = ? RETURNING id", (status, comment_id, PENDING)
    ):
        return False
    changed(tx)
    return True


def delete(target: Connection | Tx, comment_id: int) -> bool:
    """Delete COMMENT_ID, and its replies with it (ON DELETE CASCADE); False when there is no such comment."""
    tx = tx_of(target)
    if not tx.run("DELETE FROM comments WHERE id = ? RETURNING id", (comment_id,)):
        return False
    changed(tx)
    return True


def counts_by_post(source: Connection | Statements) -> dict[int, int]:
    """How many comments each post has, published or held, by post id (the admin's list of posts); spam is not
    counted, and a post without any is left out."""
    rows = statements_of(source).run(
        "SELECT post_id, COUNT(*) FROM comments WHERE status <> ? GROUP BY post_id", (SPAM,)
    )
    return {int(post_id): int(count) for post_id, count in rows}
