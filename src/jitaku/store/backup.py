"""The database's side of a backup (jitaku.backup): a consistent copy of a SQLite store taken while the daemon
writes to it, and the counts a snapshot records so that a restore can be checked against them.

The copy is SQLite's online backup, in one step: one read transaction, so the copy is the database as of one
commit, whatever the writer does meanwhile (WAL lets it go on). Unlike VACUUM INTO it keeps the pages where they
were, so that restic's chunks of today's copy are mostly yesterday's and a second backup sends little.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jitaku.store.dialect import BUSY_TIMEOUT, SQLITE
from jitaku.store.statements import Statements
from jitaku.store.transaction import statements_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Counts:
    """What a snapshot holds, as a person would check it: messages per mailbox ("user/mailbox"), blog posts and
    comments, list members, and the id of the newest message (0: none)."""

    mailboxes: dict[str, int] = field(default_factory=dict)
    posts: int = 0
    comments: int = 0
    members: int = 0
    newest: int = 0

    @property
    def messages(self) -> int:
        return sum(self.mailboxes.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "mailboxes": self.mailboxes,
            "posts": self.posts,
            "comments": self.comments,
            "members": self.members,
            "newest": self.newest,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        mailboxes = {str(name): int(count) for name, count in dict(data["mailboxes"]).items()}
        return cls(mailboxes, int(data["posts"]), int(data["comments"]), int(data["members"]), int(data["newest"]))


def counts(source: Connection | Statements) -> Counts:
    run = statements_of(source).run
    mailboxes = run(
        "SELECT users.address, mailboxes.name, COUNT(messages.id) FROM mailboxes"
        " JOIN users ON users.id = mailboxes.user_id LEFT JOIN messages ON messages.mailbox_id = mailboxes.id"
        " GROUP BY mailboxes.id, users.address, mailboxes.name ORDER BY users.address, mailboxes.name"
    )
    return Counts(
        {f"{address}/{name}": int(count) for address, name, count in mailboxes},
        int(run("SELECT COUNT(*) FROM posts")[0][0]),
        int(run("SELECT COUNT(*) FROM comments")[0][0]),
        int(run("SELECT COUNT(*) FROM list_members")[0][0]),
        int(run("SELECT COALESCE(MAX(id), 0) FROM messages")[0][0]),
    )


def copy_sqlite(source: Path, target: Path) -> Counts:
    """SOURCE's database as one commit left it, written to TARGET (a new file, in rollback-journal mode so that it
        is whole by itself), and its counts, read from the copy: what the snapshot holds, not what came after. SOURCE
    is opened as it is (mode=rw: never made when missing); a read-only open of a WAL database fails without its
    -shm file, which the daemon's absence leaves none of."""
    # made first with the source's mode (0600 as jitaku makes it): SQLite would make it by the umask, 0644
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, source.stat().st_mode & 0o777))
    reading = sqlite3.connect(f"{source.absolute().as_uri()}?mode=rw", uri=True, timeout=BUSY_TIMEOUT / 1000)
    try:
        writing = sqlite3.connect(target, isolation_level=None)
        try:
            reading.backup(writing)  # pages=-1: the whole database in one step, one read transaction
            writing.execute("PRAGMA journal_mode=DELETE").close()
            return counts(Statements(writing.cursor(), SQLITE, sqlite3.Error))
        finally:
            writing.close()
    finally:
        reading.close()


def integrity(path: Path) -> str:
    """SQLite's own check of the file at PATH: "ok", or the first problem it names."""
    connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        found = connection.execute("PRAGMA integrity_check(1)").fetchone()
    finally:
        connection.close()
    return str(found[0]) if found else "no answer"


def counts_of(url: str) -> Counts:
    """The counts of the database at URL, opened as jitaku opens its own (its schema checked and brought up)."""
    from jitaku.store import Database

    database = Database(url)
    try:
        return database.query_now(counts)
    finally:
        database.close()
