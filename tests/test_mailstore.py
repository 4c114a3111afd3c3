"""store/mailstore.py as IMAP uses it: folders, flags and mod-sequences, COPY/MOVE UID maps, EXPUNGE."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Connection

from jitaku.store import Database, accounts, mailstore
from jitaku.store.mailstore import FlagState, MailboxError, NoSuchMailbox, TooManyMailboxes
from jitaku.store.transaction import tx_of
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

ALICE = "alice@example.test"
SPECIAL = [name for name, _use in mailstore.SPECIAL_FOLDERS]


def names(connection: Connection) -> list[str]:
    return [mailbox.name for mailbox in mailstore.mailboxes(connection, ALICE)]


def fill(database: Database, count: int, name: str = "INBOX") -> list[int]:
    with database.transaction() as connection:
        return [mailstore.append(connection, ALICE, f"message {n}".encode(), name) for n in range(count)]


def test_a_new_user_has_inbox_and_the_special_use_folders(database: Database) -> None:
    found = database.read_now(lambda c: mailstore.mailboxes(c, ALICE))
    assert [(m.name, m.special_use) for m in found] == [
        ("INBOX", None),
        ("Archive", "\\Archive"),
        ("Drafts", "\\Drafts"),
        ("Junk", "\\Junk"),
        ("Sent", "\\Sent"),
        ("Trash", "\\Trash"),
    ]
    assert all(m.uidnext == 1 and m.highestmodseq == 1 and m.messages == 0 for m in found)
    assert database.read_now(lambda c: mailstore.subscriptions(c, ALICE)) == sorted(m.name for m in found)


def test_mailboxes_count_messages_and_unseen_ones(database: Database) -> None:
    fill(database, 3)
    with database.transaction() as connection:
        mailstore.store_flags(connection, ALICE, "INBOX", [1, 3], ["\\Seen"], "add")
        mailstore.store_flags(connection, ALICE, "INBOX", [2], ["$Seen", "\\Flagged"], "add")  # not \Seen
    inbox = database.read_now(lambda c: mailstore.mailboxes(c, ALICE))[0]
    assert (inbox.name, inbox.messages, inbox.unseen, inbox.uidnext) == ("INBOX", 3, 1, 4)


def test_status_gives_the_items_asked_in_their_order_and_agrees_with_the_listing(database: Database) -> None:
    fill(database, 3)
    with database.transaction() as connection:
        mailstore.store_flags(connection, ALICE, "INBOX", [1], ["\\Seen", "\\Deleted"], "add")
        mailstore.store_flags(connection, ALICE, "INBOX", [2], ["$Seen"], "add")  # not \Seen
    items = ("UNSEEN", "SIZE", "DELETED", "MESSAGES", "UIDNEXT", "RECENT", "UIDVALIDITY", "HIGHESTMODSEQ")
    found = database.query_now(lambda s: mailstore.status(s, ALICE, "inbox", items))
    inbox = database.read_now(lambda c: mailstore.mailboxes(c, ALICE))[0]
    listed = [inbox.unseen, inbox.size, inbox.deleted, inbox.messages, inbox.uidnext, inbox.recent]
    assert found == ("INBOX", [*listed, inbox.uidvalidity, inbox.highestmodseq])
    assert found[1][:6] == [2, inbox.size, 1, 3, 4, 3] and inbox.size > 0
    assert database.query_now(lambda s: mailstore.status(s, ALICE, "Nowhere", ("MESSAGES",))) is None


def test_create_refuses_bad_and_taken_names_and_needs_no_parents(database: Database) -> None:
    with database.transaction() as connection:
        mailstore.create_mailbox(connection, ALICE, "a/b/c")
        mailstore.create_mailbox(connection, ALICE, "Lists", "\\Archive")
        mailstore.create_mailbox(connection, ALICE, "sent")  # only INBOX is case-insensitive
        for bad in ("", "/a", "a/", "a//b", "a\x00b", "a\r\nb", "x" * 256):
            with pytest.raises(MailboxError, match="not a mailbox name|too long"):
                mailstore.create_mailbox(connection, ALICE, bad)
        for taken in ("inbox", "Inbox", "Sent", "a/b/c"):
            with pytest.raises(MailboxError, match="exists already"):
                mailstore.create_mailbox(connection, ALICE, taken)
        with pytest.raises(MailboxError, match="special use"):
            mailstore.create_mailbox(connection, ALICE, "All", "\\All")  # type: ignore[arg-type]
        found = {m.name: m for m in mailstore.mailboxes(connection, ALICE)}
        subscribed = mailstore.subscriptions(connection, ALICE)
    assert "a" not in found and "a/b" not in found
    assert found["Lists"].special_use == "\\Archive"
    assert "a/b/c" not in subscribed and "Lists" not in subscribed  # RFC 3501 §6.3.3: CREATE does not subscribe
    assert found["a/b/c"].uidvalidity > found["INBOX"].uidvalidity  # above every one the user has


def test_rename_takes_the_children_along_and_keeps_uids(database: Database) -> None:
    with database.transaction() as connection:
        for name in ("Work", "Work/2024", "Work/2024/q1", "Workshop", "work/x"):
            mailstore.create_mailbox(connection, ALICE, name)
        mailstore.append(connection, ALICE, b"kept", "Work/2024")
        before = mailstore.select(connection, ALICE, "Work/2024")
        mailstore.rename_mailbox(connection, ALICE, "Work", "Job")
        assert mailstore.select(connection, ALICE, "Job/2024") == before
        assert sorted(names(connection)) == sorted(
            [
                "INBOX",
                "Archive",
                "Drafts",
                "Junk",
                "Sent",
                "Trash",
                "Job",
                "Job/2024",
                "Job/2024/q1",
                "Workshop",
                "work/x",
            ]
        )
        with pytest.raises(NoSuchMailbox):
            mailstore.rename_mailbox(connection, ALICE, "Work", "Other")
        with pytest.raises(MailboxError, match="'Sent' exists already"):
            mailstore.rename_mailbox(connection, ALICE, "Job", "Sent")
        with pytest.raises(MailboxError, match="'INBOX' exists already"):
            mailstore.rename_mailbox(connection, ALICE, "Job", "inbox")
        mailstore.create_mailbox(connection, ALICE, "Old/x")
        with pytest.raises(MailboxError, match="'Old/x' exists already"):  # a child would land on it
            mailstore.rename_mailbox(connection, ALICE, "work", "Old")
        mailstore.rename_mailbox(connection, ALICE, "Job", "Job/archived")  # under itself
        mailstore.rename_mailbox(connection, ALICE, "Old", "New")  # a name with only children
        renamed = {"Job/archived", "Job/archived/2024", "Job/archived/2024/q1", "New/x", "work/x"}
        assert renamed <= set(names(connection))


def test_rename_takes_the_subscriptions_along(database: Database) -> None:
    """A folder renamed in one client stays subscribed in the others, as when the subscription was the
    mailbox's own; those below it too, a deleted one's as well. INBOX keeps its own."""
    with database.transaction() as connection:
        for name in ("Work", "Work/2024", "Work/gone", "Workshop", "Job", "New", "New/x"):
            mailstore.create_mailbox(connection, ALICE, name)
            mailstore.subscribe(connection, ALICE, name)
        mailstore.delete_mailbox(connection, ALICE, "Work/gone")
        mailstore.delete_mailbox(connection, ALICE, "Job")  # its subscription stays, and is the one "Work" gets
        mailstore.create_mailbox(connection, ALICE, "Work/unsubscribed")
        mailstore.rename_mailbox(connection, ALICE, "Work", "Job")
        mailstore.rename_mailbox(connection, ALICE, "New", "New/x/y")  # under itself
        mailstore.rename_mailbox(connection, ALICE, "INBOX", "Old mail")
        assert [name for name in mailstore.subscriptions(connection, ALICE) if name not in SPECIAL] == [
            "INBOX",
            "Job",
            "Job/2024",
            "Job/gone",
            "New/x/y",
            "New/x/y/x",
            "Workshop",
        ]


def test_renaming_inbox_moves_its_messages_to_a_new_mailbox(database: Database) -> None:
    fill(database, 3)
    with database.transaction() as connection:
        mailstore.create_mailbox(connection, ALICE, "INBOX/kids")
        mailstore.store_flags(connection, ALICE, "INBOX", [2], ["\\Seen"], "add")
        inbox = mailstore.select(connection, ALICE, "INBOX")
        mailstore.rename_mailbox(connection, ALICE, "inbox", "Old mail")
        after = mailstore.select(connection, ALICE, "INBOX")
        moved = mailstore.select(connection, ALICE, "Old mail")
        assert "INBOX/kids" in names(connection)
    assert after.uids == [] and (after.uidvalidity, after.uidnext) == (inbox.uidvalidity, 4)
    assert after.highestmodseq > inbox.highestmodseq  # the expunges are changes
    assert moved.uidvalidity > inbox.uidvalidity and moved.uidnext == 4
    assert moved.flags == {1: frozenset(), 2: {"\\Seen"}, 3: frozenset()}
    bodies = [m.body for m in database.read_now(lambda c: mailstore.list_messages(c, ALICE, "Old mail"))]
    assert bodies == [b"message 0", b"message 1", b"message 2"]
    assert fill(database, 1) == [4]  # INBOX never hands out a UID twice


def test_a_mailbox_made_again_never_repeats_a_uidvalidity(database: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """RFC 3501 §2.3.1.1: a client that cached "Trips" by its UIDVALIDITY must see that the new "Trips" is
    another mailbox, even when it was made again in the same second, or after the clock went back."""
    with database.transaction() as connection:
        mailstore.create_mailbox(connection, ALICE, "Trips")
        first = mailstore.uidvalidity(connection, ALICE, "Trips")
        mailstore.delete_mailbox(connection, ALICE, "Trips")
        mailstore.create_mailbox(connection, ALICE, "Trips")
        second = mailstore.uidvalidity(connection, ALICE, "Trips")
        inbox = mailstore.uidvalidity(connection, ALICE, "INBOX")
        accounts.remove_user(connection, ALICE)
        monkeypatch.setattr(mailstore.time, "time", lambda: 1_000_000_000.0)  # 2001: a board without a clock
        accounts.add_user(connection, ALICE, None)
        again = mailstore.uidvalidity(connection, ALICE, "INBOX")
    assert inbox <= first < second < again


def test_recent_mail_belongs_to_the_first_session_that_claims_it(database: Database) -> None:
    fill(database, 2)
    examined = database.read_now(lambda c: mailstore.select(c, ALICE, "INBOX"))
    assert examined.recent_from == 1  # EXAMINE sees UIDs 1 and 2 as recent and claims nothing
    with database.transaction() as connection:
        assert mailstore.claim_recent(connection, ALICE, "INBOX", before=3) == 1  # this session's: 1 and 2
        assert mailstore.claim_recent(connection, ALICE, "INBOX", before=3) == 3  # the next one's: none
    fill(database, 2)
    with database.transaction() as connection:  # a session that saw UID 3 arrive, but not yet 4
        assert mailstore.claim_recent(connection, ALICE, "INBOX", before=4) == 3
    inbox = database.read_now(lambda c: mailstore.mailboxes(c, ALICE))[0]
    assert (inbox.messages, inbox.recent) == (4, 1)  # UID 4 is still recent to whoever looks next


def test_fetch_messages_returns_only_the_uids_asked_for(database: Database) -> None:
    fill(database, 1200)
    with database.engine.connect() as connection:
        for asked in ([1, 3, 5], [2, 1000], list(range(1, 1201, 2)), list(range(100, 1101))):
            found = mailstore.fetch_messages(connection, ALICE, "INBOX", asked, bodies=False)
            assert [message.uid for message in found] == asked
        assert mailstore.fetch_messages(connection, ALICE, "Nowhere", [1], bodies=True) == []


def test_delete_takes_the_messages_but_not_the_children(database: Database) -> None:
    with database.transaction() as connection:
        mailstore.create_mailbox(connection, ALICE, "Trips")
        mailstore.create_mailbox(connection, ALICE, "Trips/2023")
        mailstore.append(connection, ALICE, b"gone", "Trips")
        mailstore.delete_mailbox(connection, ALICE, "Trips")
        assert "Trips" not in names(connection) and "Trips/2023" in names(connection)
        with pytest.raises(NoSuchMailbox):
            mailstore.delete_mailbox(connection, ALICE, "Trips")
        with pytest.raises(MailboxError, match="INBOX cannot"):
            mailstore.delete_mailbox(connection, ALICE, "Inbox")
        mailstore.create_mailbox(connection, ALICE, "Trips")
        assert mailstore.select(connection, ALICE, "Trips").uids == []


def test_a_subscription_outlives_its_mailbox_until_the_user_unsubscribes(database: Database) -> None:
    """RFC 3501 §6.3.6: a server must not take a name off the subscription list when its mailbox goes; the
    subscription was a column of the mailbox, and went with it."""
    with database.transaction() as connection:
        mailstore.unsubscribe(connection, ALICE, "Junk")
        mailstore.unsubscribe(connection, ALICE, "Junk")  # a mailbox that is not subscribed stays so
        mailstore.create_mailbox(connection, ALICE, "Trips")
        mailstore.subscribe(connection, ALICE, "Trips")
        mailstore.subscribe(connection, ALICE, "Trips")  # once is enough
        mailstore.subscribe(connection, ALICE, "inbox")  # subscribed already, as "INBOX"
        mailstore.delete_mailbox(connection, ALICE, "Trips")
        assert mailstore.subscriptions(connection, ALICE) == ["Archive", "Drafts", "INBOX", "Sent", "Trash", "Trips"]
        with pytest.raises(NoSuchMailbox):  # only a mailbox can be subscribed, as in Dovecot
            mailstore.subscribe(connection, ALICE, "Trips")
        mailstore.unsubscribe(connection, ALICE, "Trips")
        with pytest.raises(NoSuchMailbox):  # neither subscribed nor a mailbox
            mailstore.unsubscribe(connection, ALICE, "Trips")
        assert "Trips" not in mailstore.subscriptions(connection, ALICE)


def test_a_user_subscribes_to_at_most_the_names_the_limit_allows(database: Database) -> None:
    """Subscriptions outlive mailboxes, so the bound on mailboxes does not bound them: each LSUB reads them all."""
    with database.transaction() as connection:
        for number in range(5):
            mailstore.create_mailbox(connection, ALICE, f"Trips/{number}")
            if number < 4:  # the six folders a user starts with are subscribed already
                mailstore.subscribe(connection, ALICE, f"Trips/{number}", limit=10)
            mailstore.delete_mailbox(connection, ALICE, f"Trips/{number}")
        mailstore.create_mailbox(connection, ALICE, "Trips/4")
        with pytest.raises(TooManyMailboxes, match="unsubscribe"):
            mailstore.subscribe(connection, ALICE, "Trips/4", limit=10)
        mailstore.subscribe(connection, ALICE, "Sent", limit=10)  # subscribed already: nothing to add
        mailstore.unsubscribe(connection, ALICE, "Trips/0")
        mailstore.subscribe(connection, ALICE, "Trips/4", limit=10)


def test_flags_add_remove_replace_with_a_new_modseq_per_change(database: Database) -> None:
    fill(database, 3)
    with database.transaction() as connection:
        start = mailstore.select(connection, ALICE, "INBOX").highestmodseq
        added = mailstore.store_flags(connection, ALICE, "INBOX", [1, 2, 99], ["\\seen", "$Junk"], "add")
        first = start + 1
        assert added.messages == [FlagState(1, {"\\Seen", "$Junk"}, first), FlagState(2, {"\\Seen", "$Junk"}, first)]
        assert (added.changed, added.failed) == ([1, 2], [])
        again = mailstore.store_flags(connection, ALICE, "INBOX", [1, 3], ["\\Seen"], "add")
        assert again.messages == [FlagState(1, {"\\Seen", "$Junk"}, first), FlagState(3, {"\\Seen"}, first + 1)]
        assert again.changed == [3]
        removed = mailstore.store_flags(connection, ALICE, "INBOX", [1, 2, 3], ["$Junk"], "remove")
        assert [(m.uid, m.flags, m.modseq) for m in removed.messages] == [
            (1, {"\\Seen"}, first + 2),
            (2, {"\\Seen"}, first + 2),
            (3, {"\\Seen"}, first + 1),
        ]
        replaced = mailstore.store_flags(connection, ALICE, "INBOX", [2], ["\\Flagged", "\\Answered"], "replace")
        assert replaced.messages == [FlagState(2, {"\\Answered", "\\Flagged"}, first + 3)]
        unchanged = mailstore.store_flags(connection, ALICE, "INBOX", [1, 2, 3], [], "add")
        assert unchanged.changed == [] and mailstore.select(connection, ALICE, "INBOX").highestmodseq == first + 3
        for bad in ("\\Recent", "\\Important", "two words", "a(b", ""):
            with pytest.raises(MailboxError):
                mailstore.store_flags(connection, ALICE, "INBOX", [1], [bad], "add")
        with pytest.raises(NoSuchMailbox):
            mailstore.store_flags(connection, ALICE, "Nowhere", [1], ["\\Seen"], "add")


def test_unchanged_since_leaves_messages_changed_after_it(database: Database) -> None:
    fill(database, 3)
    with database.transaction() as connection:
        seen = mailstore.select(connection, ALICE, "INBOX").highestmodseq
        mailstore.store_flags(connection, ALICE, "INBOX", [2], ["\\Seen"], "add")  # another client, meanwhile
        result = mailstore.store_flags(
            connection, ALICE, "INBOX", [1, 2, 3], ["\\Deleted"], "add", unchanged_since=seen
        )
        assert result.failed == [2] and result.changed == [1, 3]
        assert [m.uid for m in result.messages] == [1, 3]
        flags = mailstore.select(connection, ALICE, "INBOX").flags
        assert flags == {1: {"\\Deleted"}, 2: {"\\Seen"}, 3: {"\\Deleted"}}
        # RFC 7162 §3.1.3: UNCHANGEDSINCE 0 fails for every message
        assert mailstore.store_flags(connection, ALICE, "INBOX", [1], ["\\Seen"], "add", unchanged_since=0).failed == [
            1
        ]


def test_append_with_flags_and_internal_date_takes_the_next_uid_and_modseq(database: Database) -> None:
    with database.transaction() as connection:
        uid = mailstore.append(connection, ALICE, b"draft", "Drafts", ["\\Draft", "\\seen"], 1_000_000_000.5)
        assert uid == 1
        assert mailstore.append(connection, ALICE, b"second", "Drafts") == 2
        assert mailstore.append(connection, ALICE, b"delivered") == 1  # INBOX has its own UIDs
        drafts = mailstore.select(connection, ALICE, "Drafts")
        assert drafts.uids == [1, 2] and drafts.flags == {1: {"\\Draft", "\\Seen"}, 2: frozenset()}
        assert drafts.modseqs == {1: 2, 2: 3} and drafts.sizes == {1: 5, 2: 6}
        assert (drafts.uidnext, drafts.highestmodseq) == (3, 3)
        stored = mailstore.get_message(connection, ALICE, 1, "Drafts")
        assert stored is not None and stored.received_at == 1_000_000_000.5 and stored.body == b"draft"
        with pytest.raises(NoSuchMailbox):
            mailstore.append(connection, ALICE, b"x", "Nowhere")
        with pytest.raises(LookupError):  # what callers from before IMAP catch
            mailstore.append(connection, "nobody@example.test", b"x")


def test_copy_and_move_map_uids_in_source_order(database: Database) -> None:
    fill(database, 5)
    with database.transaction() as connection:
        mailstore.store_flags(connection, ALICE, "INBOX", [4], ["\\Flagged"], "add")
        mailstore.append(connection, ALICE, b"already there", "Archive")
        assert mailstore.copy(connection, ALICE, "INBOX", [4, 2, 77], "Archive") == [(2, 2), (4, 3)]
        archive = mailstore.select(connection, ALICE, "Archive")
        assert archive.flags == {1: frozenset(), 2: frozenset(), 3: {"\\Flagged"}}
        assert archive.uidnext == 4 and archive.modseqs[3] == archive.highestmodseq
        assert mailstore.select(connection, ALICE, "INBOX").uids == [1, 2, 3, 4, 5]
        inbox_modseq = mailstore.select(connection, ALICE, "INBOX").highestmodseq
        assert mailstore.move(connection, ALICE, "INBOX", [5, 1, 3], "Trash") == [(1, 1), (3, 2), (5, 3)]
        inbox = mailstore.select(connection, ALICE, "INBOX")
        assert inbox.uids == [2, 4] and inbox.highestmodseq > inbox_modseq
        trash = [m.body for m in mailstore.list_messages(connection, ALICE, "Trash")]
        assert trash == [b"message 0", b"message 2", b"message 4"]
        assert mailstore.copy(connection, ALICE, "INBOX", [1, 3], "Trash") == []  # gone already
        assert mailstore.move(connection, ALICE, "INBOX", [2], "INBOX") == [(2, 6)]  # to itself: a new UID
        with pytest.raises(NoSuchMailbox):
            mailstore.copy(connection, ALICE, "INBOX", [4], "Nowhere")
        with pytest.raises(NoSuchMailbox):
            mailstore.move(connection, ALICE, "Nowhere", [4], "Trash")


def test_a_copy_of_thousands_of_messages(database: Database) -> None:
    """More UIDs than SQLite takes parameters in one statement."""
    with database.transaction() as connection:
        for _ in range(1200):
            mailstore.append(connection, ALICE, b"x", "Junk")
        uids = list(range(1, 40_000))
        assert mailstore.move(connection, ALICE, "Junk", uids, "Trash")[-1] == (1200, 1200)
        assert mailstore.store_flags(connection, ALICE, "Trash", uids, ["\\Deleted"], "add").changed == list(
            range(1, 1201)
        )
        assert len(mailstore.expunge(connection, ALICE, "Trash", uids)) == 1200


def test_expunge_takes_only_deleted_messages_and_uid_expunge_only_those_named(database: Database) -> None:
    fill(database, 5)
    with database.transaction() as connection:
        mailstore.store_flags(connection, ALICE, "INBOX", [1, 2, 4, 5], ["\\Deleted"], "add")
        before = mailstore.select(connection, ALICE, "INBOX").highestmodseq
        assert mailstore.expunge(connection, ALICE, "INBOX", [4, 3, 2]) == [2, 4]
        after = mailstore.select(connection, ALICE, "INBOX")
        assert after.uids == [1, 3, 5] and after.highestmodseq == before + 1
        assert mailstore.expunge(connection, ALICE, "INBOX") == [1, 5]
        assert mailstore.expunge(connection, ALICE, "INBOX") == []
        assert mailstore.select(connection, ALICE, "INBOX").highestmodseq == before + 2  # nothing gone, no change


def test_remove_as_pop3_does_moves_highestmodseq_on(database: Database) -> None:
    fill(database, 3)
    with database.transaction() as connection:
        before = mailstore.select(connection, ALICE, "INBOX").highestmodseq
        assert mailstore.remove(connection, ALICE, [1, 3, 9]) == 2
        assert mailstore.remove(connection, ALICE, []) == 0
        after = mailstore.select(connection, ALICE, "INBOX")
        assert after.uids == [2] and after.highestmodseq == before + 1
        assert mailstore.maildrop(connection, ALICE).messages == [(2, len(b"message 1"))]
        assert mailstore.message_counts(connection) == [(ALICE, 1)]


def test_uidvalidity_and_uidnext_survive_reopening_the_database(tmp_path: Path) -> None:
    url = database_url(tmp_path)
    database = Database(url)
    with database.transaction() as connection:
        accounts.add_user(connection, ALICE, None)
        mailstore.create_mailbox(connection, ALICE, "Lists")
        for _ in range(3):
            mailstore.append(connection, ALICE, b"x", "Lists")
        mailstore.store_flags(connection, ALICE, "Lists", [3], ["\\Deleted"], "add")
        mailstore.expunge(connection, ALICE, "Lists")
    before = database.read_now(lambda c: mailstore.mailboxes(c, ALICE))
    database.close()
    database = Database(url)
    assert database.read_now(lambda c: mailstore.mailboxes(c, ALICE)) == before
    with database.transaction() as connection:
        assert mailstore.append(connection, ALICE, b"y", "Lists") == 4  # 3 was expunged, never given again
    database.close()


def test_a_user_has_at_most_the_mailboxes_the_limit_allows(database: Database) -> None:
    """Issue 15: mailboxes per user were uncapped, and 10,000 of them made LIST a long wait."""
    with database.transaction() as connection:
        for number in range(4):  # INBOX and the five special-use folders are six already
            mailstore.create_mailbox(connection, ALICE, f"Trips/{number}", limit=10)
        with pytest.raises(TooManyMailboxes):
            mailstore.create_mailbox(connection, ALICE, "Trips/4", limit=10)
        with pytest.raises(TooManyMailboxes):  # renaming INBOX makes a mailbox
            mailstore.rename_mailbox(connection, ALICE, "INBOX", "Old mail", limit=10)
        mailstore.rename_mailbox(connection, ALICE, "Trips", "Travel", limit=10)  # renaming others makes none
        mailstore.create_mailbox(connection, ALICE, "Trips/4")  # without a limit: as the CLI and tests do
        assert len(names(connection)) == 11


def test_fetch_messages_reads_only_what_search_reads_of_each_body(database: Database) -> None:
    with database.transaction() as connection:
        mailstore.append(connection, ALICE, b"Subject: long\r\n\r\n" + b"x" * 1000)
    read = database.read_now(lambda c: mailstore.fetch_messages(c, ALICE, "INBOX", [1], bodies=True, prefix=10))
    assert [(message.body, message.size) for message in read] == [(b"Subject: l", 1017)]


def test_changes_since_a_look_are_the_messages_changed_or_new_and_those_expunged(
    database: Database,
) -> None:
    """What a selected session reads after each command: only what moved since it last looked, so that its
    cost follows the changes, not the size of the mailbox."""
    fill(database, 5)
    before = database.read_now(lambda c: mailstore.select(c, ALICE, "INBOX"))
    since = (before.uidnext, before.highestmodseq)
    known = before.uids
    assert database.read_now(lambda c: mailstore.changes(c, ALICE, "INBOX", since, known)) is None
    with database.transaction() as connection:
        mailstore.store_flags(connection, ALICE, "INBOX", [2], ["\\Seen"], "add")
        mailstore.append(connection, ALICE, b"message 6")
    found = database.read_now(lambda c: mailstore.changes(c, ALICE, "INBOX", since, known))
    assert found is not None
    assert [(m.uid, m.flags) for m in found.messages] == [(2, frozenset({"\\Seen"})), (6, frozenset())]
    assert (found.uidnext, found.expunged) == (7, [])  # nothing the session knew of is gone
    with database.transaction() as connection:
        mailstore.store_flags(connection, ALICE, "INBOX", [3], ["\\Deleted"], "add")
        mailstore.expunge(connection, ALICE, "INBOX")
    found = database.read_now(lambda c: mailstore.changes(c, ALICE, "INBOX", since, known))
    assert found is not None
    assert found.expunged == [3]
    assert [m.uid for m in found.messages] == [2, 6]
    with database.transaction() as connection:
        mailstore.store_flags(connection, ALICE, "INBOX", [1, 2, 4, 5, 6], ["\\Deleted"], "add")
        mailstore.expunge(connection, ALICE, "INBOX")
    found = database.read_now(lambda c: mailstore.changes(c, ALICE, "INBOX", since, known))
    assert found is not None and found.expunged == [1, 2, 3, 4, 5]  # all the session knew of are gone (not 6)


def test_a_copy_the_filters_junk_lands_in_the_junk_folder_by_its_use_or_else_in_inbox(database: Database) -> None:
    from jitaku.mail import delivery

    def delivered(junk: bool) -> None:
        with database.transaction() as connection:
            delivery.commit(tx_of(connection), delivery.Delivery([delivery.Copy(ALICE, b"Subject: x\r\n\r\n", junk)]))

    def counts() -> dict[str, int]:
        return {m.name: m.messages for m in database.read_now(lambda c: mailstore.mailboxes(c, ALICE))}

    delivered(junk=True)
    delivered(junk=False)
    assert (counts()["Junk"], counts()["INBOX"]) == (1, 1)
    with database.transaction() as connection:
        mailstore.rename_mailbox(connection, ALICE, "Junk", "迷惑メール")  # keeps its special use
    delivered(junk=True)
    assert counts()["迷惑メール"] == 2
    with database.transaction() as connection:
        mailstore.delete_mailbox(connection, ALICE, "迷惑メール")
    delivered(junk=True)
    assert counts()["INBOX"] == 2  # no Junk: never lost
