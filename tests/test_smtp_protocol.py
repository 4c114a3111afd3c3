"""mail/smtp/machine.py without sockets: bytes in, replies out, whatever the reads are cut into."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jitaku.mail.smtp import syntax
from jitaku.mail.smtp.machine import (
    Close,
    Greeted,
    Login,
    Machine,
    MailFrom,
    Message,
    RcptTo,
    Settings,
    StartTls,
)

MX = Settings("mx.test", 10_000, 2_000, 20, submission=False, starttls=True)
SUBMISSION = Settings("mx.test", 10_000, 2_000, 20, submission=True, starttls=True, loopback=True)


class Kept:
    """A sink that keeps what it is given, in memory."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.discarded = False

    def add(self, data: bytes) -> None:
        self.parts.append(data)

    def discard(self) -> None:
        self.parts.clear()
        self.discarded = True

    @property
    def data(self) -> bytes:
        return b"".join(self.parts)


class Session:
    """A machine driven as the asyncio adapter drives it, with a policy that takes every recipient at
    local.test and refuses the rest, and stores messages in `stored`."""

    def __init__(self, settings: Settings = MX) -> None:
        self.machine = Machine(settings, Kept)
        self.stored: list[bytes] = []
        self.events: list[object] = []
        self.writes: list[bytes] = []
        self._drive()

    def _drive(self) -> None:
        machine = self.machine
        while (event := machine.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, MailFrom):
                machine.answer("250 2.1.0 Ok")
            elif isinstance(event, RcptTo):
                accepted = event.recipient.endswith("@local.test") or event.recipient == "postmaster"
                machine.answer("250 2.1.5 Ok" if accepted else "554 5.7.1 Relay access denied", route=event.recipient)
            elif isinstance(event, Message):
                assert isinstance(event.data, Kept)
                self.stored.append(event.data.data)
                machine.answer(f"250 2.0.0 Ok: queued as Q{len(self.stored)}")
            elif isinstance(event, Login):
                if event.password == "right":
                    machine.logged_in(event.username)
                else:
                    machine.answer("535 5.7.8 Authentication credentials invalid")
            elif isinstance(event, StartTls):
                machine.tls_started()
        out = machine.output()
        if out:
            self.writes.append(out)

    def send(self, data: bytes) -> list[str]:
        self.machine.feed(data)
        self._drive()
        return self.replies()

    def replies(self) -> list[str]:
        text = b"".join(self.writes).decode()
        self.writes.clear()
        return text.split("\r\n")[:-1]


def codes(replies: list[str]) -> list[str]:
    return [reply[:3] for reply in replies if reply[3:4] == " "]


DIALOG = (
    b"EHLO client.test\r\nMAIL FROM:<carol@remote.test>\r\nRCPT TO:<alice@local.test>\r\nDATA\r\n"
    b"Subject: hi\r\n\r\n..dotted\r\nbody\r\n.\r\nQUIT\r\n"
)


def test_a_pipelined_dialog_is_answered_in_one_write_per_batch() -> None:
    session = Session()
    assert session.replies() == ["220 mx.test ESMTP jitaku"]
    session.machine.feed(DIALOG)
    session._drive()
    assert len(session.writes) == 1
    assert codes(session.replies()) == ["250", "250", "250", "354", "250", "221"]
    assert session.stored == [b"Subject: hi\r\n\r\n.dotted\r\nbody\r\n"]
    assert isinstance(session.events[-1], Close)
    assert session.machine.closed


@pytest.mark.parametrize("cut", range(1, len(DIALOG)))
def test_a_dialog_cut_at_any_byte_reads_the_same(cut: int) -> None:
    session = Session()
    session.replies()
    replies = session.send(DIALOG[:cut]) + session.send(DIALOG[cut:])
    assert codes(replies) == ["250", "250", "250", "354", "250", "221"]
    assert session.stored == [b"Subject: hi\r\n\r\n.dotted\r\nbody\r\n"]


def test_a_dialog_fed_a_byte_at_a_time_reads_the_same() -> None:
    session = Session()
    replies = [reply for byte in DIALOG for reply in session.send(bytes([byte]))]
    assert codes(replies) == ["220", "250", "250", "250", "354", "250", "221"]
    assert session.stored == [b"Subject: hi\r\n\r\n.dotted\r\nbody\r\n"]


def start_data(session: Session) -> None:
    replies = session.send(b"EHLO c\r\nMAIL FROM:<c@remote.test>\r\nRCPT TO:<a@local.test>\r\nDATA\r\n")
    assert replies[-1].startswith("354"), replies


def test_the_end_of_data_split_across_reads() -> None:
    for tail in ([b"x\r", b"\n.", b"\r\n"], [b"x\r\n", b".\r", b"\n"], [b"x", b"\r\n.\r\n"]):
        session = Session()
        start_data(session)
        replies = [reply for part in tail for reply in session.send(part)]
        assert codes(replies) == ["250"], (tail, replies)
        assert session.stored == [b"x\r\n"]


def test_an_empty_message_and_a_bare_lf_dot_is_not_the_end() -> None:
    session = Session()
    start_data(session)
    assert codes(session.send(b".\r\n")) == ["250"]
    assert session.stored == [b""]
    start_data(session)
    assert session.send(b"one\n.\nMAIL FROM:<x@y.test>\r\n") == []  # still DATA: a bare LF ends nothing
    assert codes(session.send(b".\r\n")) == ["250"]
    assert session.stored[-1] == b"one\n.\nMAIL FROM:<x@y.test>\r\n"


def test_dot_unstuffing_at_the_start_and_across_reads() -> None:
    session = Session()
    start_data(session)
    session.send(b".leading\r\n.")
    session.send(b".two\r\n")
    assert codes(session.send(b"...\r\n.\r\n")) == ["250"]
    assert session.stored == [b"leading\r\n.two\r\n..\r\n"]


def test_an_over_long_data_line_refuses_the_message_and_keeps_nothing() -> None:
    session = Session()
    start_data(session)
    assert session.send(b"Subject: x\r\n\r\n" + b"y" * 999 + b"\r\n") == []
    sink = session.machine._data
    assert isinstance(sink, Kept) and sink.parts
    for _ in range(50):  # a line without an end: kept to no length
        assert session.send(b"z" * 4096) == []
        assert len(session.machine._buffer) <= 1
    assert sink.discarded and not sink.parts
    assert session.send(b"\r\nmore\r\n.\r\n") == ["500 5.5.6 Line too long (RFC 5321 §4.5.3.1.6)"]
    assert session.stored == []
    assert codes(session.send(b"NOOP\r\n")) == ["250"]


def test_a_whole_line_one_byte_too_long_is_refused() -> None:
    session = Session()
    start_data(session)
    assert codes(session.send(b"\r\n" + b"y" * 1000 + b"\r\n.\r\n")) == ["500"]


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.sampled_from([0, 1, 498, 499, 500, 501, 998, 999, 1000, 1001, 2500]), min_size=1, max_size=8)
)
def test_a_data_line_is_refused_exactly_when_it_is_over_999_octets(lengths: list[int]) -> None:
    """Wherever a long line falls among the others: its length is found without splitting every chunk."""
    session = Session(Settings("mx.test", 100_000, 2_000, 20, submission=False, starttls=True))
    start_data(session)
    lines = [b"y" * length for length in lengths]
    reply = session.send(b"\r\n" + b"\r\n".join(lines) + b"\r\n.\r\n")
    assert codes(reply) == (["500"] if max(lengths) > 999 else ["250"])


def test_the_size_limit_and_the_header_limits() -> None:
    session = Session()
    start_data(session)
    assert codes(session.send(b"\r\n" + (b"x" * 98 + b"\r\n") * 101 + b".\r\n")) == ["552"]
    start_data(session)
    replies = session.send(b"X-Long: a\r\n" + b" b\r\n" * 700 + b"\r\n.\r\n")
    assert replies == ["552 5.3.4 Message header too large: more than 2000 bytes"]
    start_data(session)
    replies = session.send(b"".join(b"X-%d: v\r\n" % n for n in range(21)) + b"\r\nbody\r\n.\r\n")
    assert replies == ["552 5.3.4 Too many header fields: more than 20"]
    start_data(session)
    header = b"".join(b"X-%d: v\r\n\tw\r\n" % n for n in range(20)) + b"\r\n" + b"X-1: body\r\n" * 30
    assert codes(session.send(header + b".\r\n")) == ["250"]
    assert session.machine.transaction.sender is None  # the transaction ends with the data
    assert codes(session.send(b"MAIL FROM:<c@remote.test> SIZE=10001\r\n")) == ["552"]


def test_over_long_command_lines_are_refused_and_the_session_goes_on() -> None:
    session = Session()
    session.replies()
    assert session.send(b"NOOP " + b"x" * 600 + b"\r\n") == ["500 5.5.2 Command line too long"]
    assert session.send(b"NOOP " + b"x" * 5000) == []
    assert len(session.machine._buffer) <= 1
    assert session.send(b"x\r\nNOOP\r\n") == ["500 5.5.2 Command line too long", "250 2.0.0 OK"]


@pytest.mark.parametrize(
    "command",
    [
        b"MAIL FROM:<carol@remote",
        b"MAIL FROM:<a b@x.test>",
        b"MAIL FROM:carol@remote.test",
        b"MAIL FROM:<carol@@remote.test>",
        b"MAIL FROM:<@>",
        b"MAIL FROM:<carol@remote.test.>",
        b"MAIL FROM:<carol@remote.test>>",
        b"MAIL FROM:<\xff@remote.test>",
    ],
)
def test_a_sender_that_is_not_a_path_is_refused_with_5_1_7(command: bytes) -> None:
    session = Session()
    session.send(b"EHLO c\r\n")
    assert session.send(command + b"\r\n") == ["501 5.1.7 Bad sender address syntax"]


@pytest.mark.parametrize(
    ("argument", "sender"),
    [
        (b"<>", ""),
        (b"<carol@remote.test>", "carol@remote.test"),
        (b" <carol@remote.test> SIZE=100 BODY=8BITMIME", "carol@remote.test"),
        (b'<"carol smith"@remote.test>', '"carol smith"@remote.test'),
        (b"<@relay.test,@b.test:carol@remote.test>", "carol@remote.test"),
        (b"<carol@[192.0.2.1]>", "carol@[192.0.2.1]"),
        ("<jos\u00e9@b\u00fccher.test> SMTPUTF8".encode(), "jos\u00e9@b\u00fccher.test"),
    ],
)
def test_senders_rfc_5321_allows(argument: bytes, sender: str) -> None:
    session = Session()
    session.send(b"EHLO c\r\n")
    assert codes(session.send(b"MAIL FROM:" + argument + b"\r\n")) == ["250"]
    assert session.machine.transaction.sender == sender


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"RCPT TO:alice@local.test", "501 5.1.3 Bad recipient address syntax"),
        (b"RCPT TO:<alice@local.test", "501 5.1.3 Bad recipient address syntax"),
        (b"RCPT TO:<a b@local.test>", "501 5.1.3 Bad recipient address syntax"),
        (b"RCPT TO:<>", "501 5.1.3 Bad recipient address syntax"),
        (b"RCPT TO:<PostMaster>", "250 2.1.5 Ok"),
        (b"RCPT TO:<alice@local.test@remote.test>", "554 5.7.1 Relay access denied"),  # the policy's to refuse
        (b"RCPT TO:<alice@local.test> NOTIFY=NEVER", "555 5.5.4 RCPT TO parameters not recognized or not implemented"),
        (b"RCPT alice@local.test", "501 5.5.4 Syntax: RCPT TO:<address> [SP <mail-parameters>]"),
    ],
)
def test_recipients(command: bytes, reply: str) -> None:
    session = Session()
    session.send(b"EHLO c\r\nMAIL FROM:<c@remote.test>\r\n")
    assert session.send(command + b"\r\n") == [reply]


def test_ehlo_offers_the_extensions_and_every_later_reply_has_an_enhanced_code() -> None:
    session = Session()
    session.replies()
    assert session.send(b"EHLO c\r\n") == [
        "250-mx.test",
        "250-PIPELINING",
        "250-SIZE 10000",
        "250-8BITMIME",
        "250-SMTPUTF8",
        "250-ENHANCEDSTATUSCODES",
        "250-STARTTLS",
        "250 HELP",
    ]
    assert isinstance(session.events[0], Greeted)
    replies = session.send(
        b"\r\nBOGUS\r\nMAIL FROM:\r\nRCPT TO:<a@local.test>\r\nDATA\r\nVRFY a\r\nHELP\r\nSTARTTLS x\r\n"
        b"AUTH PLAIN\r\nRSET\r\nNOOP\r\n\xff\r\nEXPN x\r\n"
    )
    assert len(replies) == 13
    assert all(len(reply.split(" ")[1].split(".")) == 3 for reply in replies), replies


def test_commands_out_of_turn() -> None:
    session = Session()
    session.replies()
    assert session.send(b"MAIL FROM:<c@remote.test>\r\n") == ["503 5.5.1 Error: send HELO first"]
    session.send(b"HELO c\r\n")
    assert session.send(b"MAIL FROM:<c@remote.test> SIZE=10\r\n")[0].startswith("501 5.5.4")  # no ESMTP after HELO
    assert session.send(b"DATA\r\n") == ["503 5.5.1 Error: need RCPT command"]
    session.send(b"MAIL FROM:<c@remote.test>\r\n")
    assert session.send(b"MAIL FROM:<c@remote.test>\r\n") == ["503 5.5.1 Error: nested MAIL command"]


def test_five_unrecognized_commands_close_the_session() -> None:
    session = Session()
    session.replies()
    replies = session.send(b"X\r\n" * 6 + b"NOOP\r\n")
    assert replies[-1] == "502 5.5.1 Too many unrecognized commands, goodbye." and len(replies) == 5
    assert session.machine.closed


def test_submission_needs_auth_and_takes_plain_and_login() -> None:
    session = Session(SUBMISSION)
    ehlo = session.send(b"EHLO c\r\n")
    assert "250-AUTH LOGIN PLAIN" in ehlo
    assert session.send(b"MAIL FROM:<alice@local.test>\r\n") == ["530 5.7.0 Authentication required"]
    assert session.send(b"AUTH PLAIN AGFsaWNlAHdyb25n\r\n") == ["535 5.7.8 Authentication credentials invalid"]
    assert session.send(b"AUTH LOGIN\r\n") == ["334 VXNlcm5hbWU6"]
    assert session.send(b"YWxpY2U=\r\n") == ["334 UGFzc3dvcmQ6"]
    assert session.send(b"cmlnaHQ=\r\n") == ["235 2.7.0 Authentication successful"]
    assert session.machine.user == "alice"
    assert session.send(b"AUTH PLAIN\r\n") == ["503 5.5.1 Already authenticated"]
    assert codes(session.send(b"MAIL FROM:<alice@local.test>\r\n")) == ["250"]


def test_auth_plain_with_a_challenge_and_aborted() -> None:
    session = Session(SUBMISSION)
    session.send(b"EHLO c\r\n")
    assert session.send(b"AUTH PLAIN\r\n") == ["334 "]
    assert session.send(b"*\r\n") == ["501 5.7.0 Auth aborted"]
    assert session.send(b"AUTH PLAIN\r\n") == ["334 "]
    assert session.send(b"not base64!\r\n") == ["501 5.5.2 Can't decode base64"]
    assert session.send(b"AUTH plain AGFsaWNlAHJpZ2h0\r\n") == ["235 2.7.0 Authentication successful"]


def test_no_auth_before_tls_off_loopback_and_none_on_the_mx() -> None:
    remote = Session(Settings("mx.test", 10_000, 2_000, 20, submission=True, starttls=True))
    assert not any("AUTH" in reply for reply in remote.send(b"EHLO c\r\n"))
    assert remote.send(b"AUTH PLAIN AGFsaWNlAHJpZ2h0\r\n")[0].startswith("538 5.7.11")
    assert remote.send(b"STARTTLS\r\n") == ["220 2.0.0 Ready to start TLS"]
    assert any("AUTH LOGIN PLAIN" in reply for reply in remote.send(b"EHLO c\r\n"))
    mx = Session()
    mx.send(b"EHLO c\r\n")
    assert mx.send(b"AUTH PLAIN AGFsaWNlAHJpZ2h0\r\n") == ["504 5.5.4 Unrecognized authentication type"]


def test_starttls_forgets_what_was_sent_before_the_handshake_and_the_helo() -> None:
    session = Session()
    session.send(b"EHLO c\r\n")
    machine = session.machine
    machine.feed(b"STARTTLS\r\nMAIL FROM:<injected@remote.test>\r\n")
    assert isinstance(machine.next_event(), StartTls)
    assert machine.next_event() is None
    machine.tls_started()
    assert machine.output() == b"220 2.0.0 Ready to start TLS\r\n"
    assert session.send(b"MAIL FROM:<c@remote.test>\r\n") == ["503 5.5.1 Error: send HELO first"]
    assert "250-STARTTLS" not in session.send(b"EHLO c\r\n")
    assert session.send(b"STARTTLS\r\n") == ["554 5.5.1 Error: TLS already active"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=20))
def test_any_bytes_get_only_well_formed_replies(chunks: list[bytes]) -> None:
    session = Session(SUBMISSION)
    for chunk in chunks:
        for reply in session.send(chunk):
            assert reply[:3].isdigit() and reply[3:4] in (" ", "-"), reply
        assert len(session.machine._buffer) <= 1100


def test_a_remembered_path_cannot_be_changed_by_a_session_that_reads_it() -> None:
    """MAIL and RCPT arguments are parsed once and the Path shared by every session that sends the same text:
    one that changed its parameters would change them for the next sender too."""
    first = syntax.reverse_path("<a@example.test> SIZE=100")
    with pytest.raises(TypeError):
        first.parameters["SIZE"] = "1"  # type: ignore[index]
    assert syntax.reverse_path("<a@example.test> SIZE=100") is first
    assert dict(first.parameters) == {"SIZE": "100"}
