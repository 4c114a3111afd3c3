"""The IMAP command parser: what real clients send (Thunderbird, mbsync, mutt, iOS, imaplib), each part of
RFC 3501's grammar the server will lean on, and a fuzz that anything else is a ParseError (BAD), never a
crash."""

from __future__ import annotations

import calendar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from jitaku.mail.imap import utf7
from jitaku.mail.imap.parser import (
    Append,
    Authenticate,
    BadCharset,
    BadName,
    Copy,
    Create,
    Enable,
    Fetch,
    FetchItem,
    Id,
    ListMailboxes,
    Login,
    MailboxCommand,
    OverLimit,
    ParseError,
    Rename,
    Search,
    SearchKey,
    Section,
    Select,
    SequenceSet,
    Simple,
    Status,
    Store,
    UidExpunge,
    literal_announced,
    parse,
)


def one(line: bytes) -> object:
    _tag, command = parse(line + b"\r\n")
    return command


def test_simple_commands_login_and_authenticate() -> None:
    assert parse(b"a001 capability\r\n") == ("a001", Simple("CAPABILITY"))
    assert one(b"A2 IDLE") == Simple("IDLE")
    assert one(b'A3 LOGIN "alice@example.test" "p\\"w\\\\d"') == Login("alice@example.test", 'p"w\\d')
    assert one(b"A3 LOGIN alice {6+}\r\nsecret") == Login("alice", "secret")
    assert one(b"A4 AUTHENTICATE PLAIN") == Authenticate("PLAIN", None)
    assert one(b"A4 AUTHENTICATE plain AGFsaWNlAHNlY3JldA==") == Authenticate("PLAIN", "AGFsaWNlAHNlY3JldA==")


def test_mailbox_commands_and_names() -> None:
    assert one(b"A1 SELECT inbox") == Select("INBOX", read_only=False, condstore=False)
    assert one(b"A1 EXAMINE Inbox/Sub (CONDSTORE)") == Select("INBOX/Sub", read_only=True, condstore=True)
    assert one(b'A1 CREATE "&kAFP4W4IMH8-"') == Create("送信済み")
    assert one("A1 CREATE 送信済み".encode()) == Create("送信済み")  # UTF8=ACCEPT clients send UTF-8
    assert one(b"A1 CREATE Archive2 (USE (\\Archive))") == Create("Archive2", ("\\Archive",))
    assert one(b"A1 CREATE Lists/") == Create("Lists")  # RFC 3501 §6.3.3: "I mean to make names below"
    assert one(b"A1 CREATE inbox/") == Create("INBOX") and one(b"A1 CREATE a//") == Create("a/")
    assert one(b"A1 RENAME old new") == Rename("old", "new")
    assert one(b'A1 DELETE "a b"') == MailboxCommand("DELETE", "a b")
    assert one(b"A1 STATUS INBOX (MESSAGES UIDNEXT unseen)") == Status("INBOX", ("MESSAGES", "UIDNEXT", "UNSEEN"))
    assert utf7.decode(utf7.encode("Entwürfe & ドラフト")) == "Entwürfe & ドラフト"


def test_a_tilde_is_an_atom_character_unless_a_literal8_follows() -> None:
    """imaptest's group atoms: "~foo" is a name (it got BAD "expected a literal"); only "~{" starts a literal8."""
    assert one(b"A1 SELECT ~foo") == Select("~foo", read_only=False, condstore=False)
    assert one(b"A1 CREATE ~{3+}\r\nabc") == Create("abc")
    assert one(b'A1 LIST "" ~foo').patterns == ("~foo",)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "line",
    [
        b"A1 SELECT &Jjo",
        b"A1 SELECT !#$&'+,-.0123456789:;<=>?@^_`|[}",  # imaptest's group atoms: every atom character
        b'A1 CREATE "bad&Zz-name"',
        b'A1 CREATE "&AGE-"',  # "a", spelled a second way
        b'A1 DELETE "&AOk-&AOk-"',  # "\xe9\xe9", in two runs where one would do
        b'A1 EXAMINE "x&AOl-"',  # bits to spare
        b'A1 SUBSCRIBE "a\xffb"',  # neither UTF-8 nor modified UTF-7
        b"A1 UNSUBSCRIBE {3+}\r\na\x00b",
        b"A1 RENAME INBOX &",
        b"A1 STATUS &Jjo (MESSAGES)",
        b"A1 UID MOVE 1 &Jjo",
        b"A1 APPEND &Jjo {1+}\r\nx",
    ],
)
def test_a_name_no_mailbox_can_have_is_refused_not_a_parse_error(line: bytes) -> None:
    """Dovecot answers these NO (the server says NO [CANNOT]); they were BAD, as if the client spoke nonsense."""
    with pytest.raises(BadName) as raised:
        parse(line + b"\r\n")
    assert raised.value.tag == "A1"


def test_a_pattern_no_name_can_match_lists_nothing() -> None:
    """As Dovecot does: LIST answers OK, with the patterns that can match a name."""
    assert one(b'A1 LIST "" (&Jjo % "a\xffb" {3+}\r\na\x00b)').patterns == ("%",)  # type: ignore[attr-defined]
    assert one(b'A1 LIST "" !#$&\'+,-.0123456789:;<=>?@^_`|[}%*').patterns == ()  # type: ignore[attr-defined]
    assert one(b"A1 LSUB &Jjo *").patterns == ()  # type: ignore[attr-defined]
    assert one(b'A1 LIST "" "&ZeVnLIqe-/*"').patterns == ("日本語/*",)  # type: ignore[attr-defined]


def test_list_in_its_forms() -> None:
    assert one(b'A1 LIST "" *') == ListMailboxes("", ("*",), False, False)
    assert one(b'A1 LSUB "" "%"') == ListMailboxes("", ("%",), True, False, lsub=True)
    listed = one(b'A1 LIST (SPECIAL-USE) "" ("*" INBOX/%) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))')
    assert listed == ListMailboxes(
        "", ("*", "INBOX/%"), False, True, return_options=("CHILDREN", "STATUS MESSAGES UNSEEN"), extended=True
    )
    recursive = one(b'A1 LIST (SUBSCRIBED RECURSIVEMATCH REMOTE) "" % RETURN (STATUS (SIZE DELETED))')
    assert recursive == ListMailboxes(
        "", ("%",), True, False, return_options=("STATUS SIZE DELETED",), recursive=True, extended=True
    )
    # RFC 5258 §3: unknown options are BAD, and RECURSIVEMATCH alone selects nothing
    for bad in (b'(FOO) "" %', b'"" % RETURN (FOO)', b'(RECURSIVEMATCH) "" %', b'(RECURSIVEMATCH REMOTE) "" %'):
        with pytest.raises(ParseError):
            parse(b"A1 LIST " + bad)


def test_append_with_flags_date_and_a_synchronizing_literal() -> None:
    message = b"Subject: hi\r\n\r\nbody\r\n"
    appended = one(b'A1 APPEND Sent (\\Seen $Forwarded) "17-Jul-1996 02:44:25 -0700" {21}\r\n' + message)
    assert appended == Append(
        "Sent", ("\\Seen", "$Forwarded"), calendar.timegm((1996, 7, 17, 9, 44, 25, 0, 0, 0)), message
    )
    assert one(b"A1 APPEND INBOX {4}\r\nabcd") == Append("INBOX", (), None, b"abcd")
    # a literal8 (RFC 3516 §4.4) says the message may hold binary parts, which are stored base64
    assert one(b"A1 APPEND INBOX ~{4+}\r\na\0cd") == Append("INBOX", (), None, b"a\0cd", binary=True)
    assert one(b'A1 APPEND INBOX " 7-Jul-1996 02:44:25 +0000" {1}\r\nx').internal_date == calendar.timegm(  # type: ignore[attr-defined]
        (1996, 7, 7, 2, 44, 25, 0, 0, 0)
    )
    assert literal_announced(b"A1 APPEND INBOX {310}\r\n") == (310, True)
    assert literal_announced(b"A1 APPEND INBOX {310+}\r\n") == (310, False)
    assert literal_announced(b"A1 NOOP\r\n") is None


def test_fetch_items_sections_partials_and_macros() -> None:
    fetched = one(b"A1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject)] BODY[1.2.MIME]<0.100>)")
    assert fetched == Fetch(
        SequenceSet(((1, None),)),
        (
            FetchItem("FLAGS"),
            FetchItem("BODY", Section((), "HEADER.FIELDS", ("FROM", "SUBJECT")), peek=True),
            FetchItem("BODY", Section((1, 2), "MIME"), partial=(0, 100)),
            FetchItem("UID"),
        ),
        uid=True,
    )
    assert one(b"A1 FETCH 2,4:3 fast") == Fetch(
        SequenceSet(((2, 2), (4, 3))),
        (FetchItem("FLAGS"), FetchItem("INTERNALDATE"), FetchItem("RFC822.SIZE")),
        uid=False,
    )
    assert one(b"A1 FETCH 1 BODY[]").items == (FetchItem("BODY", Section()),)  # type: ignore[attr-defined]
    assert one(b"A1 FETCH 1 (UID MODSEQ) (CHANGEDSINCE 12345)").changed_since == 12345  # type: ignore[attr-defined]
    assert one(b"A1 UID FETCH $ FLAGS").sequence == SequenceSet((), saved=True)  # type: ignore[attr-defined]
    assert one(b"A1 SEARCH RETURN (SAVE MIN) $").return_options == ("SAVE", "MIN")  # type: ignore[attr-defined]
    with pytest.raises(ParseError):
        parse(b"A1 SEARCH RETURN (PARTIAL 1:5) ALL\r\n")
    binary = one(b"A1 FETCH 1 (BINARY.PEEK[1.2]<0.10> BINARY[] BINARY.SIZE[2])").items  # type: ignore[attr-defined]
    assert binary == (
        FetchItem("BINARY", Section((1, 2)), peek=True, partial=(0, 10)),
        FetchItem("BINARY", Section()),
        FetchItem("BINARY.SIZE", Section((2,))),
    )
    for bad in (b"BINARY[TEXT]", b"BINARY.PEEK[1.MIME]", b"BINARY.SIZE[1]<0.5>", b"BINARY"):
        with pytest.raises(ParseError):
            parse(b"A1 FETCH 1 " + bad + b"\r\n")
    assert SequenceSet(((4, 2), (7, None))).resolve(9) == [(2, 4), (7, 9)]
    assert SequenceSet(((None, None),)).contains(9, 9) and not SequenceSet(((1, 3),)).contains(4, 9)


def test_store_copy_move_expunge() -> None:
    assert one(b"A1 STORE 1:3 +FLAGS.SILENT (\\deleted)") == Store(
        SequenceSet(((1, 3),)), "add", True, ("\\Deleted",), uid=False
    )
    assert one(b"A1 UID STORE 5 (UNCHANGEDSINCE 7) FLAGS \\Seen $Label1") == Store(
        SequenceSet(((5, 5),)), "replace", False, ("\\Seen", "$Label1"), uid=True, unchanged_since=7
    )
    assert one(b"A1 UID MOVE 1,5 Trash") == Copy(SequenceSet(((1, 1), (5, 5))), "Trash", uid=True, move=True)
    assert one(b'A1 COPY 2 "Archive"') == Copy(SequenceSet(((2, 2),)), "Archive", uid=False, move=False)
    assert one(b"A1 UID EXPUNGE 3:4") == UidExpunge(SequenceSet(((3, 4),)))


def test_search_programs() -> None:
    searched = one(b'A1 UID SEARCH CHARSET UTF-8 OR FROM alice (SUBJECT "\xe4\xbc\x9a\xe8\xad\xb0" SINCE 1-Feb-1994)')
    assert searched == Search(
        SearchKey(
            "OR",
            keys=(
                SearchKey("FROM", text="alice"),
                SearchKey("AND", keys=(SearchKey("SUBJECT", text="会議"), SearchKey("SINCE", text="1994-02-01"))),
            ),
        ),
        uid=True,
    )
    assert one(b"A1 SEARCH 1:5 NOT DELETED UNSEEN") == Search(
        SearchKey(
            "AND",
            keys=(
                SearchKey("SEQ", sequence=SequenceSet(((1, 5),))),
                SearchKey("NOT", keys=(SearchKey("DELETED"),)),
                SearchKey("UNSEEN"),
            ),
        ),
        uid=False,
    )
    assert one(b"A1 SEARCH RETURN (MIN COUNT) HEADER Message-ID <x@y>").return_options == ("MIN", "COUNT")  # type: ignore[attr-defined]
    assert one(b"A1 SEARCH SUBJECT {6+}\r\n\xe4\xbc\x9a\xe8\xad\xb0").key == SearchKey("SUBJECT", text="会議")  # type: ignore[attr-defined]
    with pytest.raises(BadCharset):
        one(b"A1 SEARCH CHARSET KOI8-R TEXT x")


def test_enable_and_id() -> None:
    assert one(b"A1 ENABLE CONDSTORE utf8=accept") == Enable(("CONDSTORE", "UTF8=ACCEPT"))
    assert one(b'A1 ID ("name" "Thunderbird" "version" NIL)') == Id((("name", "Thunderbird"), ("version", None)))
    assert one(b"A1 ID NIL") == Id(None)


@pytest.mark.parametrize(
    "line",
    [
        b"2 uid fetch 1:* (FLAGS)",  # Thunderbird
        b"3 UID fetch 5 (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (From To Cc Bcc Subject Date Message-ID "
        b"Priority X-Priority References Newsgroups In-Reply-To Content-Type Reply-To)])",
        b'4 list (subscribed) "" "*" return (special-use)',
        b"a0004 UID FETCH 1:4 (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT "
        b"TO CC MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION IN-REPLY-TO REPLY-TO LINES LIST-POST "
        b"X-LABEL X-ORIGINAL-TO)])",  # mutt
        b'a0005 STATUS "INBOX" (MESSAGES UNSEEN RECENT)',
        b'5 APPEND "INBOX" (\\Seen) "17-Jul-1996 02:44:25 +0000" {3+}\r\nabc',  # mbsync
        b'6 ID ("name" "iPhone Mail" "version" "21A329" "os" "iOS" "os-version" "17.0 (21A329)")',
        b"7 UID STORE 3:5 +FLAGS.SILENT (\\Deleted \\Seen)",
        b"8 UID SEARCH UID 1:* NOT DELETED",
        b"9 FETCH 1 (BODYSTRUCTURE ENVELOPE RFC822.HEADER RFC822.TEXT BODY)",
        b"10 SELECT INBOX (CONDSTORE)",
    ],
)
def test_what_real_clients_send_parses(line: bytes) -> None:
    tag, _command = parse(line + b"\r\n")
    assert tag == line.split(b" ")[0].decode()


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"A1",
        b"A1 ",
        b"A+ NOOP",
        b"A1 FROB",
        b"A1 LOGIN alice",
        b'A1 LOGIN "unterminated',
        b"A1 SELECT",
        b"A1 FETCH 0 FLAGS",
        b"A1 FETCH 1 (FLAGS",
        b"A1 FETCH 1 BODY[HEADER.FIELDS ()]",
        b"A1 FETCH 1 BODY[MIME]",
        b"A1 FETCH 1 BODY[1.]",
        b"A1 FETCH 1 BODY[]<5>",
        b"A1 FETCH 1 NOSUCH",
        b"A1 STORE 1 FLAGZ (\\Seen)",
        b"A1 APPEND INBOX {10}\r\nshort",
        b'A1 APPEND INBOX "32-Jan-2020 00:00:00 +0000" {1}\r\nx',
        b"A1 SEARCH",
        b"A1 SEARCH BEFORE yesterday",
        b"A1 SEARCH ON 31-Feb-2024",
        b"A1 SEARCH OR FROM a",
        b"A1 STATUS INBOX (COLOUR)",
        b"A1 UID FROB 1",
        b"A1 NOOP extra",
    ],
)
def test_what_breaks_the_grammar_is_a_parse_error_with_the_tag(line: bytes) -> None:
    with pytest.raises(ParseError) as raised:
        parse(line + b"\r\n")
    if line.startswith(b"A1 "):
        assert raised.value.tag == "A1"


WORDS = [b"A1", b" ", b"UID", b"FETCH", b"STORE", b"SEARCH", b"LIST", b"APPEND", b"(", b")", b"[", b"]", b"<", b">"]
WORDS += [b"BODY", b".PEEK", b"HEADER.FIELDS", b"*", b":", b",", b"1", b'"', b"\\", b"{3}\r\n", b"{2+}\r\n", b"NIL"]
WORDS += [b"OR", b"NOT", b"CHARSET", b"UTF-8", b"FLAGS", b"+FLAGS", b"\\Seen", b"INBOX", b"&", b"-", b"\xff"]
WORDS += [b"BINARY", b".SIZE", b"$", b"RETURN", b"SAVE", b"RECURSIVEMATCH", b"SUBSCRIBED", b"~{2}\r\n", b"STATUS"]


@settings(max_examples=3000, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.sampled_from(WORDS) | st.binary(max_size=6), max_size=25).map(b"".join))
@example(b"A1 FETCH 1 BODY[1.2.3.4.5.6.7.8.9.10.11.12.13.14.15.16.17.18.19.20.21.22.23.24.25]")
@example(b"A1 SEARCH " + b"(" * 200 + b"ALL" + b")" * 200)
@example(b"A1 FETCH 99999999999999999999999 FLAGS")
def test_anything_else_is_a_parse_error_or_a_command(line: bytes) -> None:
    try:
        parse(line + b"\r\n")
    except (ParseError, BadCharset):
        pass


def test_a_search_program_is_bounded_in_keys_and_depth() -> None:
    """Literals let one SEARCH hold any number of keys (issue 15); each is parsed and tried on every message."""
    keys = b" SUBJECT {1+}\r\nx" * 1001
    with pytest.raises(OverLimit, match="too many search keys"):
        parse(b"a SEARCH" + keys + b"\r\n")
    assert isinstance(one(b"a SEARCH" + b" ALL" * 20), Search)
    with pytest.raises(OverLimit, match="too many search keys"):
        parse(b"a SEARCH" + b" ALL" * 21 + b"\r\n", max_search_keys=20)
    with pytest.raises(OverLimit, match="nests at most"):
        one(b"a SEARCH " + b"NOT " * 51 + b"ALL")
    with pytest.raises(OverLimit, match="nests at most"):
        one(b"a SEARCH " + b"(" * 60 + b"ALL" + b")" * 60)


def test_a_command_sent_again_is_not_parsed_again_but_a_password_is_never_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """Mail programs repeat a few commands all day: each is parsed once (issue 20). What is kept holds no
    LOGIN or AUTHENTICATE, and only so many commands."""
    from jitaku.mail.imap import parser

    monkeypatch.setattr(parser, "_PARSED", {})
    monkeypatch.setattr(parser, "PARSED_KEPT", 3)
    parsed: list[str] = []
    command = parser._command

    def counted(reader: parser._Reader, name: str) -> parser.Command:
        parsed.append(name)
        return command(reader, name)

    monkeypatch.setattr(parser, "_command", counted)
    assert parse(b"a1 SELECT INBOX\r\n") == ("a1", Select("INBOX", False, False))
    assert parse(b"b2 SELECT INBOX\r\n") == ("b2", Select("INBOX", False, False))
    assert parsed == ["SELECT"]
    for tag in (b"c3", b"d4"):
        parse(tag + b' LOGIN alice "secret words"\r\n')
        parse(tag + b" AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n")
    assert parsed == ["SELECT", "LOGIN", "AUTHENTICATE", "LOGIN", "AUTHENTICATE"]
    assert not any(b"secret" in data or b"AGFsaWNl" in data for data, _keys in parser._PARSED)
    for name in (b"Sent", b"Drafts", b"Trash"):
        parse(b"e5 STATUS " + name + b" (MESSAGES)\r\n")
    assert len(parser._PARSED) == 3
    with pytest.raises(ParseError):  # a command not kept is parsed, and refused, again
        parse(b"f6 SELECT\r\n")
