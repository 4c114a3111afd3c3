"""IMAP against real clients: imaplib for protocol detail, mbsync syncing both ways to a Maildir, offlineimap,
fetchmail over IMAP, and mutt driven by a script on a pseudo-terminal. Mail delivered over SMTP reaches an IDLEing client within a second; two clients on one mailbox
see each other's flag changes and expunges."""

from __future__ import annotations

import base64
import datetime
import imaplib
import os
import poplib
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from email.header import Header
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jitaku.health.services import reading_context
from tests.integration.harness import READER, Jitaku, deliver
from tests.peers import Dovecot, wait_for_port

PASSWORD = "secret-password"
ALICE = READER


def client(server: Jitaku, mailbox: str | None = "INBOX") -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    imap.login(ALICE, PASSWORD)
    if mailbox is not None:
        imap.select(mailbox)
    return imap


@pytest.mark.both_databases
def test_folders_append_fetch_store_move_and_search(mailhost: Jitaku) -> None:
    subject = Header("会議の件", "iso-2022-jp").encode()
    deliver(mailhost, "first", subject=subject)
    imap = client(mailhost)
    _, listing = imap.list()
    assert b'(\\HasNoChildren \\Sent) "/" "Sent"' in listing and len(listing) == 6
    _, data = imap.fetch("1", "(UID FLAGS ENVELOPE BODYSTRUCTURE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert subject.encode() in data[0][0] and b"FLAGS (\\Recent)" in data[0][0]  # type: ignore[index]
    assert imap.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT", '"\u4f1a\u8b70"'.encode())[1] == [b"1"]
    date = imaplib.Time2Internaldate(datetime.datetime(2020, 1, 2, 3, 4, 5, tzinfo=datetime.UTC))
    result, code = imap.append("Sent", "(\\Seen $Forwarded)", date, b"Subject: sent\r\n\r\nhello\r\n")
    assert result == "OK" and code[0].startswith(b"[APPENDUID ")
    imap.store("1", "+FLAGS", "(\\Flagged)")
    assert imap.uid("MOVE", "1", "Archive")[0] == "OK"
    assert imap.select("Archive")[1] == [b"1"]
    assert b"\\Flagged" in imap.fetch("1", "(FLAGS)")[1][0]  # type: ignore[operator]
    imap.select("Sent")
    flags = imap.fetch("1", "(FLAGS INTERNALDATE)")[1][0]
    assert b"$Forwarded" in flags and b"\\Seen" in flags and b'" 2-Jan-2020 03:04:05 +0000"' in flags  # type: ignore[operator]
    assert imap.create("Projects/2026")[0] == "OK" and imap.rename("Projects/2026", "Projects/2027")[0] == "OK"
    assert imap.list('""', "Projects/*")[1] == [b'(\\HasNoChildren) "/" "Projects/2027"']
    assert imap.select("Nowhere")[0] == "NO"
    assert imap.logout()[0] == "BYE"


def test_appends_from_a_client_that_writes_the_literal_and_the_line_end_apart_do_not_wait_for_delayed_acks(
    mailhost: Jitaku,
) -> None:
    """imaplib writes a literal, then its CRLF: Nagle's algorithm holds the CRLF until the literal is
    acknowledged, which Linux delays 40 ms or more on a connection that talks back and forth, so every APPEND
    took 40 ms at least; the server acknowledges a literal at once. The fastest of twenty is what is compared:
    a loaded machine makes some slow, but cannot make a 40 ms floor vanish or put one under all twenty."""
    imap = client(mailhost)
    times = []
    for number in range(20):
        started = time.monotonic()
        assert imap.append("INBOX", "", None, f"Subject: {number}\r\n\r\n{'x' * 2000}\r\n".encode())[0] == "OK"
        times.append(time.monotonic() - started)
    assert min(times) < 0.035, f"fastest APPEND took {min(times) * 1000:.0f} ms"
    imap.logout()


def exchange(imap: imaplib.IMAP4, command: str | bytes) -> tuple[list[bytes], bytes]:
    """COMMAND as written, and the untagged lines and the tagged one it brought back (without CRLF)."""
    tag = imap._new_tag()
    imap.send(tag + b" " + (command.encode() if isinstance(command, str) else command) + b"\r\n")
    lines = []
    while not (line := imap.readline()).startswith(tag + b" "):
        lines.append(line.rstrip(b"\r\n"))
    return lines, line.rstrip(b"\r\n")[len(tag) + 1 :]


def test_list_extended_shows_levels_without_a_mailbox_and_subscriptions_below(mailhost: Jitaku) -> None:
    """The answers are Dovecot 2.3's to the same commands, with "/" for its "." (and our \\HasChildren
    where Dovecot leaves them out unless RETURN (CHILDREN) asks: RFC 5258 §4 lets a server send them)."""
    imap = client(mailhost, None)
    for name in ("a/b/c", "x", "x/y", "Lists"):
        imap.create(name)
    for name in ("a/b/c", "x/y"):
        imap.subscribe(name)
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive"):
        imap.unsubscribe(name)
    imap.append("x", "(\\Deleted)", None, b"Subject: one\r\n\r\nhello\r\n")
    imap.append("x", None, None, b"Subject: two\r\n\r\nhello\r\n")
    mine = '"INBOX" "a" "a/*" "x" "x/*"'  # leave the special-use folders out
    assert exchange(imap, f'LIST "" ({mine.replace("*", "%")})')[0] == [
        b'* LIST (\\HasNoChildren) "/" "INBOX"',
        b'* LIST (\\Noselect \\HasChildren) "/" "a"',
        b'* LIST (\\Noselect \\HasChildren) "/" "a/b"',
        b'* LIST (\\HasChildren) "/" "x"',
        b'* LIST (\\HasNoChildren) "/" "x/y"',
    ]
    assert exchange(imap, 'LIST (SUBSCRIBED RECURSIVEMATCH) "" %')[0] == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"',
        b'* LIST (\\NonExistent \\HasChildren) "/" "a" (CHILDINFO ("SUBSCRIBED"))',
        b'* LIST (\\HasChildren) "/" "x" (CHILDINFO ("SUBSCRIBED"))',
    ]
    assert exchange(imap, 'LIST (SUBSCRIBED) "" %')[0] == [b'* LIST (\\HasNoChildren \\Subscribed) "/" "INBOX"']
    assert exchange(imap, 'LSUB "" %')[0] == [
        b'* LSUB () "/" "INBOX"',
        b'* LSUB (\\Noselect) "/" "a"',
        b'* LSUB (\\Noselect) "/" "x"',
    ]
    assert exchange(imap, 'LSUB "" *')[0] == [
        b'* LSUB () "/" "INBOX"',
        b'* LSUB () "/" "a/b/c"',
        b'* LSUB () "/" "x/y"',
    ]
    listed, done = exchange(imap, 'LIST "" x RETURN (STATUS (MESSAGES SIZE DELETED))')
    assert listed == [b'* LIST (\\HasChildren) "/" "x"', b'* STATUS "x" (MESSAGES 2 SIZE 46 DELETED 1)']
    assert done.startswith(b"OK")
    assert exchange(imap, 'LIST (RECURSIVEMATCH) "" %')[1].startswith(b"BAD")
    assert exchange(imap, 'LIST "" % RETURN (FOO)')[1].startswith(b"BAD")


def dovecot_client(dovecot: Dovecot) -> imaplib.IMAP4:
    imap = imaplib.IMAP4("127.0.0.1", dovecot.port, timeout=10)
    imap.login("alice", PASSWORD)
    return imap


def outcomes(imap: imaplib.IMAP4, commands: list[bytes]) -> list[tuple[int, bytes]]:
    """How many untagged lines each command brought back, and its answer's first word (OK, NO or BAD)."""
    return [(len(lines), done.split()[0]) for lines, done in map(lambda command: exchange(imap, command), commands)]


# Names no mailbox can have, and the tilde that only starts a literal8 before "{" (imaptest's group atoms)
STRANGE_NAMES = [
    b"SELECT ~foo",
    b'LIST "" ~foo',
    b"SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}",
    b'LIST "" !#$&\'+,-.0123456789:;<=>?@^_`|[}%*',
    b"SELECT &Jjo",
    b"EXAMINE &Jjo",
    b"CREATE &Jjo",
    b'CREATE "&AGE-"',
    b'CREATE "&AOk-&AOk-"',
    b'CREATE "a\xffb"',
    b"DELETE &Jjo",
    b"RENAME INBOX &Jjo",
    b"SUBSCRIBE &Jjo",
    b"UNSUBSCRIBE &Jjo",
    b"STATUS &Jjo (MESSAGES)",
    b"APPEND &Jjo {1+}\r\nx",
    b'LIST "" &Jjo',
    b'LIST "" ("&Jjo*" "a\xffb")',
    b"LIST &Jjo *",
    b'LSUB "" &Jjo',
]


def test_names_no_mailbox_can_have_are_refused_as_dovecot_refuses_them(mailhost: Jitaku, dovecot: Dovecot) -> None:
    """They were BAD, which tells a client it spoke nonsense (imaptest counts it a failure, and closes); and
    "~foo" was taken for a literal8 that did not come."""
    imap = client(mailhost, None)
    assert outcomes(imap, STRANGE_NAMES) == outcomes(dovecot_client(dovecot), STRANGE_NAMES)
    assert exchange(imap, b"SELECT &Jjo")[1].startswith(b"NO [CANNOT] ")
    assert exchange(imap, b"SELECT ~foo")[1].startswith(b"NO [NONEXISTENT] ")  # a name, of no mailbox yet
    assert imap.create("~foo")[0] == "OK" and imap.select("~foo")[0] == "OK"


def test_create_ignores_a_trailing_delimiter_as_dovecot_does(mailhost: Jitaku, dovecot: Dovecot) -> None:
    """RFC 3501 §6.3.3: "Lists/" declares that names will be made below "Lists", and makes "Lists"; it was
    refused as a name (imaptest's groups list, listext and subscribe begin with one)."""
    commands = ["CREATE Lists/", "CREATE Lists/a/", "CREATE Lists//", 'LIST "" Lists*']
    imap = client(mailhost, None)
    ours = outcomes(imap, [command.encode() for command in commands])
    # Dovecot's delimiter (Maildir++) is "."
    assert ours == outcomes(dovecot_client(dovecot), [command.replace("/", ".").encode() for command in commands])
    assert ours == [(0, b"OK"), (0, b"OK"), (0, b"NO"), (2, b"OK")]
    assert imap.select("Lists")[0] == "OK" and imap.select("Lists/a")[0] == "OK"


def test_a_subscription_is_a_name_apart_from_its_mailbox_as_in_dovecot(mailhost: Jitaku, dovecot: Dovecot) -> None:
    """RFC 3501 §6.3.6: a subscription outlives its mailbox, and LIST-EXTENDED shows it \\NonExistent; it was a
    column of the mailbox, so CREATE subscribed and DELETE took it away (imaptest's groups listext, subscribe)."""
    commands = [
        "CREATE Subs/a",
        "CREATE Subs/b",
        "CREATE Subs/c",
        'LSUB "" Subs*',  # CREATE does not subscribe
        "SUBSCRIBE Subs/a",
        "SUBSCRIBE Subs/b",
        "SUBSCRIBE Subs/c",
        "SUBSCRIBE Subs/ghost",  # only a mailbox, as Dovecot checks (RFC 3501 §6.3.6 allows it)
        "DELETE Subs/a",
        "DELETE Subs/c",
        'LSUB "" Subs*',
        'LSUB "" %',
        'LIST (SUBSCRIBED) "" Subs*',
        'LIST (SUBSCRIBED RECURSIVEMATCH) "" %',
        'LIST "" Subs*',
        'LIST "" Subs* RETURN (SUBSCRIBED)',
        "UNSUBSCRIBE Subs/c",  # with no mailbox
        'LSUB "" Subs*',
    ]
    imap = client(mailhost, None)
    for name in ("Sent", "Drafts", "Trash", "Junk", "Archive", "INBOX"):  # Dovecot's alice subscribes to none
        imap.unsubscribe(name)
    ours = outcomes(imap, [command.encode() for command in commands])
    assert ours == outcomes(dovecot_client(dovecot), [command.replace("/", ".").encode() for command in commands])
    assert [done for _count, done in ours] == [b"OK"] * 7 + [b"NO"] + [b"OK"] * 10
    assert exchange(imap, 'LIST (SUBSCRIBED) "" Subs*')[0] == [
        b'* LIST (\\NonExistent \\HasNoChildren \\Subscribed) "/" "Subs/a"',
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Subs/b"',
    ]
    assert exchange(imap, 'LSUB "" Subs/*')[0] == [b'* LSUB () "/" "Subs/a"', b'* LSUB () "/" "Subs/b"']
    assert exchange(imap, 'LIST "" Subs/* RETURN (SUBSCRIBED)')[0] == [
        b'* LIST (\\HasNoChildren \\Subscribed) "/" "Subs/b"'
    ]
    # RENAME takes the subscriptions along, those below too, a deleted mailbox's as well (Dovecot 2.3 leaves
    # them under the old names)
    assert imap.rename("Subs", "Moved")[0] == "OK"
    assert exchange(imap, 'LSUB "" *')[0] == [b'* LSUB () "/" "Moved/a"', b'* LSUB () "/" "Moved/b"']


def test_a_missing_mailbox_is_nonexistent_unless_creating_it_would_help(mailhost: Jitaku, dovecot: Dovecot) -> None:
    """RFC 5530: [TRYCREATE] tells a client to CREATE the mailbox and try again, which helps APPEND, COPY and
    MOVE to it; DELETE, RENAME and UNSUBSCRIBE of a name that is not there got it too."""
    commands = [b"DELETE Nowhere", b"RENAME Nowhere Elsewhere", b"APPEND Nowhere {1+}\r\nx"]
    imap = client(mailhost)

    def codes(imap: imaplib.IMAP4, commands: list[bytes]) -> list[bytes]:
        return [exchange(imap, command)[1].partition(b"]")[0] for command in commands]

    assert codes(imap, commands) == codes(dovecot_client(dovecot), commands)
    assert codes(imap, commands) == [b"NO [NONEXISTENT", b"NO [NONEXISTENT", b"NO [TRYCREATE"]
    imap.append("INBOX", None, None, b"Subject: one\r\n\r\nhello\r\n")
    imap.noop()
    assert codes(imap, [b"COPY 1 Nowhere", b"MOVE 1 Nowhere"]) == [b"NO [TRYCREATE"] * 2
    # Dovecot answers OK to UNSUBSCRIBE of any name, and plain NO to SUBSCRIBE of a mailbox that is not there
    assert codes(imap, [b"UNSUBSCRIBE Nowhere", b"SUBSCRIBE Nowhere"]) == [b"NO [NONEXISTENT"] * 2


def test_binary_fetches_decoded_parts_and_append_takes_a_literal8(mailhost: Jitaku) -> None:
    imap = client(mailhost)
    attachment = b"\x00\x01\x02 not text \xff"
    message = (
        b"Subject: binary\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nsee attached\r\n"
        b"--b\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.encodebytes(attachment).replace(b"\n", b"\r\n")
        + b"--b\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\nbegin 644 x\r\n--b--\r\n"
    )
    assert imap.append("INBOX", None, None, message)[0] == "OK"
    _, data = imap.fetch("1", "(BINARY.PEEK[2] BINARY.SIZE[2] FLAGS)")
    assert data[0] == (b"1 (BINARY[2] ~{%d}" % len(attachment), attachment)  # a literal8: it holds NUL
    assert data[1] == b" BINARY.SIZE[2] %d FLAGS (\\Recent))" % len(attachment)
    refused, why = imap.fetch("1", "(BINARY[3])")
    assert refused == "NO" and why[0].startswith(b"[UNKNOWN-CTE]")  # type: ignore[union-attr]
    assert imap.fetch("1", "(FLAGS BINARY.SIZE[9])")[1] == [b"1 (FLAGS (\\Recent) BINARY.SIZE[9] 0)"]  # not \\Seen
    _, data = imap.fetch("1", "(BINARY[1])")  # without PEEK it marks the message read, as BODY[] does
    assert data[0][1] == b"see attached" and b"\\Seen" in data[1]  # type: ignore[index,operator]
    raw = message.replace(b"Content-Transfer-Encoding: base64\r\n\r\n", b"Content-Transfer-Encoding: binary\r\n\r\n", 1)
    raw = raw.replace(base64.encodebytes(attachment).replace(b"\n", b"\r\n"), attachment + b"\r\n")
    assert exchange(imap, b"APPEND Drafts ~{%d+}\r\n" % len(raw) + raw)[1].startswith(b"OK [APPENDUID")
    imap.select("Drafts")
    assert imap.fetch("1", "(BINARY.PEEK[2])")[1][0] == (b"1 (BINARY[2] ~{%d}" % len(attachment), attachment)


@pytest.mark.both_databases
def test_two_clients_see_each_others_flags_and_expunges_and_pop3s_deletions(mailhost: Jitaku) -> None:
    """A MOVE and a POP3 session's deletions reach the other client as expunges, highest number first so that
    each number is right when it is read (RFC 3501 §7.4.1)."""
    deliver(mailhost, "one", "two", "three", "four", "five", "six")
    phone, laptop = client(mailhost), client(mailhost)
    phone.store("2", "+FLAGS", "(\\Seen \\Deleted)")
    laptop.noop()
    assert laptop.response("FETCH")[1] == [b"2 (FLAGS (\\Deleted \\Seen) UID 2)"]
    phone.expunge()
    laptop.noop()
    assert laptop.response("EXPUNGE")[1] == [b"2"]
    assert laptop.uid("SEARCH", "ALL")[1] == [b"1 3 4 5 6"]
    assert phone.uid("MOVE", "3,5", "Archive")[0] == "OK"
    assert exchange(laptop, "NOOP") == ([b"* 4 EXPUNGE", b"* 2 EXPUNGE"], b"OK NOOP completed")
    pop3 = poplib.POP3("127.0.0.1", mailhost.pop3_port, timeout=10)
    pop3.user(ALICE)
    pop3.pass_(PASSWORD)
    pop3.dele(1)
    pop3.dele(3)  # UID 6
    assert pop3.quit().startswith(b"+OK bye (2 messages removed)")
    assert exchange(laptop, "NOOP") == ([b"* 3 EXPUNGE", b"* 1 EXPUNGE"], b"OK NOOP completed")
    assert laptop.uid("SEARCH", "ALL")[1] == [b"4"]


def test_a_message_another_session_expunged_is_searched_by_what_the_session_knows_until_it_is_told(
    mailhost: Jitaku,
) -> None:
    """RFC 3501 §7.4.1: SEARCH sends no EXPUNGE, so a message expunged meanwhile keeps its number: it is found
    by its flags (imaptest's stress test saw "SEARCH result missing" for it); a search of its text, which is
    gone, says OK [EXPUNGEISSUED] (RFC 5530), as a FETCH of it does."""
    deliver(mailhost, "one", "two", "three")
    phone, laptop = client(mailhost), client(mailhost)
    laptop.store("2", "+FLAGS", "(\\Flagged)")
    phone.noop()
    laptop.store("2", "+FLAGS", "(\\Deleted)")
    laptop.expunge()
    assert exchange(phone, "SEARCH FLAGGED") == ([b"* SEARCH 2"], b"OK SEARCH completed")
    assert exchange(phone, "SEARCH BODY two") == (
        [b"* SEARCH"],
        b"OK [EXPUNGEISSUED] messages another session expunged could not be searched",
    )
    fetched, done = exchange(phone, "FETCH 2 (BODY.PEEK[TEXT])")
    assert (fetched, done) == ([], b"OK [EXPUNGEISSUED] messages another session expunged could not be fetched")
    assert exchange(phone, "NOOP")[0][0] == b"* 2 EXPUNGE"
    assert exchange(phone, "SEARCH FLAGGED") == ([b"* SEARCH"], b"OK SEARCH completed")


def test_recent_mail_is_recent_to_the_first_session_that_selects(mailhost: Jitaku) -> None:
    """RFC 3501 §2.3.2: STATUS RECENT, SELECT's RECENT and SEARCH NEW count what no session has seen yet."""
    deliver(mailhost, "one")
    peeking = client(mailhost, None)
    assert peeking.status("INBOX", "(MESSAGES RECENT)")[1] == [b'"INBOX" (MESSAGES 1 RECENT 1)']
    peeking.select("INBOX", readonly=True)  # EXAMINE sees it recent and leaves it so
    assert peeking.response("RECENT")[1] == [b"1"]
    first = client(mailhost)
    assert first.response("RECENT")[1] == [b"1"] and first.search(None, "NEW")[1] == [b"1"]
    second = client(mailhost)
    assert second.response("RECENT")[1] == [b"0"] and second.search(None, "OLD")[1] == [b"1"]
    deliver(mailhost, "two")
    first.noop()
    assert first.response("EXISTS")[1][-1] == b"2" and first.response("RECENT")[1] == [b"2"]
    assert b"\\Recent" in first.fetch("2", "(FLAGS)")[1][0]  # type: ignore[operator]
    second.noop()
    assert second.response("EXISTS")[1][-1] == b"2" and second.response("RECENT")[1] == [b"0"]
    assert second.fetch("2", "(FLAGS)")[1] == [b"2 (FLAGS ())"]
    assert second.store("1", "+FLAGS", "(\\Recent)")[0] == "NO"  # the server's flag, not the client's
    second.store("1", "+FLAGS", "(\\Deleted)")
    second.expunge()
    deliver(mailhost, "three")
    time.sleep(0.2)  # past the quiet time of a run of FETCHes: the next FETCH looks at the mailbox
    first.response("RECENT")
    first.fetch("1", "(UID)")  # may not tell of the expunge (RFC 3501 §7.4.1), so tells of nothing yet
    assert first.response("RECENT")[1] == [None]
    first.noop()  # now both, and the new mail is still this session's to call recent
    assert first.response("EXPUNGE")[1] == [b"1"] and first.response("RECENT")[1] == [b"2"]
    assert first.fetch("2", "(UID FLAGS)")[1] == [b"2 (UID 3 FLAGS (\\Recent))"]


def test_a_run_of_fetches_hears_of_other_sessions_changes_within_a_tenth_of_a_second(mailhost: Jitaku) -> None:
    deliver(mailhost, "one")
    phone, laptop = client(mailhost), client(mailhost)
    phone.store("1", "+FLAGS", "(\\Flagged)")
    time.sleep(0.2)
    assert laptop.fetch("1", "(UID)")[1] == [b"1 (UID 1)", b"1 (FLAGS (\\Flagged) UID 1)"]


@pytest.mark.both_databases
def test_idle_sees_new_mail_within_a_second(mailhost: Jitaku) -> None:
    imap = client(mailhost)
    tag = imap._new_tag()  # imaplib has no IDLE: the command by hand
    imap.send(tag + b" IDLE\r\n")
    assert imap.readline().startswith(b"+ ")
    deliver(mailhost, "while idling")
    committed_at = time.monotonic()  # swaks has its 250: the message is in the store
    line = imap.readline()
    took = time.monotonic() - committed_at
    assert line == b"* 1 EXISTS\r\n", line
    assert took < 1.0, f"{took:.2f} s"
    assert imap.readline() == b"* 1 RECENT\r\n"
    imap.send(b"DONE\r\n")
    assert imap.readline().startswith(tag + b" OK")


def test_passwords_need_tls_off_loopback_and_bad_input_gets_bad(mailhost: Jitaku) -> None:
    with socket.create_connection(("127.0.0.1", mailhost.imap_port), timeout=10) as raw:
        stream = raw.makefile("rb")
        assert stream.readline().startswith(b"* OK [CAPABILITY IMAP4rev1")
        for line in (b"a1 FROB", b"a2 FETCH 1 FLAGS", b'a3 LOGIN "x', b"\xff\xfe"):
            raw.sendall(line + b"\r\n")
            assert b" BAD " in stream.readline()
        raw.sendall(b"a4 LOGIN alice@example.test wrong\r\n")
        assert stream.readline().startswith(b"a4 NO [AUTHENTICATIONFAILED]")
    assert "imap_crashed" not in mailhost.log()


def test_mbsync_syncs_both_ways(mailhost: Jitaku) -> None:
    deliver(mailhost, "for mbsync one", "for mbsync two")
    home = Path(tempfile.mkdtemp(prefix="jitaku-mbsync-"))
    try:
        (home / "Maildir").mkdir()
        rc = home / "mbsyncrc"
        rc.write_text(
            f"IMAPAccount jitaku\nHost 127.0.0.1\nPort {mailhost.imap_port}\nUser {ALICE}\nPass {PASSWORD}\n"
            "SSLType None\nAuthMechs PLAIN\n\n"
            "IMAPStore remote\nAccount jitaku\n\n"
            f"MaildirStore local\nPath {home}/Maildir/\nInbox {home}/Maildir/INBOX\nSubFolders Verbatim\n\n"
            "Channel sync\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nExpunge Both\nSyncState *\n"
        )
        run = ["mbsync", "-c", str(rc), "-a"]
        first = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert first.returncode == 0, first.stdout + first.stderr
        inbox = home / "Maildir" / "INBOX"
        assert len(list((inbox / "new").iterdir()) + list((inbox / "cur").iterdir())) == 2
        assert (home / "Maildir" / "Sent").is_dir()
        # a message written locally goes up, and a local deletion goes up as an expunge
        (home / "Maildir" / "Archive" / "new" / "1.local").write_bytes(b"Subject: from the maildir\r\n\r\nup\r\n")
        next(iter([*(inbox / "new").iterdir(), *(inbox / "cur").iterdir()])).unlink()  # deleted here
        second = subprocess.run(run, capture_output=True, text=True, timeout=60)
        assert second.returncode == 0, second.stdout + second.stderr
        imap = client(mailhost, "Archive")
        assert imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")[1][0][1].startswith(b"Subject: from the")  # type: ignore[index]
        assert len(client(mailhost).search(None, "ALL")[1][0].split()) == 1
    finally:
        shutil.rmtree(home)


def test_fetchmail_over_imap(mailhost: Jitaku, tmp_path: Path) -> None:
    deliver(mailhost, "for fetchmail over imap")
    rc = tmp_path / "fetchmailrc"
    rc.write_text(
        f"poll 127.0.0.1 port {mailhost.imap_port} protocol IMAP auth password\n"
        f'  user "{ALICE}" password "{PASSWORD}" is root here\n'
        f'  nokeep fetchall sslproto "TLS1.2+" no sslcertck\n'
        f"  mda \"/bin/sh -c 'cat > {tmp_path}/mail.$$'\"\n"
    )
    rc.chmod(0o600)
    ran = subprocess.run(
        ["fetchmail", "-f", str(rc), "--pidfile", str(tmp_path / "pid"), "-v", "--nodetach"],
        capture_output=True, text=True, timeout=60, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    (fetched,) = tmp_path.glob("mail.*")
    assert b"for fetchmail over imap" in fetched.read_bytes()
    assert client(mailhost).search(None, "ALL")[1] == [b""]  # fetched, flagged \Deleted, expunged


@pytest.mark.both_databases
def test_starttls_and_implicit_tls_and_plain_text_refused_off_loopback(network_namespace, jitaku_factory) -> None:
    """From the LAN address of a namespace of our own: LOGINDISABLED and [PRIVACYREQUIRED] in the clear,
    a login after STARTTLS, and on the IMAPS port."""
    network_namespace.ip("addr", "add", "192.0.2.10/24", "dev", "home0")
    server: Jitaku = jitaku_factory()
    server.settings["imap"] = {"listen": ["192.0.2.10:0"]}
    server.settings["imaps"] = {"listen": ["192.0.2.10:0"]}
    server.write_config()
    server.init(ALICE)
    server.start()
    imaps = server.port("imaps")
    clear = imaplib.IMAP4("192.0.2.10", server.imap_port, timeout=10)
    assert "LOGINDISABLED" in clear.capabilities and "STARTTLS" in clear.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        clear.login(ALICE, PASSWORD)
    clear.starttls(reading_context())
    assert "AUTH=PLAIN" in clear.capabilities and "STARTTLS" not in clear.capabilities
    assert clear.login(ALICE, PASSWORD)[0] == "OK"
    implicit = imaplib.IMAP4_SSL("192.0.2.10", imaps, ssl_context=reading_context(), timeout=10)
    assert implicit.login(ALICE, PASSWORD)[0] == "OK"
    assert "client=192.0.2.10" in server.log() and PASSWORD not in server.log()


def test_no_starttls_handshake_is_lost(mailhost: Jitaku) -> None:
    """After STARTTLS's OK the client's TLS hello must go to the handshake: with a write timeout that handed the
    event loop over after each reply, the loop read the hello as plain text and about one handshake in twenty
    hung until the client gave up."""
    for _ in range(60):
        clear = imaplib.IMAP4("127.0.0.1", mailhost.imap_port, timeout=2)
        clear.starttls(reading_context())  # a lost hello: TimeoutError
        clear.logout()


VERBS = ["FETCH 1", "UID FETCH 1:*", "STORE 1", "SEARCH", "LIST", "SELECT", "APPEND INBOX", "COPY 1", "STATUS"]
VERBS += ["CREATE", "RENAME", "UID STORE 1", "UID SEARCH", "EXAMINE", "NOOP", "ID", "ENABLE", "UID MOVE 1"]
VERBS += ["FETCH $", "FETCH 1 (BINARY.PEEK[", "SEARCH RETURN (SAVE", 'LIST (SUBSCRIBED RECURSIVEMATCH) "" ']
VERBS += ["STATUS INBOX (SIZE DELETED", "UID STORE $ +FLAGS"]
fuzz_lines = st.builds(
    lambda verb, argument: b"f " + verb.encode() + argument,
    st.sampled_from(VERBS),
    st.binary(max_size=60).map(lambda b: b.replace(b"\n", b"").replace(b"\r", b"").replace(b"{", b"")),
)


def test_random_commands_get_a_tagged_reply_and_the_server_lives(mailhost: Jitaku) -> None:
    deliver(mailhost, "something to look at")

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(fuzz_lines, max_size=8))
    def dialog(commands: list[bytes]) -> None:
        with socket.create_connection(("127.0.0.1", mailhost.imap_port), timeout=10) as raw:
            stream = raw.makefile("rb")
            stream.readline()
            raw.sendall(f"a LOGIN {ALICE} {PASSWORD}\r\nb SELECT INBOX\r\n".encode())
            while not stream.readline().startswith(b"b "):
                pass
            for command in commands:
                raw.sendall(command + b"\r\n")
                while True:
                    line = stream.readline()
                    assert line, command
                    if line.startswith(b"f "):
                        assert line[2:].startswith((b"OK", b"NO", b"BAD")), (command, line)
                        break

    dialog()
    assert "imap_crashed" not in mailhost.log() and "Traceback" not in mailhost.log()
    assert client(mailhost).fetch("1", "(UID)")[0] == "OK"


def test_offlineimap_mirrors_every_folder(mailhost: Jitaku, tmp_path: Path) -> None:
    deliver(mailhost, "for offlineimap")
    imap = client(mailhost)
    imap.append("Drafts", "(\\Draft)", None, b"Subject: a draft\r\n\r\nunfinished\r\n")
    rc = tmp_path / "offlineimaprc"
    rc.write_text(
        "[general]\naccounts = jitaku\nmetadata = " + str(tmp_path / "meta") + "\n\n"
        "[Account jitaku]\nlocalrepository = local\nremoterepository = remote\n\n"
        f"[Repository local]\ntype = Maildir\nlocalfolders = {tmp_path / 'mail'}\n\n"
        f"[Repository remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {mailhost.imap_port}\n"
        f"remoteuser = {ALICE}\nremotepass = {PASSWORD}\nssl = no\nstarttls = no\n"
    )
    ran = subprocess.run(
        ["offlineimap", "-c", str(rc), "-o", "-u", "basic"], capture_output=True, text=True, timeout=120
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    mirrored = {path.parent.parent.name: path.read_bytes() for path in (tmp_path / "mail").glob("*/*/*")}
    assert set(mirrored) >= {"INBOX", "Drafts"}
    assert b"for offlineimap" in mirrored["INBOX"] and b"unfinished" in mirrored["Drafts"]


@pytest.mark.both_databases
def test_uidvalidity_and_uids_survive_a_restart_and_condstore_tracks_changes(mailhost: Jitaku) -> None:
    deliver(mailhost, "one", "two")
    imap = imaplib.IMAP4("127.0.0.1", mailhost.imap_port, timeout=10)
    imap.login(ALICE, PASSWORD)
    imap.enable("CONDSTORE")
    imap.select("INBOX")
    before = imap.response("UIDVALIDITY")[1]
    _, changed = imap.uid("STORE", "2", "+FLAGS", "(\\Answered)")
    modseq = int(changed[0].split(b"MODSEQ (")[1].split(b")")[0])  # type: ignore[union-attr]
    _, since = imap.uid("FETCH", "1:*", f"(FLAGS) (CHANGEDSINCE {modseq - 1})")
    assert since == [f"2 (FLAGS (\\Answered \\Recent) UID 2 MODSEQ ({modseq}))".encode()]
    imap.uid("STORE", "2", f"(UNCHANGEDSINCE {modseq - 1}) +FLAGS", "(\\Seen)")
    assert imap.response("MODIFIED")[1] == [b"2"]  # changed since: not stored
    mailhost.restart()
    wait_for_port(mailhost.imap_port)
    again = client(mailhost)
    assert again.response("UIDVALIDITY")[1] == before
    assert again.uid("SEARCH", "ALL")[1] == [b"1 2"]


def run_in_a_terminal(command: list[str], timeout: float = 30) -> int:
    """COMMAND on a pseudo-terminal of its own (mutt draws a screen), its output drained; its exit status."""
    pid, terminal = pty.fork()
    if pid == 0:
        os.environ["TERM"] = "xterm"
        os.execvp(command[0], command)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([terminal], [], [], 0.2)
            try:
                if ready and not os.read(terminal, 65536):
                    break
            except OSError:  # the child closed the terminal
                break
        else:
            os.kill(pid, signal.SIGKILL)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    finally:
        os.close(terminal)


def test_mutt_driven_by_a_script_flags_and_deletes(mailhost: Jitaku, tmp_path: Path) -> None:
    deliver(mailhost, "keep me", subject="mutt target")
    deliver(mailhost, "delete me", subject="mutt junk")
    rc = tmp_path / "muttrc"
    rc.write_text(
        f'set imap_user="{ALICE}"\nset imap_pass="{PASSWORD}"\nset ssl_starttls=no\nset ssl_force_tls=no\n'
        f'set folder="imap://127.0.0.1:{mailhost.imap_port}/"\nset spoolfile="+INBOX"\n'
        "set quit=yes\nset move=no\nset delete=yes\nset header_cache=\n"
    )
    keys = (
        "<tag-pattern>~s mutt.target<enter><tag-prefix><set-flag>!"
        "<delete-pattern>~s mutt.junk<enter><sync-mailbox><quit>"
    )
    status = run_in_a_terminal(["mutt", "-n", "-F", str(rc), "-f", "+INBOX", "-e", f'push "{keys}"'])
    assert status == 0
    imap = client(mailhost)
    _, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    (flags, subject) = data[0]  # type: ignore[misc]
    assert subject == b"Subject: mutt target\r\n\r\n" and b"\\Flagged" in flags
    assert len([item for item in data if isinstance(item, tuple)]) == 1  # the junk was expunged


def test_esearch_and_a_search_by_modseq(mailhost: Jitaku) -> None:
    deliver(mailhost, "one", "two", "three")
    imap = client(mailhost)
    assert "ESEARCH" in imap.capabilities
    imap.uid("SEARCH", "RETURN", "(MIN MAX COUNT ALL)", "NOT", "UID", "2")
    tag = imap.tagpre + str(imap.tagnum - 1).encode()  # imaplib numbers its tags TAGPRE + n
    assert imap.response("ESEARCH")[1] == [b'(TAG "' + tag + b'") UID MIN 1 MAX 3 COUNT 2 ALL 1,3']
    imap.uid("SEARCH", "RETURN", "(COUNT)", "SUBJECT", "nothing-like-this")
    assert imap.response("ESEARCH")[1][0].endswith(b") UID COUNT 0")  # type: ignore[index]
    imap.store("3", "+FLAGS", "(\\Flagged)")
    _, found = imap.search(None, "MODSEQ", "1")
    assert found[0].startswith(b"1 2 3 (MODSEQ ")


def by_the_commands_that_enable_condstore(imap: imaplib.IMAP4, mailbox: str) -> list[bytes]:
    """imaptest's esearch-condstore on a new MAILBOX of four messages: CONDSTORE turned on by a FETCH of MODSEQ,
    then ESEARCH by MODSEQ. What it heard, each mod-sequence named by the message whose STORE reported it."""
    imap.create(mailbox)
    for number in range(4):
        imap.append(mailbox, None, None, b"Subject: %d\r\n\r\nbody\r\n" % number)
    imap.select(mailbox)
    heard, _ = exchange(imap, "FETCH 1 (MODSEQ)")
    modseqs = {}
    for number in (1, 3, 2, 4):
        stored, _ = exchange(imap, f"STORE {number} +FLAGS (\\Seen)")
        modseqs[stored[0].split(b"MODSEQ (")[1].split(b")")[0]] = b"m%d" % number
    searches = ["(MIN) 1:3 MODSEQ 1", "(MAX) 1:3 MODSEQ 1", "() 1:3 MODSEQ 1", "(MIN MAX) 2:3 MODSEQ 1"]
    searches += [f'(ALL) 2:3 MODSEQ "/flags/\\\\seen" all {modseq.decode()}' for modseq in modseqs]
    for options in searches:
        heard += exchange(imap, f"SEARCH RETURN {options}")[0]

    def named(found: re.Match[bytes]) -> bytes:
        return found[1] + modseqs.get(found[2], b"n")

    heard = [re.sub(rb"(MODSEQ \(?)(\d+)", named, line) for line in heard]
    return [re.sub(rb'^\* ESEARCH \(TAG "[^"]+"\) ?|\] .*', b"", line) for line in heard]


def test_a_fetch_of_modseq_enables_condstore_and_esearch_says_the_modseq_as_dovecot_does(
    mailhost: Jitaku, dovecot: Dovecot
) -> None:
    """RFC 7162 §3.1: a FETCH of MODSEQ turns CONDSTORE on as ENABLE does, says HIGHESTMODSEQ once, and the
    STOREs after it report MODSEQ; ESEARCH by MODSEQ says that of the messages it reports (§3.1.5)."""
    expected = [
        b"* OK [HIGHESTMODSEQ n",
        b"* 1 FETCH (MODSEQ (n))",
        b"MIN 1 MODSEQ m1",
        b"MAX 3 MODSEQ m3",
        b"ALL 1:3 MODSEQ m2",
        b"MIN 2 MAX 3 MODSEQ m2",
        b"ALL 2:3 MODSEQ m2",  # changed since m1: all of them
        b"ALL 2:3 MODSEQ m2",  # since m3: 2 and 3, as MODSEQ counts from the value given, inclusive
        b"ALL 2 MODSEQ m2",
        b"",  # since m4: nothing, and no MODSEQ
    ]
    assert by_the_commands_that_enable_condstore(client(mailhost, None), "condstore") == expected
    reference = imaplib.IMAP4("127.0.0.1", dovecot.port, timeout=10)
    reference.login("alice", PASSWORD)
    assert by_the_commands_that_enable_condstore(reference, f"condstore-{time.time_ns()}") == expected


def keywords_heard(imap: imaplib.IMAP4, other: imaplib.IMAP4, mailbox: str) -> list[bytes]:
    """What IMAP hears while it and OTHER bring keywords into MAILBOX: each FLAGS, PERMANENTFLAGS, FETCH and
    EXISTS as its kind and the flags it lists, sorted (each server orders them its own way)."""
    message = b"Subject: keywords\r\n\r\nhello\r\n"
    other.create(mailbox)
    other.append(mailbox, "($Alpha)", None, message)
    other.append(mailbox, None, None, message)
    heard, _ = exchange(imap, f"SELECT {mailbox}")
    heard += exchange(imap, "STORE 2 +FLAGS ($Beta)")[0]
    other.select(mailbox)
    other.store("1", "+FLAGS", "($Gamma)")
    heard += exchange(imap, "NOOP")[0]
    other.append(mailbox, "($Delta)", None, message)
    heard += exchange(imap, "NOOP")[0]
    heard += exchange(imap, "STORE 1:* -FLAGS ($Alpha $Beta $Gamma $Delta)")[0]
    kinds = []
    for line in heard:
        kind = re.match(rb"\* (?:\d+ )?(FLAGS|OK \[PERMANENTFLAGS|FETCH|EXISTS)", line)
        if kind:
            listed = re.search(rb"FLAGS \(([^)]*)\)", line)
            kinds.append(b" ".join([kind[1], *sorted(listed[1].split() if listed else [])]))
    return kinds


def test_flags_lists_each_keyword_before_a_fetch_shows_it_as_dovecot_does(mailhost: Jitaku, dovecot: Dovecot) -> None:
    """RFC 3501 §7.2.6: FLAGS and PERMANENTFLAGS list the mailbox's keywords at SELECT, and again, before the
    FETCH or EXISTS, when this session or another brings in a new one; a keyword once listed stays listed.
    imaptest's stress test counted hundreds of "Keyword used without being in FLAGS"."""
    system = [b"\\Answered", b"\\Deleted", b"\\Draft", b"\\Flagged", b"\\Seen"]

    def listed(*keywords: bytes) -> list[bytes]:
        flags = sorted([*system, *keywords])
        return [b" ".join([b"FLAGS", *flags]), b" ".join([b"OK [PERMANENTFLAGS", *sorted([*flags, b"\\*"])])]

    expected = [
        *listed(b"$Alpha"),
        b"EXISTS",
        *listed(b"$Alpha", b"$Beta"),
        b"FETCH $Beta \\Recent",
        *listed(b"$Alpha", b"$Beta", b"$Gamma"),  # another session's new keyword
        b"FETCH $Alpha $Gamma \\Recent",
        *listed(b"$Alpha", b"$Beta", b"$Delta", b"$Gamma"),  # a new message's
        b"EXISTS",
        b"FETCH \\Recent",  # no message has a keyword now, and FLAGS is not said again
        b"FETCH \\Recent",
        b"FETCH",
    ]
    assert keywords_heard(client(mailhost, None), client(mailhost, None), "keywords") == expected
    reference, other = (imaplib.IMAP4("127.0.0.1", dovecot.port, timeout=10) for _ in range(2))
    reference.login("alice", PASSWORD)
    other.login("alice", PASSWORD)
    assert keywords_heard(reference, other, f"keywords-{time.time_ns()}") == expected


def test_a_keyword_another_session_set_is_listed_before_a_fetch_that_sets_seen_shows_it(mailhost: Jitaku) -> None:
    """The \\Seen a FETCH sets brings back the message's flags as they are now, another session's keyword too."""
    deliver(mailhost, "one")
    phone, laptop = client(mailhost), client(mailhost)
    laptop.store("1", "+FLAGS", "($Important)")
    heard, _ = exchange(phone, "FETCH 1 (BODY[])")
    assert heard[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Important)"
    assert heard[2].startswith(b"* 1 FETCH (BODY[] {")


def test_a_user_has_at_most_ten_sessions_from_one_address(mailhost: Jitaku) -> None:
    sessions = [client(mailhost, None) for _ in range(10)]
    eleventh = imaplib.IMAP4("127.0.0.1", mailhost.imap_port, timeout=10)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\] too many sessions"):
        eleventh.login(ALICE, PASSWORD)
    sessions.pop().logout()
    deadline = time.monotonic() + 5  # the server's end of that session closes just after the BYE
    while True:  # one closed: the same connection may try again
        try:
            eleventh.login(ALICE, PASSWORD)
            break
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline, "the closed session still counts"
            time.sleep(0.05)
    for session in [*sessions, eleventh]:
        session.logout()


def test_searchres_saves_a_result_for_later_commands(mailhost: Jitaku) -> None:
    """RFC 5182: "$" is what the last SEARCH RETURN (SAVE) found, by UID, whatever was expunged since."""
    deliver(mailhost, "one", "two", "three", subject="keep")
    deliver(mailhost, "four", subject="other")
    imap = client(mailhost)
    assert "SEARCHRES" in imap.capabilities
    assert exchange(imap, "SEARCH RETURN (SAVE) SUBJECT keep") == ([], b"OK SEARCH completed")
    imap.store("1", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    assert imap.fetch("$", "(UID)")[1] == [b"1 (UID 2)", b"2 (UID 3)"]  # message 1 went; 2 and 3 moved down
    imap.uid("STORE", "$", "+FLAGS", "(\\Flagged)")
    assert imap.uid("SEARCH", "FLAGGED")[1] == [b"2 3"]
    imap.uid("SEARCH", "RETURN", "(SAVE MIN MAX)", "OR", "UID", "$", "UID", "4")  # reads "$", then saves
    assert imap.uid("SEARCH", "UID", "$")[1] == [b"2 4"]  # with MIN and MAX only those two are saved
    imap.select("INBOX")
    assert imap.response("CLOSED")[1] == [b""]  # RFC 7162 §3.2.11: the earlier mailbox is closed
    assert imap.fetch("$", "(UID)")[1] == [None]  # a new SELECT forgets the saved result


def test_five_failed_logins_lock_the_address_out_as_on_submission(mailhost: Jitaku) -> None:
    for _ in range(5):
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imaplib.IMAP4("127.0.0.1", mailhost.imap_port, timeout=10).login(ALICE, "wrong")
    with pytest.raises(imaplib.IMAP4.error, match=r"\[UNAVAILABLE\] too many failed logins"):
        imaplib.IMAP4("127.0.0.1", mailhost.imap_port, timeout=10).login(ALICE, PASSWORD)
    assert mailhost.log().count("event=auth_failed client=127.0.0.1 user=alice@example.test listener=imap") == 5
