"""lists/verp.py, bounces.py, commands.py, dmarc.py: the small parts the list runner is built from."""

from __future__ import annotations

import asyncio
import base64
import quopri
import re
from collections.abc import Iterator
from typing import Any

import dns.asyncresolver
import dns.resolver
import pytest
from dnslib import DNSRecord
from dnslib.server import BaseResolver, DNSServer

from jitaku import addresses
from jitaku.lists import bounces, commands, dmarc, verp
from jitaku.lists.commands import Command
from jitaku.lists.dmarc import DmarcPolicy, DmarcUnknown
from jitaku.mail.headers import parse
from jitaku.resolver import Nameserver, configure
from tests.peers import Zone, free_port, serve, stop_serving

# --- verp -------------------------------------------------------------------------------------------------------------

KEY = bytes.fromhex("42" * 32)


@pytest.mark.parametrize(
    "member",
    [
        "bob@example.com",
        "bob+tag@example.com",
        "a=b@example.com",
        "x=y=z@sub.example.co.jp",
        "first.last-name@example.org",
        "x-bounces+y=z@example.net",
        "=@example.com",
    ],
)
def test_verp_round_trips_any_member_local_part(member: str) -> None:
    address = verp.bounce_address("team@lists.example.test", member, KEY)
    assert address.startswith("team-bounces+") and address.endswith("@lists.example.test")
    parsed = verp.parse_bounce_address(address)
    assert parsed is not None and (parsed.list_address, parsed.member) == ("team@lists.example.test", member)
    assert verp.signed_member(parsed, KEY, []) == member
    assert addresses.role_of(address) == ("team@lists.example.test", "bounces")


def test_verp_form_is_mailmans_with_a_tag() -> None:
    address = verp.bounce_address("team@example.test", "bob@example.com", KEY)
    assert re.fullmatch(r"team-bounces\+[a-z2-7]{8}=bob=example\.com@example\.test", address)


def test_bounce_address_needs_two_addresses() -> None:
    with pytest.raises(ValueError):
        verp.bounce_address("team", "bob@example.com", KEY)
    with pytest.raises(ValueError):
        verp.bounce_address("team@example.test", "bob", KEY)


def test_parse_bounce_address_without_or_with_unreadable_or_unsigned_member() -> None:
    nobody = verp.BounceAddress("team@example.test", None, None)
    assert verp.parse_bounce_address("team-bounces@example.test") == nobody
    assert verp.parse_bounce_address("team-bounces+garbage@example.test") == nobody
    assert verp.parse_bounce_address("team-bounces+@example.test") == nobody
    assert verp.parse_bounce_address("TEAM-BOUNCES+bob=example.com@example.test") == verp.BounceAddress(
        "TEAM@example.test", "bob@example.com", None
    )


@pytest.mark.parametrize(
    "recipient",
    ["team@example.test", "team-request@example.test", "-bounces@example.test", "bounces@example.test", "nope"],
)
def test_parse_bounce_address_refuses_other_addresses(recipient: str) -> None:
    assert verp.parse_bounce_address(recipient) is None


# --- bounces ----------------------------------------------------------------------------------------------------------

POSTFIX_DSN = b"""\
Return-Path: <>
From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
To: team-bounces+bob=example.com@example.test
Subject: Undelivered Mail Returned to Sender
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
\tboundary="4A1B2C3D.1700000000/mx.example.com"

This is a MIME-encapsulated message.

--4A1B2C3D.1700000000/mx.example.com
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.com.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

<Bob@example.com>: host mx.example.com[192.0.2.1] said: 550 5.1.1
    <bob@example.com>: Recipient address rejected: User unknown

--4A1B2C3D.1700000000/mx.example.com
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
X-Postfix-Queue-ID: 4A1B2C3D
Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0900 (JST)

Final-Recipient: rfc822; Bob@example.com
Original-Recipient: rfc822;bob@example.com
Action: failed
Status: 5.1.1
Remote-MTA: dns; mx.example.com
Diagnostic-Code: smtp; 550 5.1.1 <bob@example.com>: Recipient address rejected:
    User unknown

--4A1B2C3D.1700000000/mx.example.com
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: alice@example.test
To: team@example.test
Subject: hello

--4A1B2C3D.1700000000/mx.example.com--
"""

DELAYED_DSN = b"""\
From: MAILER-DAEMON@mx.example.com
To: team-bounces@example.test
Subject: Delayed Mail (still being retried)
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b1"

--b1
Content-Type: text/plain

This is the mail system at host mx.example.com. Your message is delayed.

--b1
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com

Final-Recipient: rfc822; carol@example.net
Action: delayed
Status: 4.4.1
Diagnostic-Code: X-Postfix; connect to mx.example.net[192.0.2.9]:25: Connection timed out

--b1--
"""

QMAIL_BOUNCE = b"""\
From: MAILER-DAEMON@qmail.example.org
To: team-bounces@example.test
Subject: failure notice

Hi. This is the qmail-send program at qmail.example.org.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<bob@example.com>:
Sorry, no mailbox here by that name. (#5.1.1)

--- Below this line is a copy of the message.

Return-Path: <team-bounces@example.test>
From: alice@example.test
Subject: hello
"""

EXIM_BOUNCE = b"""\
From: Mail Delivery System <Mailer-Daemon@exim.example.net>
To: team-bounces@example.test
Subject: Mail delivery failed: returning message to sender
X-Failed-Recipients: dave@example.net
Auto-Submitted: auto-replied

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  dave@example.net
    Unrouteable address
"""

VACATION = b"""\
From: bob@example.com
To: team@example.test
Subject: Out of office: hello
Auto-Submitted: auto-replied (vacation)

I am away until Monday.
"""

PLAIN_POST = b"""\
From: alice@example.test
To: team@example.test
Subject: lunch?
X-Auto-Response-Suppress: All
Precedence: list
Auto-Submitted: no

Shall we?
"""


def test_postfix_dsn_names_the_permanent_failure() -> None:
    assert bounces.failures(POSTFIX_DSN) == bounces.Failures({"bob@example.com"}, set(), set())
    assert is_auto_reply(POSTFIX_DSN)


def test_delayed_dsn_is_a_temporary_failure() -> None:
    assert bounces.failures(DELAYED_DSN) == bounces.Failures(set(), {"carol@example.net"}, set())
    assert is_auto_reply(DELAYED_DSN)


def test_qmail_bounce_without_any_standard_format() -> None:
    assert bounces.failures(QMAIL_BOUNCE) == bounces.Failures({"bob@example.com"}, set(), set())


def test_exim_bounce() -> None:
    assert bounces.failures(EXIM_BOUNCE) == bounces.Failures({"dave@example.net"}, set(), set())
    assert is_auto_reply(EXIM_BOUNCE.replace(b"Auto-Submitted: auto-replied\n", b""))


@pytest.mark.parametrize(
    "junk",
    [
        b"",
        b"\x00\xff\xfe garbage \x80\x81\r\n\r\n\xff",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n"
        b"Content-Type: message/delivery-status\n\n\xff\xfe: \x00\n\nAction: failed\nFinal-Recipient: \xff\n--x",
        bytes(range(256)) * 8,
        b"From: x@example.com\nContent-Type: multipart/report; report-type=delivery-status; boundary=x\n\n--x\n"
        b"Content-Type: message/delivery-status\n\nAction: failed\nFinal-Recipient: rfc822; =?utf-8?b?zzz?=\n--x--\n",
    ],
)
def test_garbage_is_no_failure_and_never_raises(junk: bytes) -> None:
    assert bounces.failures(junk) == bounces.Failures(set(), set(), set())


def test_posts_and_auto_replies_are_no_failures() -> None:
    assert bounces.failures(VACATION) == bounces.Failures(set(), set(), set())
    assert bounces.failures(PLAIN_POST) == bounces.Failures(set(), set(), set())


def test_auto_replies_are_recognised() -> None:
    assert is_auto_reply(VACATION)
    assert not is_auto_reply(PLAIN_POST)


@pytest.mark.parametrize(
    "field",
    [
        "Auto-Submitted: auto-generated",
        "X-Autoreply: yes",
        "X-Autorespond: Out of office",
        "Precedence: bulk",
        "Precedence: JUNK",
        "Precedence: auto_reply",
        "X-Failed-Recipients: bob@example.com",
        'Content-Type: multipart/report; report-type="delivery-status"; boundary=z',
    ],
)
def test_each_machine_marker_alone_makes_an_auto_reply(field: str) -> None:
    message = f"From: x@example.com\nSubject: hi\n{field}\n\nbody\n".encode()
    assert is_auto_reply(message)


@pytest.mark.parametrize(
    "field",
    [
        "X-Auto-Response-Suppress: All",
        "Precedence: list",
        "Auto-Submitted: no",
        "Auto-Submitted: No (written by a person)",
        "Content-Type: multipart/report; report-type=disposition-notification; boundary=z",
        "Content-Type: multipart/mixed; report-type=delivery-status; boundary=z",
    ],
)
def test_markers_that_do_not_make_an_auto_reply(field: str) -> None:
    message = f"From: x@example.com\nSubject: hi\n{field}\n\nbody\n".encode()
    assert not is_auto_reply(message)


# --- commands ---------------------------------------------------------------------------------------------------------


def request(subject: str = "", body: bytes = b"", headers: str = "") -> bytes:
    return f"From: bob@example.com\nTo: team-request@example.test\nSubject: {subject}\n{headers}\n".encode() + body


def test_subject_alone() -> None:
    assert commands.parse(request("subscribe")) == [Command("subscribe", None)]
    assert commands.parse(request("  UNSUBSCRIBE ")) == [Command("unsubscribe", None)]


def test_reply_to_a_confirmation_keeps_the_token_case() -> None:
    assert commands.parse(request("Re: confirm 3f9aBC_d-12")) == [Command("confirm", "3f9aBC_d-12")]
    assert commands.parse(request("RE: Re[2]: Fwd: confirm abc")) == [Command("confirm", "abc")]
    assert commands.parse(request("返信： confirm abc")) == [Command("confirm", "abc")]


def test_every_spelling() -> None:
    body = (
        b"subscribe\njoin\nunsubscribe\nleave\nbye\nhelp\nmembers\nwho\nget 12\nget 012\nconfirm tok\n"
        b"# help\n#bye\n# get 7\nGet 3\n  # WHO  \n"
    )
    assert commands.parse(request("", body)) == [
        Command("subscribe", None),
        Command("unsubscribe", None),
        Command("help", None),
        Command("members", None),
        Command("get", "12"),
        Command("confirm", "tok"),
        Command("get", "7"),
        Command("get", "3"),
    ]


def test_subject_comes_first_and_duplicates_collapse() -> None:
    assert commands.parse(request("help", b"subscribe\nhelp\nsubscribe\n")) == [
        Command("help", None),
        Command("subscribe", None),
    ]


@pytest.mark.parametrize(
    "line",
    [
        "unsubscribe other@example.com",
        "get 1-5",
        "get",
        "get twelve",
        "confirm",
        "help me",
        "please subscribe me",
        "## help",
        "> subscribe",
        "subscribe.",
    ],
)
def test_lines_that_are_not_exactly_a_command_are_skipped(line: str) -> None:
    assert commands.parse(request("Re: my question", f"{line}\nhelp\n".encode())) == [Command("help", None)]


def test_signature_ends_the_commands() -> None:
    body = b"help\n\n-- \nbob\nunsubscribe\n"
    assert commands.parse(request("", body)) == [Command("help", None)]
    assert commands.parse(request("", b"help\n--\nunsubscribe\n")) == [Command("help", None)]


def test_reading_stops_after_twenty_non_empty_lines() -> None:
    letter = b"".join(b"line %d of a letter\n\n\n" % n for n in range(19))
    assert commands.parse(request("", letter + b"> quoted\nbye\n")) == []
    assert commands.parse(request("", letter + b"bye\nhelp\n")) == [Command("unsubscribe", None)]


def test_full_width_forms() -> None:
    body = "\u3000ｓｕｂｓｃｒｉｂｅ\u3000\n＃\u3000ｇｅｔ\u3000１２\n".encode()
    assert commands.parse(request("", body, "Content-Type: text/plain; charset=utf-8\n")) == [
        Command("subscribe", None),
        Command("get", "12"),
    ]


def test_iso_2022_jp_body_and_encoded_subject() -> None:
    text = "こんにちは。\n\u3000ｂｙｅ\n# help\n"
    subject = "=?ISO-2022-JP?B?" + base64.b64encode("\u3000confirm abc".encode("iso-2022-jp")).decode() + "?="
    message = request(subject, text.encode("iso-2022-jp"), "Content-Type: text/plain; charset=ISO-2022-JP\n")
    assert commands.parse(message) == [Command("confirm", "abc"), Command("unsubscribe", None), Command("help", None)]
    unlabelled = request("", text.encode("iso-2022-jp"))
    assert commands.parse(unlabelled) == [Command("unsubscribe", None), Command("help", None)]


def test_shift_jis_quoted_printable() -> None:
    text = "よろしく①\r\n\u3000members\r\n".encode("cp932")
    headers = (
        "MIME-Version: 1.0\nContent-Type: text/plain; charset=Shift_JIS\nContent-Transfer-Encoding: quoted-printable\n"
    )
    assert commands.parse(request("", quopri.encodestring(text), headers)) == [Command("members", None)]


def test_multipart_alternative_reads_the_plain_part_and_base64() -> None:
    plain = base64.b64encode("\u3000unsubscribe\n".encode()).decode()
    body = (
        "--alt\nContent-Type: text/html; charset=utf-8\n\n<p>help</p>\n"
        f"--alt\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n{plain}\n"
        "--alt--\n"
    ).encode()
    headers = 'MIME-Version: 1.0\nContent-Type: multipart/alternative; boundary="alt"\n'
    assert commands.parse(request("", body, headers)) == [Command("unsubscribe", None)]


def test_html_only_and_attachments_give_no_body_commands() -> None:
    html = request("", b"<p>help</p>\n", "Content-Type: text/html\n")
    assert commands.parse(html) == []
    body = (
        b"--m\nContent-Type: text/html\n\n<p>x</p>\n"
        b"--m\nContent-Type: text/plain\nContent-Disposition: attachment; filename=a.txt\n\nunsubscribe\n--m--\n"
    )
    assert commands.parse(request("", body, 'Content-Type: multipart/mixed; boundary="m"\n')) == []


def test_garbage_gives_no_commands() -> None:
    assert commands.parse(b"\xff\xfe\x00garbage") == []
    assert commands.parse(request("", b"\xff\xfe\nhelp\n", "Content-Type: text/plain; charset=no-such-charset\n")) == [
        Command("help", None)
    ]


# --- dmarc ------------------------------------------------------------------------------------------------------------


@pytest.fixture
def dmarc_zone(dns_zone: tuple[Zone, int], monkeypatch: pytest.MonkeyPatch) -> Zone:
    """The dns_zone fixture's DNS server, with dnspython's default resolvers pointed at it for this test only."""
    zone, port = dns_zone
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    configure((Nameserver("127.0.0.1", port),))
    return zone


def lookup(domain: str) -> DmarcPolicy | None:
    return asyncio.run(dmarc.lookup(domain))


def test_policy_at_the_exact_domain(dmarc_zone: Zone) -> None:
    dmarc_zone.add('_dmarc.example.com. 300 IN TXT "v=DMARC1; p=reject; sp=none; rua=mailto:d@example.com"')
    assert lookup("example.com") == DmarcPolicy("example.com", "reject")
    assert lookup("Example.COM.") == DmarcPolicy("example.com", "reject")


def test_subdomain_uses_sp_of_the_organizational_domain(dmarc_zone: Zone) -> None:
    dmarc_zone.add('_dmarc.example.co.jp. 300 IN TXT "v=DMARC1; p=quarantine; sp=reject"')
    dmarc_zone.add('_dmarc.example.jp. 300 IN TXT "v=DMARC1; p=quarantine"')
    dmarc_zone.add('_dmarc.example.ne.jp. 300 IN TXT "v=DMARC1; p=reject; sp=bogus"')
    assert lookup("sub.example.co.jp") == DmarcPolicy("example.co.jp", "reject")
    assert lookup("a.b.example.co.jp") == DmarcPolicy("example.co.jp", "reject")
    assert lookup("example.co.jp") == DmarcPolicy("example.co.jp", "quarantine")
    assert lookup("sub.example.jp") == DmarcPolicy("example.jp", "quarantine")
    assert lookup("sub.example.ne.jp") == DmarcPolicy("example.ne.jp", "reject")


def test_own_record_of_a_subdomain_wins(dmarc_zone: Zone) -> None:
    dmarc_zone.add('_dmarc.example.org. 300 IN TXT "v=DMARC1; p=reject; sp=reject"')
    dmarc_zone.add('_dmarc.news.example.org. 300 IN TXT "v=DMARC1; p=none"')
    assert lookup("news.example.org") == DmarcPolicy("news.example.org", "none")


def test_p_none_and_unusable_p(dmarc_zone: Zone) -> None:
    dmarc_zone.add('_dmarc.none.example. 300 IN TXT "v=DMARC1; p=none"')
    dmarc_zone.add('_dmarc.nop.example. 300 IN TXT "v=DMARC1; rua=mailto:r@nop.example"')
    dmarc_zone.add('_dmarc.badp.example. 300 IN TXT "v=DMARC1; p=maybe"')
    assert lookup("none.example") == DmarcPolicy("none.example", "none")
    assert lookup("nop.example") == DmarcPolicy("nop.example", "none")
    assert lookup("badp.example") == DmarcPolicy("badp.example", "none")


def test_record_split_into_several_strings(dmarc_zone: Zone) -> None:
    dmarc_zone.add('_dmarc.split.example. 300 IN TXT "v=DMARC1; p=quar" "antine"')
    assert lookup("split.example") == DmarcPolicy("split.example", "quarantine")


def test_no_record(dmarc_zone: Zone) -> None:
    dmarc_zone.add("example.net. 300 IN A 192.0.2.1")
    dmarc_zone.add("_dmarc.example.net. 300 IN A 192.0.2.1")  # the name exists, no TXT: NoAnswer
    assert lookup("example.net") is None
    assert lookup("sub.example.net") is None
    assert lookup("nothing.example") is None
    assert lookup("co.jp") is None


def test_two_records_are_no_record_and_end_discovery(dmarc_zone: Zone) -> None:
    dmarc_zone.add('_dmarc.two.example. 300 IN TXT "v=DMARC1; p=reject"')
    dmarc_zone.add('_dmarc.two.example. 300 IN TXT "v=DMARC1; p=none"')
    dmarc_zone.add('_dmarc.sub.org.example. 300 IN TXT "v=DMARC1; p=none"')
    dmarc_zone.add('_dmarc.sub.org.example. 300 IN TXT "v=DMARC1; p=none; pct=50"')
    dmarc_zone.add('_dmarc.org.example. 300 IN TXT "v=DMARC1; p=reject"')
    assert lookup("two.example") is None
    assert lookup("sub.two.example") is None
    assert lookup("sub.org.example") is None
    assert lookup("other.org.example") == DmarcPolicy("org.example", "reject")


def test_other_txt_at_dmarc_does_not_count(dmarc_zone: Zone) -> None:
    dmarc_zone.add('_dmarc.mixed.example. 300 IN TXT "v=spf1 -all"')
    dmarc_zone.add('_dmarc.mixed.example. 300 IN TXT "v=DMARC1; p=quarantine"')
    dmarc_zone.add('_dmarc.junk.example. 300 IN TXT "hello v=DMARC1; p=reject"')
    dmarc_zone.add('_dmarc.junk.example. 300 IN TXT "v=DMARC10; p=reject"')
    dmarc_zone.add('_dmarc.junk.example. 300 IN TXT "p=reject; v=DMARC1"')
    assert lookup("mixed.example") == DmarcPolicy("mixed.example", "quarantine")
    assert lookup("junk.example") is None


class ServerFailure(BaseResolver):
    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        reply.header.rcode = 2  # SERVFAIL
        return reply


@pytest.fixture
def failing_dns(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    port = free_port()
    server = DNSServer(ServerFailure(), address="127.0.0.1", port=port)
    serve(server.server)
    monkeypatch.setattr(dns.resolver, "default_resolver", None)
    monkeypatch.setattr(dns.asyncresolver, "default_resolver", None)
    configure((Nameserver("127.0.0.1", port),))
    yield
    stop_serving(server.server)


def test_servfail_is_unknown_not_no_record(failing_dns: None) -> None:
    with pytest.raises(DmarcUnknown):
        lookup("example.com")


def test_unusable_name_is_unknown(dmarc_zone: Zone) -> None:
    with pytest.raises(DmarcUnknown):
        lookup("a..b")


def is_auto_reply(message: bytes) -> bool:
    return bounces.is_auto_reply(parse(message))
