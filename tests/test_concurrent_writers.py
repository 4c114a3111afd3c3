"""Several writers on one database at once: the SMTP and IMAP workers each have a writer of their own, and during a
switchover two daemons may both run a list runner. On SQLite one writer at a time holds the lock; on PostgreSQL
(READ COMMITTED) two transactions run together, and what one reads and then writes, the other may have changed.
Each test runs two threads, each with a Database of its own (its own connections and writer), on the same
mailbox, list inbox or held posts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest

from jitaku.config import Settings
from jitaku.lists import runner as runner_module
from jitaku.lists.runner import ListRunner, node_id
from jitaku.mail import dkim
from jitaku.mail.pipeline import Pipeline
from jitaku.mail.policy import Policy
from jitaku.store import Database, Tx, accounts, lists, mailstore
from jitaku.store.accounts import AccountError
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

ALICE = "alice@example.test"
T = TypeVar("T")


@pytest.fixture
def url(tmp_path: Path) -> Iterator[str]:
    """A store with one user, alice@example.test, that the tests open twice."""
    url = database_url(tmp_path)
    database = Database(url)
    with database.transaction() as connection:
        accounts.add_user(connection, ALICE, None)
    database.close()
    yield url


def together(url: str, work: Callable[[Database, threading.Barrier], T], threads: int = 2) -> list[T]:
    """WORK run in THREADS threads at once, each with a Database of its own on URL; what each returned. The
    barrier lets the threads line up before each step they are to take together."""
    barrier = threading.Barrier(threads, timeout=60)
    results: list[T | None] = [None] * threads
    errors: list[BaseException] = []

    def run(index: int) -> None:
        database = Database(url)
        try:
            results[index] = work(database, barrier)
        except BaseException as error:
            barrier.abort()
            errors.append(error)
        finally:
            database.close()

    started = [threading.Thread(target=run, args=(index,)) for index in range(threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join()
    if errors:
        raise errors[0]
    return [result for result in results if result is not None]


def writes(database: Database, jobs: list[Callable[[Tx], T]]) -> list[T]:
    """JOBS through DATABASE's writer, all handed to it at once (so that it batches them, as the daemon's
    sessions do)."""

    async def run() -> list[T]:
        return list(await asyncio.gather(*(database.transact(job) for job in jobs)))

    return asyncio.run(run())


def test_two_writers_delivering_to_one_mailbox_never_give_one_uid_twice(url: str) -> None:
    def deliver(database: Database, barrier: threading.Barrier) -> list[int]:
        uids = []
        for round_ in range(20):
            barrier.wait()
            jobs = [partial(mailstore.append, address=ALICE, body=f"{round_}.{n}".encode()) for n in range(10)]
            uids += writes(database, jobs)
        return uids

    first, second = together(url, deliver)

    assert len(first) == len(second) == 200
    assert sorted(first + second) == list(range(1, 401))  # each UID once, none skipped
    database = Database(url)
    try:
        listed = database.read_now(lambda c: mailstore.select(c, ALICE, "INBOX"))
        assert listed.uids == list(range(1, 401))
        assert listed.uidnext == 401
    finally:
        database.close()


def test_two_sessions_selecting_at_once_never_both_see_a_message_as_recent(url: str) -> None:
    """RFC 3501 §2.3.2: a message is \\Recent in one session only. Two IMAP workers' sessions select the mailbox
    as each new message arrives; each claims what is still \\Recent, and no message may be claimed by both."""

    def select_as_mail_comes(database: Database, barrier: threading.Barrier) -> list[range]:
        claimed = []
        for round_ in range(60):
            if barrier.wait() == 0:
                with database.transaction() as connection:
                    mailstore.append(connection, ALICE, f"message {round_}".encode())
            barrier.wait()
            before = database.read_now(lambda c: mailstore.state(c, ALICE, "INBOX"))[0]
            barrier.wait()
            (start,) = writes(database, [partial(mailstore.claim_recent, address=ALICE, name="INBOX", before=before)])
            claimed.append(range(start, before))
        return claimed

    first, second = together(url, select_as_mail_comes)

    seen_first = [uid for claimed in first for uid in claimed]
    seen_second = [uid for claimed in second for uid in claimed]
    assert not set(seen_first) & set(seen_second)
    assert sorted(seen_first + seen_second) == list(range(1, 61))  # each \\Recent to one session


LIST = "sota@example.test"
MEMBER = "a@example.org"
STRANGER = "z@example.org"


def post(sender: str, n: int) -> bytes:
    return f"From: <{sender}>\r\nSubject: post {n}\r\nMessage-ID: <{n}@example.org>\r\n\r\nbody {n}\r\n".encode()


@pytest.fixture
def list_url(tmp_path: Path) -> Iterator[str]:
    """A store with the list sota@example.test, whose one member is a@example.org."""
    url = database_url(tmp_path)
    database = Database(url)
    with database.transaction() as connection:
        found = lists.create_list(connection, LIST, "SOTA", "[sota:%05d]", "list", "auto", "")
        lists.add_members(connection, found.id, [MEMBER])
    database.close()
    yield url


def runner(database: Database, node: str | None = None) -> ListRunner:
    policy = Policy(Settings(domains=["example.test"]), database)
    pipeline = Pipeline("mx.example.test", database, dkim.Signer([]), lambda: None, lambda: None)
    return ListRunner(
        database,
        dkim.Signer([]),
        policy,
        pipeline,
        "mx.example.test",
        "https://mx.example.test",
        asyncio.Event(),
        print,
        node=node,
    )


def run_until_the_inbox_is_empty(
    database: Database, barrier: threading.Barrier, until: int = 0, node: str | None = None
) -> None:
    """A list runner of DATABASE's, until UNTIL items are left in the inbox."""

    async def run() -> None:
        barrier.wait()
        running = asyncio.create_task(runner(database, node).run())
        try:
            async with asyncio.timeout(60):
                while await database.query(lambda s: s.run("SELECT count(*) FROM list_inbox")[0][0]) > until:
                    await asyncio.sleep(0.05)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    asyncio.run(run())


def test_two_list_runners_on_one_inbox_handle_each_post_once(list_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Both boxes of a pair run a list runner for a moment during a switchover: each post is numbered, archived and
    held once, by one of them, and neither fails an item the other took."""
    database = Database(list_url)
    try:
        with database.transaction() as connection:
            for n in range(40):
                sender = STRANGER if n % 4 == 0 else MEMBER  # a stranger's post is held for the owners
                lists.add_inbox(connection, LIST, "post", LIST, sender, post(sender, n), time.time())

        with caplog.at_level(logging.INFO, logger="jitaku"):
            together(list_url, run_until_the_inbox_is_empty)

        found = database.read_now(lambda c: lists.get_list(c, LIST))
        archived = database.read_now(lambda c: lists.posts(c, found.id))
        assert sorted(p.subject for p in archived) == sorted(f"post {n}" for n in range(40) if n % 4)
        assert [p.number for p in archived] == list(range(1, 31))
        held = database.read_now(lambda c: lists.held(c, found.id))
        assert sorted(h.subject for h in held) == sorted(f"post {n}" for n in range(0, 40, 4))
        assert len({h.id for h in held}) == 10
        failures = [r.getMessage() for r in caplog.records if "list_error" in r.getMessage()]
        assert failures == []
    finally:
        database.close()


def test_two_runners_taking_from_one_inbox_never_take_one_item_twice(list_url: str) -> None:
    database = Database(list_url)
    try:
        with database.transaction() as connection:
            for n in range(100):
                lists.add_inbox(connection, LIST, "post", LIST, MEMBER, post(MEMBER, n), time.time())
    finally:
        database.close()

    def take_all(database: Database, barrier: threading.Barrier) -> list[int]:
        taken: list[int] = []
        while True:
            barrier.wait()
            (item,) = writes(database, [partial(lists.take_inbox, now=time.time(), lease_seconds=60)])
            if item is None:
                return taken
            taken.append(item.id)

    first, second = together(list_url, take_all)

    assert not set(first) & set(second)
    assert len(first) + len(second) == 100


def test_an_inbox_item_is_ended_only_by_the_runner_that_holds_it(list_url: str) -> None:
    """A runner whose lease ran out while it worked finds its commit refused: the item is the other runner's."""
    from sqlalchemy import text

    database = Database(list_url)
    try:
        with database.transaction() as connection:
            lists.add_inbox(connection, LIST, "post", LIST, MEMBER, post(MEMBER, 1), 100.0)
            slow = lists.take_inbox(connection, now=100.0, lease_seconds=60)
            assert slow is not None
            assert lists.take_inbox(connection, now=159.0, lease_seconds=60) is None  # still leased
            assert lists.next_inbox(connection, 159.0) is None
            connection.execute(text("UPDATE list_leases SET until = until - 61"))  # a minute later
            other = lists.take_inbox(connection, now=161.0, lease_seconds=60)
            assert other is not None and other.id == slow.id

            with pytest.raises(lists.LeaseLost):
                lists.remove_inbox(connection, slow.id, slow.lease)
            lists.inbox_failed(connection, slow.id, 500.0, slow.lease)  # nothing: the other runner has it
            lists.remove_inbox(connection, other.id, other.lease)
            assert lists.next_inbox(connection, 10.0**10) is None
    finally:
        database.close()


def test_a_held_post_id_is_never_given_again(list_url: str) -> None:
    """A moderator's `jitaku list approve sota 2` must approve the post held as 2 or nothing: never a later one
    that took its id once it was approved, expired or rejected."""
    database = Database(list_url)
    try:
        with database.transaction() as connection:
            found = lists.get_list(connection, LIST)
            given = []
            for n in range(3):
                given.append(lists.new_held_id(connection))
                lists.hold(connection, given[-1], found.id, STRANGER, "z", f"post {n}", "not a member", b"x")
            lists.take_held(connection, found.id, given[-1])  # approved: the highest id is gone
            lists.take_held(connection, found.id, given[0])
            again = lists.new_held_id(connection)
            assert again not in given
            assert again > max(given)
    finally:
        database.close()


def test_two_runners_holding_posts_at_once_never_share_an_id(list_url: str) -> None:
    def hold_some(database: Database, barrier: threading.Barrier) -> list[int]:
        given = []
        for _ in range(50):
            barrier.wait()
            given += writes(database, [lists.new_held_id])
        return given

    first, second = together(list_url, hold_some)

    assert sorted(first + second) == list(range(1, 101))


def test_two_moderators_approving_one_held_post_at_once_approve_it_once(list_url: str) -> None:
    database = Database(list_url)
    try:
        with database.transaction() as connection:
            list_id = lists.get_list(connection, LIST).id
            for n in range(30):
                lists.hold(connection, lists.new_held_id(connection), list_id, STRANGER, "z", f"{n}", "why", b"x")
    finally:
        database.close()

    def approve_all(database: Database, barrier: threading.Barrier) -> list[int]:
        approved = []
        for held_id in range(1, 31):
            barrier.wait()
            try:
                writes(database, [partial(lists.take_held, list_id=list_id, held_id=held_id)])
            except AccountError:
                continue
            approved.append(held_id)
        return approved

    first, second = together(list_url, approve_all)

    assert sorted(first + second) == list(range(1, 31))


def test_held_posts_numbered_before_the_upgrade_keep_their_ids_and_new_ones_come_after(list_url: str) -> None:
    """0025: the counter starts above the highest id held when the store is upgraded; the leases go and come
    back."""
    from alembic import command
    from sqlalchemy import text

    from jitaku.store.engine import migrations_config

    database = Database(list_url)
    try:
        config = migrations_config()
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0024")
            list_id = lists.get_list(connection, LIST).id
            for held_id in (3, 7):
                lists.hold(connection, held_id, list_id, STRANGER, "z", f"post {held_id}", "why", b"x")
            command.upgrade(config, "head")
        with database.transaction() as connection:
            assert lists.new_held_id(connection) == 1008  # 8 to 1007 may have been given to posts decided on since
            lists.add_inbox(connection, LIST, "post", LIST, MEMBER, post(MEMBER, 1), 1.0)
            assert lists.take_inbox(connection, now=2.0, lease_seconds=60) is not None
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0024")
            assert connection.execute(text("SELECT count(*) FROM list_inbox")).scalar() == 1
            command.upgrade(config, "head")
        assert [h.id for h in database.read_now(lambda c: lists.held(c, list_id))] == [3, 7]
    finally:
        database.close()


def test_two_sessions_changing_flags_of_one_message_at_once_lose_neither_change(url: str) -> None:
    """A phone marks the messages read while a desktop flags them, each through its own IMAP worker: every
    message ends with both flags."""
    database = Database(url)
    try:
        with database.transaction() as connection:
            for n in range(40):
                mailstore.append(connection, ALICE, f"message {n}".encode())
    finally:
        database.close()

    def mark(database: Database, barrier: threading.Barrier) -> None:
        flag = "\\Seen" if barrier.wait() == 0 else "\\Flagged"
        for uid in range(1, 41):
            barrier.wait()
            store = partial(mailstore.store_flags, address=ALICE, name="INBOX", uids=[uid], flags=[flag], mode="add")
            writes(database, [store])

    together(url, mark)

    database = Database(url)
    try:
        selected = database.read_now(lambda c: mailstore.select(c, ALICE, "INBOX"))
        assert {uid: selected.flags[uid] for uid in selected.uids} == {
            uid: frozenset({"\\Seen", "\\Flagged"}) for uid in range(1, 41)
        }
    finally:
        database.close()


def test_two_batches_storing_unchanged_flags_in_two_mailboxes_in_opposite_orders_never_deadlock(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Each worker's writer commits its sessions' jobs together: one batch marks read what is read in INBOX, then in
    Other, while another worker's batch does so the other way round. Changing nothing, neither locks a mailbox, so
    neither waits for the other (on PostgreSQL a deadlock undid one batch's job, to be run again)."""
    if not url.startswith("postgresql"):
        pytest.skip("one SQLite writer at a time: its batches never run together")
    database = Database(url)
    try:
        with database.transaction() as connection:
            mailstore.create_mailbox(connection, ALICE, "Other")
            for name in ("INBOX", "Other"):
                mailstore.append(connection, ALICE, b"message", name=name, flags=["\\Seen"])
    finally:
        database.close()
    middle = threading.Barrier(2, timeout=5)

    def batch(database: Database, barrier: threading.Barrier) -> None:
        order = ["INBOX", "Other"] if barrier.wait() == 0 else ["Other", "INBOX"]

        def job(tx: Tx) -> None:
            for name in order:
                mailstore.store_flags(tx, ALICE, name, [1], ["\\Seen"], "add")
                with contextlib.suppress(threading.BrokenBarrierError):  # a job run again runs alone
                    middle.wait()

        writes(database, [job])

    with caplog.at_level(logging.INFO, logger="jitaku"):
        together(url, batch)

    assert [r.getMessage() for r in caplog.records if "store_conflict" in r.getMessage()] == []


def test_two_sessions_moving_one_message_at_once_move_it_once(url: str) -> None:
    """Both of a user's clients move a message to Trash at once: it is there once, not twice."""
    database = Database(url)
    try:
        with database.transaction() as connection:
            for n in range(30):
                mailstore.append(connection, ALICE, f"message {n}".encode())
    finally:
        database.close()

    def move(database: Database, barrier: threading.Barrier) -> list[int]:
        moved = []
        for uid in range(1, 31):
            barrier.wait()
            (pairs,) = writes(
                database, [partial(mailstore.move, address=ALICE, source="INBOX", uids=[uid], into="Trash")]
            )
            moved += [old for old, _new in pairs]
        return moved

    first, second = together(url, move)

    assert sorted(first + second) == list(range(1, 31))
    database = Database(url)
    try:
        assert database.read_now(lambda c: mailstore.select(c, ALICE, "INBOX")).uids == []
        assert len(database.read_now(lambda c: mailstore.select(c, ALICE, "Trash")).uids) == 30
    finally:
        database.close()


def test_a_list_runner_starting_takes_the_items_it_held_before_a_restart(list_url: str, tmp_path: Path) -> None:
    """The daemon was killed with a post leased to its runner: once it starts again its runner posts it at once,
    not once the lease runs out."""
    node = node_id(tmp_path)
    database = Database(list_url)
    try:
        with database.transaction() as connection:
            lists.add_inbox(connection, LIST, "post", LIST, MEMBER, post(MEMBER, 1), time.time())
            assert lists.take_inbox(connection, time.time(), 3600, node) is not None  # then killed
        run_until_the_inbox_is_empty(database, threading.Barrier(1), node=node_id(tmp_path))
        found = database.read_now(lambda c: lists.get_list(c, LIST))
        assert [p.subject for p in database.read_now(lambda c: lists.posts(c, found.id))] == ["post 1"]
    finally:
        database.close()


def test_a_list_runner_starting_leaves_the_items_another_daemon_holds(list_url: str, tmp_path: Path) -> None:
    """Two daemons share the database: one starting (or restarting) lets go of its own leases only, not of the
    post the other is working on."""
    database = Database(list_url)
    try:
        with database.transaction() as connection:
            lists.add_inbox(connection, LIST, "post", LIST, MEMBER, post(MEMBER, 1), time.time())
            lists.add_inbox(connection, LIST, "post", LIST, MEMBER, post(MEMBER, 2), time.time())
            assert lists.take_inbox(connection, time.time(), 3600, node_id(tmp_path / "other")) is not None
        run_until_one_is_posted = partial(run_until_the_inbox_is_empty, until=1, node=node_id(tmp_path / "this"))
        run_until_one_is_posted(database, threading.Barrier(1))
        found = database.read_now(lambda c: lists.get_list(c, LIST))
        assert [p.subject for p in database.read_now(lambda c: lists.posts(c, found.id))] == ["post 2"]
        assert database.read_now(lambda c: lists.next_inbox(c, time.time())) is None  # post 1 is still the other's
    finally:
        database.close()


def test_a_lease_is_timed_by_the_databases_clock(list_url: str) -> None:
    """Two boxes share a PostgreSQL server, one's clock an hour behind the other's: a lease taken on either holds
    for its time on both."""
    database = Database(list_url)
    try:
        with database.transaction() as connection:
            lists.add_inbox(connection, LIST, "post", LIST, MEMBER, post(MEMBER, 1), 0.0)
            assert lists.take_inbox(connection, time.time() - 3600, 60) is not None  # the box behind
            assert lists.take_inbox(connection, time.time(), 60) is None
    finally:
        database.close()


def test_a_post_taking_longer_than_a_lease_is_posted_once_by_one_of_two_runners(
    list_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A post to a large list takes longer than LEASE_SECONDS: its runner renews the lease as it works, and the
    other runner never takes it (which would do it again, and lose it in turn, for ever)."""
    monkeypatch.setattr(runner_module, "LEASE_SECONDS", 0.4)
    handle = ListRunner._handle

    async def slow(self: ListRunner, item: lists.InboxItem) -> None:
        await asyncio.sleep(1.5)
        await handle(self, item)

    monkeypatch.setattr(ListRunner, "_handle", slow)
    database = Database(list_url)
    try:
        with database.transaction() as connection:
            lists.add_inbox(connection, LIST, "post", LIST, MEMBER, post(MEMBER, 1), time.time())
        with caplog.at_level(logging.INFO, logger="jitaku"):
            together(list_url, run_until_the_inbox_is_empty)
        found = database.read_now(lambda c: lists.get_list(c, LIST))
        assert [p.subject for p in database.read_now(lambda c: lists.posts(c, found.id))] == ["post 1"]
        assert [r.getMessage() for r in caplog.records if "taken_elsewhere" in r.getMessage()] == []
    finally:
        database.close()


def test_a_post_whose_lease_is_lost_each_time_is_held_in_the_end(list_url: str) -> None:
    """Losing its lease counts as a failed attempt: after MAX_ATTEMPTS the post is held for the owners rather
    than passed from runner to runner for ever."""
    database = Database(list_url)
    try:
        with database.transaction() as connection:
            lists.add_inbox(connection, LIST, "post", LIST, MEMBER, post(MEMBER, 1), time.time())
            for _attempt in range(runner_module.MAX_ATTEMPTS):
                lists.inbox_lost(connection, lists.next_inbox(connection, time.time()) or 0)
        run_until_the_inbox_is_empty(database, threading.Barrier(1))
        found = database.read_now(lambda c: lists.get_list(c, LIST))
        assert database.read_now(lambda c: lists.posts(c, found.id)) == []
        assert [h.subject for h in database.read_now(lambda c: lists.held(c, found.id))] == ["post 1"]
    finally:
        database.close()
