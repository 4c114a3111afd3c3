"""store/: migrations, the batched writer's isolation of failing jobs, mailbox UIDs."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from jitaku.store import Database, Tx, accounts, attempts, lists, mailstore, queue
from jitaku.store import errors as store_errors
from jitaku.store.engine import migrations_config
from jitaku.store.revision import SCHEMA_REVISION, stored_revision
from tests.postgres import database_url, sqlite_only

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)


def test_schema_revision_is_alembics_head(tmp_path: Path) -> None:
    config = migrations_config()
    assert ScriptDirectory.from_config(config).get_current_head() == SCHEMA_REVISION
    database = Database(database_url(tmp_path))
    assert database.query_now(stored_revision) == SCHEMA_REVISION
    database.close()


@sqlite_only("WAL and synchronous=FULL are PRAGMAs of its connections")
def test_sqlite_is_opened_in_wal_mode_and_commits_to_the_disk(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    assert database.read_now(lambda c: c.execute(text("PRAGMA journal_mode")).scalar()) == "wal"
    assert database.read_now(lambda c: c.execute(text("PRAGMA synchronous")).scalar()) == 2  # FULL
    database.close()


def test_a_failing_job_rolls_back_alone(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", None)

    def bad(tx: Tx) -> None:
        mailstore.append(tx, "alice@example.test", b"half")
        raise RuntimeError("boom")

    async def go() -> list[object]:
        jobs = [
            database.transact(lambda tx: mailstore.append(tx, "alice@example.test", b"one")),
            database.transact(bad),
            database.transact(lambda tx: mailstore.append(tx, "alice@example.test", b"two")),
        ]
        return await asyncio.gather(*jobs, return_exceptions=True)

    results = asyncio.run(go())
    assert results[0] == 1 and isinstance(results[1], RuntimeError) and results[2] == 2
    bodies = [m.body for m in database.read_now(lambda c: mailstore.list_messages(c, "alice@example.test"))]
    assert bodies == [b"one", b"two"]
    database.close()


def test_a_database_opened_read_only_reads_and_refuses_every_write_saying_so(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    database = Database(url)
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", None)
    database.close()
    fenced = Database(url, read_only=True)
    assert fenced.read_now(lambda c: accounts.find_user(c, "alice@example.test")) is not None
    with pytest.raises(Exception) as refused, fenced.transaction() as connection:
        accounts.add_user(connection, "bob@example.test", None)
    assert store_errors.read_only(refused.value), refused.value
    with pytest.raises(Exception) as refused_too:
        asyncio.run(fenced.transact(lambda tx: mailstore.append(tx, "alice@example.test", b"one")))
    assert store_errors.read_only(refused_too.value), refused_too.value
    fenced.close()
    database = Database(url)
    assert database.read_now(lambda c: accounts.find_user(c, "bob@example.test")) is None
    assert database.read_now(lambda c: mailstore.list_messages(c, "alice@example.test")) == []
    database.close()


def test_unknown_mailbox_is_a_lookup_error(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    with pytest.raises(LookupError):
        database.read_now(lambda c: mailstore.list_messages(c, "nobody@example.test"))
    database.close()


def test_list_confirmations_and_held_posts_expire_and_the_inbox_takes_each_item_once(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        found = lists.create_list(connection, "sota@example.test", "SOTA", "[sota:%05d]", "list", "auto", "")
        lists.add_confirmation(connection, "old", found.id, "a@example.org", "subscribe")
        lists.add_confirmation(connection, "new", found.id, "b@example.org", "subscribe")
        connection.execute(text("UPDATE list_confirmations SET created_at = 0 WHERE token = 'old'"))
        lists.hold(connection, 1, found.id, "c@example.org", "c", "old post", "not a member", b"x")
        lists.hold(connection, 2, found.id, "d@example.org", "d", "new post", "not a member", b"y")
        connection.execute(text("UPDATE list_held SET received_at = 0 WHERE id = 1"))
        assert lists.expire(connection, time.time() - 3 * 86400, time.time() - 30 * 86400) == (1, 1)
        assert lists.find_confirmation(connection, "old") is None
        assert lists.find_confirmation(connection, "new") == (found.id, "b@example.org", "subscribe")
        assert [h.subject for h in lists.held(connection, found.id)] == ["new post"]
        lists.add_inbox(connection, found.address, "post", found.address, "c@example.org", b"x", time.time())
        item = lists.inbox_item(connection, lists.next_inbox(connection, time.time()) or 0)
        assert item is not None
        lists.remove_inbox(connection, item.id, item.lease)
        with pytest.raises(accounts.AccountError, match="handled already"):
            lists.remove_inbox(connection, item.id, item.lease)
    database.close()


@sqlite_only("a table SQLite rebuilds takes the rows that reference it; PostgreSQL alters tables in place")
def test_upgrading_a_database_with_mail_keeps_every_mailbox_and_queued_recipient(tmp_path: Path) -> None:
    """Migrations that alter a table must not rebuild it on SQLite: the rows that reference it would go with it
    (ON DELETE CASCADE): mailboxes of users, recipients of queued mail."""
    from alembic import command
    from sqlalchemy import create_engine

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    config = migrations_config()
    with engine.begin() as connection:
        connection.execute(text("PRAGMA foreign_keys=ON"))
        config.attributes["connection"] = connection
        command.upgrade(config, "0002")  # the mail core, before lists
        connection.execute(text("INSERT INTO users (address, password_hash, created_at) VALUES ('a@x.test', NULL, 1)"))
        connection.execute(text("INSERT INTO users (address, password_hash, created_at) VALUES ('b@x.test', NULL, 2)"))
        connection.execute(
            text("INSERT INTO mailboxes (user_id, name, uidvalidity, uidnext) SELECT id, 'INBOX', 1, 3 FROM users")
        )
        connection.execute(
            text(
                "INSERT INTO messages (mailbox_id, uid, flags, received_at, size, body)"
                " SELECT id, uid, '', 1, 3, x'616263' FROM mailboxes, (SELECT 1 AS uid UNION SELECT 2)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO queue (id, sender, created_at, next_attempt, attempts, body) VALUES ('Q', 'a@x.test', 1, 1, 0, x'00')"
            )
        )
        connection.execute(text("INSERT INTO queue_recipients (queue_id, recipient) VALUES ('Q', 'r@y.test')"))
    engine.dispose()
    database = Database(url)  # brings it to the newest revision, as `jitaku serve` does
    assert database.query_now(stored_revision) == SCHEMA_REVISION
    assert [(u.address, u.admin) for u in database.read_now(accounts.list_users)] == [
        ("a@x.test", True),
        ("b@x.test", False),
    ]
    with database.engine.connect() as connection:
        for address in ("a@x.test", "b@x.test"):
            found = mailstore.mailboxes(connection, address)
            assert [(m.name, m.special_use, m.messages, m.uidnext) for m in found] == [
                ("INBOX", None, 2, 3),
                ("Archive", "\\Archive", 0, 1),
                ("Drafts", "\\Drafts", 0, 1),
                ("Junk", "\\Junk", 0, 1),
                ("Sent", "\\Sent", 0, 1),
                ("Trash", "\\Trash", 0, 1),
            ]
            assert found[0].recent == 0  # mail that was here before the upgrade is not new (0009)
            assert mailstore.subscriptions(connection, address) == sorted(m.name for m in found)  # 0008, 0013
            inbox = mailstore.select(connection, address, "INBOX")
            assert inbox.uids == [1, 2] and inbox.flags == {1: frozenset(), 2: frozenset()} and inbox.highestmodseq == 1
            assert inbox.modseqs == {1: 1, 2: 1} and inbox.sizes == {1: 3, 2: 3}
            assert [m.body for m in mailstore.list_messages(connection, address)] == [b"abc", b"abc"]
    assert [m.recipients for m in database.read_now(queue.list_queue)] == [("r@y.test",)]
    database.close()


def test_imap_revision_downgrades_keeping_mail_and_upgrades_again(tmp_path: Path) -> None:
    """0008's downgrade drops the folders it made while they are empty; one with mail stays and gets its
    special use back on the next upgrade."""
    from alembic import command

    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, "a@x.test", None)
        mailstore.append(connection, "a@x.test", b"in", "INBOX")
        mailstore.append(connection, "a@x.test", b"sent", "Sent")
    config = migrations_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0007")
        assert connection.execute(text("SELECT name FROM mailboxes ORDER BY name")).scalars().all() == ["INBOX", "Sent"]
        command.upgrade(config, "head")
    found = database.read_now(lambda c: mailstore.mailboxes(c, "a@x.test"))
    assert [(m.name, m.special_use, m.messages) for m in found] == [
        ("INBOX", None, 1),
        ("Archive", "\\Archive", 0),
        ("Drafts", "\\Drafts", 0),
        ("Junk", "\\Junk", 0),
        ("Sent", "\\Sent", 1),
        ("Trash", "\\Trash", 0),
    ]
    database.close()


def test_subscriptions_leave_the_mailboxes_table_and_come_back(tmp_path: Path) -> None:
    """0013: a subscription was a column of its mailbox, so DELETE took it and CREATE set it; what was
    subscribed stays so on the way up, and on the way down for names that still have a mailbox."""
    from alembic import command

    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        for address in ("a@x.test", "b@x.test"):
            accounts.add_user(connection, address, None)
        mailstore.create_mailbox(connection, "a@x.test", "Trips")
        mailstore.append(connection, "a@x.test", b"kept", "Trips")
    config = migrations_config()

    def subscribed_column(connection: Connection) -> list[tuple[str, str]]:
        query = "SELECT address, name FROM mailboxes JOIN users ON users.id = user_id WHERE subscribed ORDER BY 1, 2"
        return [(row.address, row.name) for row in connection.execute(text(query))]

    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0012")
        assert ("a@x.test", "Trips") not in subscribed_column(connection) and len(subscribed_column(connection)) == 12
        connection.execute(text("UPDATE mailboxes SET subscribed = (name = 'Trips') WHERE name IN ('Trips', 'Junk')"))
        command.upgrade(config, "head")
        assert "subscribed" not in {column["name"] for column in inspect(connection).get_columns("mailboxes")}
    folders = ["Archive", "Drafts", "INBOX", "Sent", "Trash"]
    assert database.read_now(lambda c: mailstore.subscriptions(c, "a@x.test")) == [*folders, "Trips"]
    assert database.read_now(lambda c: mailstore.subscriptions(c, "b@x.test")) == folders
    assert database.read_now(lambda c: mailstore.select(c, "a@x.test", "Trips")).uids[0] == 1
    with database.transaction() as connection:
        mailstore.delete_mailbox(connection, "a@x.test", "Trips")  # subscribed still, with no mailbox
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0012")
        assert subscribed_column(connection) == [("a@x.test", name) for name in folders] + [
            ("b@x.test", name) for name in folders
        ]
        command.upgrade(config, "head")
    assert database.read_now(lambda c: mailstore.subscriptions(c, "a@x.test")) == folders
    database.close()


def test_log_out_a_new_password_and_a_revoked_right_each_move_the_session_generation_on(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))

    def generation() -> int:
        user = database.read_now(lambda c: accounts.find_user(c, "a@x.test"))
        assert user is not None
        return user.session_generation

    with database.transaction() as connection:
        accounts.add_user(connection, "a@x.test", None)
    assert generation() == 0
    for change in (
        lambda c: accounts.end_sessions(c, "a@x.test"),
        lambda c: accounts.set_password(c, "A@x.test", "hash"),
        lambda c: accounts.set_admin(c, "a@x.test", False),
    ):
        before = generation()
        with database.transaction() as connection:
            change(connection)
        assert generation() == before + 1
    with database.transaction() as connection:
        accounts.set_admin(connection, "a@x.test", True)  # granting ends nothing
    assert generation() == 3
    with pytest.raises(accounts.AccountError, match="no user"), database.transaction() as connection:
        accounts.end_sessions(connection, "nobody@x.test")
    database.close()


def test_list_copies_queued_before_signing_go_out_signed_after_the_upgrade(tmp_path: Path) -> None:
    """0012: a bounce to an unsigned VERP address no longer counts, so the copies still in the queue (a server
    deferring them for days) get the signed sender verp.py would give them now; other mail is left alone."""
    from alembic import command

    from jitaku.lists import verp

    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        found = lists.create_list(connection, "sota@example.test", "SOTA", "[sota:%05d]", "list", "auto", "")
        lists.add_members(connection, found.id, ["kenji@example.jp"])
    config = migrations_config()
    long_member = "taro.yamada.the.third.of.his.name@mail.subdivision.example.co.jp"
    unsigned = {
        "kenji@example.jp": "sota-bounces+kenji=example.jp@example.test",
        long_member: f"sota-bounces+{long_member.replace('@', '=')}@example.test",
        "x@y.test": "gone-bounces+x=y.test@example.test",  # a list that is no more
        "z@y.test": None,
    }
    signed = {
        **unsigned,
        "kenji@example.jp": verp.bounce_address("sota@example.test", "kenji@example.jp", found.key),
        long_member: verp.bounce_address("sota@example.test", long_member, found.key),
    }
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection

        def senders() -> dict[str, str | None]:
            return dict(connection.execute(text("SELECT recipient, sender FROM queue_recipients")).all())

        command.downgrade(config, "0009")
        connection.execute(
            text(
                "INSERT INTO queue (id, sender, created_at, next_attempt, attempts, body) VALUES ('Q', :s, 1, 1, 0, :b)"
            ),
            {"s": "sota-bounces@example.test", "b": b"\0"},
        )
        for recipient, sender in unsigned.items():
            connection.execute(
                text("INSERT INTO queue_recipients (queue_id, recipient, sender) VALUES ('Q', :r, :s)"),
                {"r": recipient, "s": sender},
            )
        command.upgrade(config, "head")
        assert senders() == signed
        # and back: the revision before reads only unsigned senders, and signs each once on the way up again
        command.downgrade(config, "0009")
        assert senders() == unsigned
        command.upgrade(config, "head")
        assert senders() == signed
    (member,) = database.read_now(lambda c: lists.members(c, found.id))
    assert member.bounce_at is None and database.read_now(lambda c: lists.refusals(c, found.id)) == []
    database.close()


def test_a_delivery_halves_the_bounce_scores_of_its_member_and_domain(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        found = lists.create_list(connection, "sota@example.test", "SOTA", "[sota:%05d]", "list", "auto", "")
        lists.add_members(connection, found.id, ["kenji@example.jp", "yuki@example.jp"])
        lists.set_member(connection, found.id, "kenji@example.jp", bounce_score=3.0, bounce_at=1.0)
        lists.set_member(connection, found.id, "yuki@example.jp", bounce_score=0.08, bounce_at=1.0)
        lists.set_refusal(connection, found.id, "example.jp", 2.0, 1.0)
        attempts.halve_bounces(Tx.over(connection), "sota@example.test", ["kenji@example.jp", "yuki@example.jp"], 0.05)
    scores = {m.address: m.bounce_score for m in database.read_now(lambda c: lists.members(c, found.id))}
    assert scores == {"kenji@example.jp": 1.5, "yuki@example.jp": 0.0}
    assert database.read_now(lambda c: lists.refusals(c, found.id)) == [lists.Refusal("example.jp", 1.0, 1.0)]
    database.close()
