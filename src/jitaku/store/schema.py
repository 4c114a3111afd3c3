"""The tables: every durable thing lives here, message bodies included (principle 1)."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("address", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=True),
    Column("created_at", Float, nullable=False),
)

# One row; bumped by every change to users or aliases (see accounts.Directory).
directory_version = Table(
    "directory_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)

aliases = Table(
    "aliases",
    metadata,
    Column("alias", String(320), primary_key=True),
    Column("target", String(320), nullable=False),
)

mailboxes = Table(
    "mailboxes",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    Column("uidvalidity", Integer, nullable=False),
    Column("uidnext", Integer, nullable=False, default=1),
    UniqueConstraint("user_id", "name"),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("mailbox_id", Integer, ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
    Column("uid", Integer, nullable=False),
    Column("flags", Text, nullable=False, default=""),
    Column("received_at", Float, nullable=False),
    Column("size", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
    UniqueConstraint("mailbox_id", "uid"),
)

queue = Table(
    "queue",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("sender", String(320), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("next_attempt", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("body", LargeBinary, nullable=False),
)
Index("queue_next_attempt", queue.c.next_attempt)

queue_recipients = Table(
    "queue_recipients",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("queue_id", String(32), ForeignKey("queue.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("recipient", String(320), nullable=False),
    Column("last_error", Text, nullable=True),
)
