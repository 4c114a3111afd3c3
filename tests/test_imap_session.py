"""What the IMAP server does with a connection that idles or speaks nonsense, in process: the timers are
shortened here, which a running daemon's cannot be."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from pathlib import Path

import pytest

from jitaku import passwords
from jitaku.config import ImapSettings, LoginSettings
from jitaku.mail.imap import server, session
from jitaku.mail.login import Authenticator, Logins, Sessions
from jitaku.passwords import Checker
from jitaku.ratelimit import LoginLimiter
from jitaku.store import Database, accounts, mailstore
from tests.postgres import database_url

pytestmark = pytest.mark.both_databases  # the store's: run on PostgreSQL too (scripts/test)


def logins(database: Database) -> Logins:
    return Logins(Authenticator(database, LoginLimiter(database, LoginSettings()), Checker(1, 0)), Sessions())


async def converse(database: Database, *steps: bytes | Callable[[], object]) -> list[bytes]:
    """Connect and send each command, reading its answer before the next goes; a callable step runs between
    two commands (a change another session makes, done in the store). What came back, CRLFs taken off."""
    imap = server.ImapServer(database, logins(database), None)
    listener = await asyncio.start_server(functools.partial(imap.serve, implicit_tls=False), "127.0.0.1", 0)
    reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
    received = [(await reader.readline()).rstrip(b"\r\n")]
    for step in steps:
        if not isinstance(step, bytes):
            step()
            continue
        writer.write(step + b"\r\n")
        tag = step.split(b" ", 1)[0] + b" "
        while not received[-1].startswith(tag):
            received.append((await asyncio.wait_for(reader.readline(), 10)).rstrip(b"\r\n"))
    writer.close()
    listener.close()
    return received


async def talk(database: Database, *lines: bytes) -> list[bytes]:
    """Connect, send LINES, and read until the server closes the connection."""
    imap = server.ImapServer(database, logins(database), None)
    listener = await asyncio.start_server(functools.partial(imap.serve, implicit_tls=False), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"".join(line + b"\r\n" for line in lines))
    received = (await asyncio.wait_for(reader.read(), 10)).splitlines()
    writer.close()
    listener.close()
    return received


def test_a_connection_that_does_not_log_in_is_closed_after_the_login_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "LOGIN_TIMEOUT", 0.3)
    database = Database(database_url(tmp_path))
    received = asyncio.run(talk(database, b"a1 NOOP"))
    assert received[1:] == [b"a1 OK NOOP completed", b"* BYE autologout: idle too long"]
    received = asyncio.run(talk(database, b"a2 LOGIN {5}"))  # and the literal never comes
    assert received[1:] == [b"+ go ahead", b"* BYE autologout: idle too long"]
    database.close()


def test_twenty_bad_commands_in_a_row_close_the_connection(tmp_path: Path) -> None:
    database = Database(database_url(tmp_path))
    received = asyncio.run(talk(database, *([b"a1 FROB"] * 10 + [b"a2 NOOP"] + [b"a3 FROB"] * 21)))
    assert received[11] == b"a2 OK NOOP completed"  # an answer that is not BAD starts the count again
    assert received[12:] == [b"a3 BAD unknown command FROB"] * 20 + [b"* BYE too many invalid commands"]
    database.close()


def test_a_search_or_list_past_its_time_answers_no_limit_and_the_session_goes_on(tmp_path: Path) -> None:
    """[imap] max_command_time bounds the work a SEARCH or LIST does in its worker thread (issue 15)."""
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", passwords.hash_password("secret"))
        for number in range(3):
            mailstore.append(connection, "alice@example.test", b"Subject: %d\r\n\r\nhello\r\n" % number)

    async def run(settings: ImapSettings) -> list[bytes]:
        imap = server.ImapServer(database, logins(database), None, settings)
        listener = await asyncio.start_server(functools.partial(imap.serve, implicit_tls=False), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        writer.write(b"a LOGIN alice@example.test secret\r\nb SELECT INBOX\r\nc SEARCH TEXT hello\r\n")
        writer.write(b'd LIST "" *\r\ne SEARCH ALL\r\nf LOGOUT\r\n')
        received = (await asyncio.wait_for(reader.read(), 10)).splitlines()
        writer.close()
        listener.close()
        return [line for line in received if line[:1] in b"cdef" or line.startswith(b"* SEARCH")]

    assert asyncio.run(run(ImapSettings(max_command_time=1e-9))) == [
        b"c NO [LIMIT] the search took too long: narrow it, or search fewer messages",
        b"d NO [LIMIT] listing took too long: ask for fewer mailboxes",
        b"e NO [LIMIT] the search took too long: narrow it, or search fewer messages",
        b"f OK LOGOUT completed",
    ]
    assert asyncio.run(run(ImapSettings()))[:3] == [b"* SEARCH 1 2 3", b"c OK SEARCH completed", b"d OK LIST completed"]
    database.close()


def test_a_missing_mailbox_is_nonexistent_unless_creating_it_would_help(tmp_path: Path) -> None:
    """RFC 5530: TRYCREATE is for APPEND, COPY and MOVE to a mailbox that CREATE would make; DELETE, RENAME
    and UNSUBSCRIBE got it too. A name no mailbox can have is NO [CANNOT], and no BAD to count."""
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", passwords.hash_password("secret"))
    commands = [b"DELETE Nowhere", b"RENAME Nowhere Elsewhere", b"SUBSCRIBE Nowhere", b"UNSUBSCRIBE Nowhere"]
    commands += [b"APPEND Nowhere {1+}\r\nx", b"SELECT &Jjo", b"LOGOUT"]
    received = asyncio.run(
        talk(database, b"a LOGIN alice@example.test secret", *(b"t%d " % n + line for n, line in enumerate(commands)))
    )
    assert [line.partition(b"]")[0] for line in received if line.startswith(b"t")] == [
        b"t0 NO [NONEXISTENT",
        b"t1 NO [NONEXISTENT",
        b"t2 NO [NONEXISTENT",
        b"t3 NO [NONEXISTENT",
        b"t4 NO [TRYCREATE",
        b"t5 NO [CANNOT",
        b"t6 OK LOGOUT completed",
    ]
    database.close()


def mailbox_of(tmp_path: Path, count: int) -> Database:
    """A store where alice (password "secret") has COUNT messages in INBOX, with mod-sequences 2 to COUNT + 1."""
    database = Database(database_url(tmp_path))
    with database.transaction() as connection:
        accounts.add_user(connection, "alice@example.test", passwords.hash_password("secret"))
        for number in range(count):
            mailstore.append(connection, "alice@example.test", b"Subject: %d\r\n\r\nhello\r\n" % number)
    return database


def answers(received: list[bytes], tag: bytes) -> list[bytes]:
    """The untagged lines a command brought, and its tagged one: what follows the previous tagged line."""
    end = next(index for index, line in enumerate(received) if line.startswith(tag + b" "))
    start = max((index for index, line in enumerate(received[:end]) if not line.startswith((b"*", b"+"))), default=0)
    return received[start + 1 : end + 1]


@pytest.mark.parametrize(
    "command",
    [
        b"FETCH 1 (MODSEQ)",
        b"FETCH 1:* (FLAGS) (CHANGEDSINCE 3)",
        b"STORE 1 (UNCHANGEDSINCE 99) +FLAGS.SILENT (\\Seen)",
        b"SEARCH MODSEQ 1",
        b"STATUS INBOX (HIGHESTMODSEQ)",
    ],
)
def test_a_condstore_enabling_command_says_highestmodseq_once_and_later_fetches_carry_modseq(
    tmp_path: Path, command: bytes
) -> None:
    """RFC 7162 §3.1: these commands turn CONDSTORE on as ENABLE does; in a selected mailbox the first one says
    where the mailbox's mod-sequences stand, before its own answers."""
    database = mailbox_of(tmp_path, 3)
    commands = [b"c " + command, b"d STORE 2 +FLAGS (\\Flagged)", b"e FETCH 3 (MODSEQ)", b"f LOGOUT"]
    received = asyncio.run(talk(database, b"a LOGIN alice@example.test secret", b"b SELECT INBOX", *commands))
    assert answers(received, b"c")[0] == b"* OK [HIGHESTMODSEQ 4] highest"
    assert answers(received, b"d")[0].startswith(b"* 2 FETCH (FLAGS (\\Flagged \\Recent) MODSEQ (")
    assert answers(received, b"e") == [b"* 3 FETCH (MODSEQ (4))", b"e OK FETCH completed"]
    said = [line for line in received if line.startswith(b"* OK [HIGHESTMODSEQ")]
    assert len(said) == 2  # SELECT's, and c's: once
    database.close()


def test_esearch_by_modseq_says_the_modseq_of_what_it_reports(tmp_path: Path) -> None:
    """RFC 7162 §3.1.5: MIN or MAX alone give their message's mod-sequence, ALL and COUNT the highest found."""
    database = mailbox_of(tmp_path, 4)  # mod-sequences 2, 3, 4, 5: message 2 is made the highest
    commands = [b"c STORE 2 +FLAGS (\\Seen)", b"d SEARCH RETURN (MIN) MODSEQ 3", b"e SEARCH RETURN (MAX) 1:3 MODSEQ 3"]
    commands += [b"f SEARCH RETURN (MIN MAX) 3:4 MODSEQ 1", b"g UID SEARCH RETURN (COUNT) MODSEQ 1"]
    commands += [b"h SEARCH RETURN () MODSEQ 99", b"i SEARCH MODSEQ 3", b"j LOGOUT"]
    received = asyncio.run(talk(database, b"a LOGIN alice@example.test secret", b"b SELECT INBOX", *commands))
    assert [line for line in received if line.startswith((b"* ESEARCH", b"* SEARCH"))] == [
        b'* ESEARCH (TAG "d") MIN 2 MODSEQ 6',
        b'* ESEARCH (TAG "e") MAX 3 MODSEQ 4',
        b'* ESEARCH (TAG "f") MIN 3 MAX 4 MODSEQ 5',
        b'* ESEARCH (TAG "g") UID COUNT 4 MODSEQ 6',
        b'* ESEARCH (TAG "h")',
        b"* SEARCH 2 3 4 (MODSEQ 6)",
    ]
    database.close()


def test_flags_lists_the_keywords_and_a_new_one_is_listed_before_it_is_shown(tmp_path: Path) -> None:
    """RFC 3501 §7.2.6: FLAGS lists every flag a FETCH may show, and PERMANENTFLAGS every keyword a client may
    keep; a STORE or an APPEND that brings a new keyword says both again, before the FETCH or EXISTS."""
    database = mailbox_of(tmp_path, 2)
    with database.transaction() as connection:
        mailstore.store_flags(connection, "alice@example.test", "INBOX", [1], ["$Alpha"], "add")
    system = b"\\Answered \\Flagged \\Deleted \\Seen \\Draft"
    received = asyncio.run(
        talk(
            database,
            b"a LOGIN alice@example.test secret",
            b"b EXAMINE INBOX",
            b"c SELECT INBOX",
            b"d STORE 2 +FLAGS ($Beta)",
            b"e STORE 1:2 -FLAGS ($Alpha $Beta)",
            b"f APPEND INBOX ($Gamma) {20+}\r\nSubject: xyz\r\n\r\nhi\r\n",
            b"g LOGOUT",
        )
    )
    assert answers(received, b"b")[:2] == [
        b"* FLAGS (" + system + b" $Alpha)",
        b"* OK [PERMANENTFLAGS ()] flags you can keep",
    ]
    assert answers(received, b"c")[1:3] == [  # after [CLOSED]
        b"* FLAGS (" + system + b" $Alpha)",
        b"* OK [PERMANENTFLAGS (" + system + b" $Alpha \\*)] flags you can keep",
    ]
    assert answers(received, b"d") == [
        b"* FLAGS (" + system + b" $Alpha $Beta)",
        b"* OK [PERMANENTFLAGS (" + system + b" $Alpha $Beta \\*)] flags you can keep",
        b"* 2 FETCH (FLAGS ($Beta \\Recent))",
        b"d OK STORE completed",
    ]
    assert answers(received, b"e")[:2] == [b"* 1 FETCH (FLAGS (\\Recent))", b"* 2 FETCH (FLAGS (\\Recent))"]
    assert answers(received, b"f")[:3] == [  # the keywords no message has now are still listed: never fewer
        b"* FLAGS (" + system + b" $Alpha $Beta $Gamma)",
        b"* OK [PERMANENTFLAGS (" + system + b" $Alpha $Beta $Gamma \\*)] flags you can keep",
        b"* 3 EXISTS",
    ]
    database.close()


def test_search_answers_from_the_view_for_a_message_another_session_expunged(tmp_path: Path) -> None:
    """RFC 3501 §7.4.1: no EXPUNGE during SEARCH or FETCH, so the message is still the session's to search:
    by flags, UID, number, size or mod-sequence it is found as before; by its text, which is gone, it cannot be,
    and the answer says so with RFC 5530's EXPUNGEISSUED. FETCH says the same of the data it could not send."""
    database = mailbox_of(tmp_path, 3)
    alice = "alice@example.test"
    with database.transaction() as connection:
        mailstore.store_flags(connection, alice, "INBOX", [2], ["\\Flagged"], "add")

    def expunge_message_two() -> None:
        with database.transaction() as connection:
            mailstore.store_flags(connection, alice, "INBOX", [2], ["\\Deleted"], "add")
            mailstore.expunge(connection, alice, "INBOX")

    received = asyncio.run(
        converse(
            database,
            b"a LOGIN alice@example.test secret",
            b"b SELECT INBOX",
            expunge_message_two,
            b"c SEARCH FLAGGED",
            b"d SEARCH 2 LARGER 1 UNDELETED",
            b"e SEARCH SUBJECT 1",  # message 2's
            b"f SEARCH RETURN (COUNT) TEXT hello",
            b"g FETCH 1:3 (FLAGS)",
            b"h NOOP",
            b"i SEARCH SUBJECT 1",
            b"j LOGOUT",
        )
    )
    assert answers(received, b"c") == [b"* SEARCH 2", b"c OK SEARCH completed"]
    assert answers(received, b"d") == [b"* SEARCH 2", b"d OK SEARCH completed"]  # as the view shows it
    gone = b"OK [EXPUNGEISSUED] messages another session expunged could not be searched"
    assert answers(received, b"e") == [b"* SEARCH", b"e " + gone]
    assert answers(received, b"f") == [b'* ESEARCH (TAG "f") COUNT 2', b"f " + gone]
    assert answers(received, b"g")[-1] == b"g OK [EXPUNGEISSUED] messages another session expunged could not be fetched"
    assert [line for line in answers(received, b"g") if b"FETCH (" in line] == [
        b"* 1 FETCH (FLAGS (\\Recent))",
        b"* 3 FETCH (FLAGS (\\Recent))",
    ]
    assert answers(received, b"h") == [b"* 2 EXPUNGE", b"h OK NOOP completed"]
    assert answers(received, b"i") == [b"* SEARCH", b"i OK SEARCH completed"]
    database.close()


def test_a_sessions_own_changes_reach_its_view_without_being_read_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20: STORE, APPEND and EXPUNGE tell the session's view what they did, so the look at the mailbox
    after them reads nothing back; a change another session made in between is still read, and told."""
    database = mailbox_of(tmp_path, 3)
    read_back: list[tuple[int, int]] = []
    changes = mailstore.changes

    def counted(source: object, address: str, name: str, since: tuple[int, int], known: list[int]) -> object:
        read_back.append(since)
        return changes(source, address, name, since, known)  # type: ignore[arg-type]

    monkeypatch.setattr(mailstore, "changes", counted)

    def flag_elsewhere() -> None:
        with database.transaction() as connection:
            mailstore.store_flags(connection, "alice@example.test", "INBOX", [1], ["\\Answered"], "add")

    received = asyncio.run(
        converse(
            database,
            b"a LOGIN alice@example.test secret",
            b"b SELECT INBOX",
            b"c STORE 2 +FLAGS (\\Deleted)",
            b"d APPEND INBOX (\\Seen) {9+}\r\nSubject: ",
            b"e EXPUNGE",
            b"f FETCH 3 (FLAGS)",
            flag_elsewhere,
            b"g NOOP",
        )
    )
    assert answers(received, b"c") == [b"* 2 FETCH (FLAGS (\\Deleted \\Recent))", b"c OK STORE completed"]
    assert answers(received, b"d")[:2] == [b"* 4 EXISTS", b"* 4 RECENT"]
    assert answers(received, b"d")[2].endswith(b" 4] APPEND completed")
    assert answers(received, b"e") == [b"* 2 EXPUNGE", b"e OK EXPUNGE completed"]
    assert answers(received, b"f") == [b"* 3 FETCH (FLAGS (\\Recent \\Seen))", b"f OK FETCH completed"]
    assert answers(received, b"g") == [b"* 1 FETCH (FLAGS (\\Answered \\Recent) UID 1)", b"g OK NOOP completed"]
    assert len(read_back) == 1  # the other session's STORE alone
    database.close()


def test_no_look_at_the_mailbox_follows_a_command_that_brought_the_view_up_to_date(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 20: SELECT has just read the mailbox, and STORE, APPEND and EXPUNGE made on what the view had seen
    know the state after them: a look after each was a read of the store for nothing. A NOOP still looks."""
    database = mailbox_of(tmp_path, 3)
    looks: list[bool] = []
    refresh = server.refresh

    async def counted(database: Database, user: object, selected: session.Session, allow_expunge: bool) -> None:
        looks.append(selected.view is not None)
        await refresh(database, user, selected, allow_expunge)  # type: ignore[arg-type]

    monkeypatch.setattr(server, "refresh", counted)
    received = asyncio.run(
        converse(
            database,
            b"a LOGIN alice@example.test secret",
            b"b SELECT INBOX",
            b"c STORE 2 +FLAGS (\\Deleted)",
            b"d APPEND INBOX (\\Seen) {9+}\r\nSubject: ",
            b"e EXPUNGE",
            b"f NOOP",
        )
    )
    assert answers(received, b"e") == [b"* 2 EXPUNGE", b"e OK EXPUNGE completed"]
    assert looks.count(True) == 1  # the NOOP's
    database.close()
