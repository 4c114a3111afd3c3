"""SELECT of a mailbox selected before (mail/imap/selections.py, mailstore.select's BEFORE): it reads what changed
since, and must say exactly what a SELECT that reads the whole mailbox says, whoever changed it meanwhile."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitaku import passwords
from jitaku.mail.imap.selections import Selections
from jitaku.store import Database, accounts, mailstore
from jitaku.store.mailstore import Selected
from tests.postgres import database_url
from tests.test_imap_session import answers, converse

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)

ALICE = "alice@example.test"
FLAGS = ["\\Seen", "\\Deleted", "\\Flagged", "$Label1", "$Junk"]
_names = itertools.count()

Step = tuple[Any, ...]  # what to do, and with what
steps = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 4)),
        st.tuples(
            st.just("flags"),
            st.lists(st.integers(0, 30), max_size=5),
            st.lists(st.sampled_from(FLAGS), max_size=3),
            st.sampled_from(["add", "remove", "replace"]),
        ),
        st.tuples(st.just("expunge"), st.lists(st.integers(0, 30), min_size=1, max_size=4)),
        st.tuples(st.just("expunge deleted")),
        st.tuples(st.just("claim recent")),
        st.tuples(st.just("select")),
        st.tuples(st.just("deleted and made again")),
    ),
    max_size=25,
)


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = Database(database_url(tmp_path_factory.mktemp("selections")))
    with database.transaction() as connection:
        accounts.add_user(connection, ALICE, None)
    yield database
    database.close()


def fresh(database: Database, name: str) -> Selected:
    return database.query_now(lambda s: mailstore.select(s, ALICE, name))


def select_again(database: Database, selections: Selections, name: str) -> Selected:
    """A SELECT as mailboxes.select makes it, from what the process kept."""
    before = selections.kept(ALICE, name)
    return selections.keep(ALICE, name, database.query_now(lambda s: mailstore.select(s, ALICE, name, before)))


def change(database: Database, name: str, step: Step) -> None:
    """STEP done straight in the store, as another session or process (a delivery, the CLI) does it."""
    with database.transaction() as connection:
        uids = mailstore.select(connection, ALICE, name).uids
        picked = (
            sorted({uids[index % len(uids)] for index in step[1]}) if uids and step[0] in ("flags", "expunge") else []
        )
        if step[0] == "append":
            for number in range(step[1]):
                mailstore.append(connection, ALICE, b"Subject: %d\r\n\r\nhi\r\n" % number, name)
        elif step[0] == "flags" and picked:
            mailstore.store_flags(connection, ALICE, name, picked, step[2], step[3])
        elif step[0] == "expunge" and picked:  # UID EXPUNGE: those of the \\Deleted ones
            mailstore.store_flags(connection, ALICE, name, picked, ["\\Deleted"], "add")
            mailstore.expunge(connection, ALICE, name, picked)
        elif step[0] == "expunge deleted":
            mailstore.expunge(connection, ALICE, name)
        elif step[0] == "claim recent":
            mailstore.claim_recent(connection, ALICE, name, mailstore.select(connection, ALICE, name).uidnext)
        elif step[0] == "deleted and made again":
            mailstore.delete_mailbox(connection, ALICE, name)
            mailstore.create_mailbox(connection, ALICE, name)
            mailstore.append(connection, ALICE, b"Subject: anew\r\n\r\nhi\r\n", name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=steps)
def test_a_select_from_what_was_kept_equals_one_that_reads_the_whole_mailbox(
    database: Database, steps: list[Step]
) -> None:
    name = f"box{next(_names)}"
    with database.transaction() as connection:
        mailstore.create_mailbox(connection, ALICE, name)
    selections = Selections()
    for step in steps:
        if step[0] == "select":
            again = select_again(database, selections, name)
            assert asdict(again) == asdict(fresh(database, name))
            # what the session's view then does to it is its own: nothing kept changes
            again.uids.clear()
            again.flags.clear()
            again.modseqs.clear()
            again.sizes.clear()
            again.keywords.add("$Mine")
        else:
            change(database, name, step)
    assert asdict(select_again(database, selections, name)) == asdict(fresh(database, name))


def test_what_is_kept_is_bounded_the_least_recently_selected_going_first(database: Database) -> None:
    with database.transaction() as connection:
        for name in ("small1", "small2", "large"):
            mailstore.create_mailbox(connection, ALICE, name)
            for _ in range(3 if name != "large" else 6):
                mailstore.append(connection, ALICE, b"Subject: x\r\n\r\nhi\r\n", name)
    selections = Selections(mailboxes=2, uids=7)
    select_again(database, selections, "small1")
    select_again(database, selections, "small2")
    select_again(database, selections, "small1")  # small2 is now the least recently selected
    select_again(database, selections, "large")  # 3 + 6 UIDs are too many: small2 goes, then small1
    assert [selections.kept(ALICE, name) is not None for name in ("small1", "small2", "large")] == [
        False,
        False,
        True,
    ]
    assert select_again(database, Selections(mailboxes=2, uids=5), "large") == fresh(database, "large")


def test_a_second_select_says_what_a_new_session_of_a_new_process_says(tmp_path: Path) -> None:
    """A session changes the mailbox, so does another process, and the session selects it again: every line
    of the answer (EXISTS, RECENT, UNSEEN, UIDNEXT, HIGHESTMODSEQ, FLAGS) is as a fresh process gives it."""
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, ALICE, passwords.hash_password("secret"))
        for number in range(6):
            mailstore.append(connection, ALICE, b"Subject: %d\r\n\r\nhello\r\n" % number)
        mailstore.store_flags(connection, ALICE, "INBOX", [1, 2, 3, 4, 5, 6], ["\\Seen"], "add")

    def another_process() -> None:
        with database.transaction() as connection:
            mailstore.store_flags(connection, ALICE, "INBOX", [1], ["\\Seen"], "remove")
            mailstore.store_flags(connection, ALICE, "INBOX", [5], ["$Important"], "add")
            mailstore.store_flags(connection, ALICE, "INBOX", [2], ["\\Deleted"], "add")
            mailstore.expunge(connection, ALICE, "INBOX", [2])
            mailstore.append(connection, ALICE, b"Subject: new\r\n\r\nhello\r\n")

    received = asyncio.run(
        converse(
            database,
            b"a LOGIN alice@example.test secret",
            b"b SELECT INBOX",
            b"c STORE 3 +FLAGS (\\Deleted $Later)",
            b"d EXPUNGE",
            b"e EXAMINE INBOX",
            another_process,
            b"f EXAMINE INBOX",
            b"g LOGOUT",
        )
    )
    again = answers(received, b"f")
    new = answers(asyncio.run(converse(database, b"a LOGIN alice@example.test secret", b"f EXAMINE INBOX")), b"f")
    assert again[0] == b"* OK [CLOSED] the mailbox selected before is closed"
    assert again[1:] == new
    assert b"* 5 EXISTS" in again and b"* OK [UNSEEN 1] first unseen" in again
    assert b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)" in again  # $Later went with 3
    database.close()
