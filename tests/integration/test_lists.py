"""Mailing lists end to end: posts through swaks to the MX, members' MX are Postfix smtp-sink behind a
local DNS server, signatures and ARC checked by Perl's Mail::DKIM, the one-click POST by curl."""

from __future__ import annotations

import base64
import json
import re
import smtplib
import subprocess
import time
from email import message_from_bytes
from email.header import Header, decode_header, make_header
from email.policy import default as default_policy
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.forms import submit
from tests.integration.harness import Jitaku
from tests.integration.test_outbound import deliver_to_port, dkim_results, publish_dkim
from tests.peers import Sink, swaks, wait_until

ARC_VERIFIER = Path(__file__).with_name("arc_verify.pl")
SIGNER = Path(__file__).with_name("dkim_sign.pl")
LIST = "sota@example.test"
# members' domains, and the DMARC record each publishes
MEMBER_DOMAINS = {
    "members.test": None,
    "other.test": None,
    "reject.test": "v=DMARC1; p=reject",
    "quarantine.test": "v=DMARC1; p=quarantine",
    "none.test": "v=DMARC1; p=none",
}
MEMBERS = ("carol@members.test", "dave@members.test", "erin@other.test", "bob@example.org")


def arc_results(message: bytes, dns_port: int) -> dict[str, str]:
    result = subprocess.run(["perl", str(ARC_VERIFIER), str(dns_port)], input=message, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(line.split("=", 1) for line in result.stdout.decode().splitlines())


def envelope(dump: bytes) -> tuple[str, list[str], bytes]:
    """smtp-sink's dump: its X-Mail-Args and X-Rcpt-Args lines, then the message as it arrived."""
    sender, recipients = "", []
    rest = dump
    while rest.startswith(b"X-"):
        line, _, rest = rest.partition(b"\n")
        address = line.partition(b"<")[2].partition(b">")[0].decode()
        if line.startswith(b"X-Mail-Args:"):
            sender = address
        elif line.startswith(b"X-Rcpt-Args:"):
            recipients.append(address)
    return sender, recipients, rest


class Members:
    """The members' mail servers: one smtp-sink for every member domain, found through MX records."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def copies(self) -> list[tuple[str, list[str], bytes]]:
        return [envelope(dump) for dump in self.sink.messages()]

    def copies_for(self, address: str) -> list[bytes]:
        return [message for _sender, recipients, message in self.copies() if address in recipients]


@pytest.fixture
def list_server(jitaku_factory, dns_zone, sink_factory) -> tuple[Jitaku, Members]:
    """A running jitaku (users alice@example.test, bob@example.org) with list sota@example.test owned by
    alice, and the members' domains' MX pointing at one smtp-sink."""
    zone, dns_port = dns_zone
    sink = sink_factory()
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["delivery"] = {"port": sink.port}
    server.write_config()
    server.init("alice@example.test", "bob@example.org")
    publish_dkim(server, zone)
    for domain, dmarc in MEMBER_DOMAINS.items():
        zone.add(f"{domain}. 300 IN MX 10 mx.{domain}.")
        zone.add(f"mx.{domain}. 300 IN A 127.0.0.1")
        zone.add(f'{domain}. 300 IN TXT "v=spf1 ip4:127.0.0.1 -all"')
        if dmarc:
            zone.add(f'_dmarc.{domain}. 300 IN TXT "{dmarc}"')
    server.cli("list", "create", LIST, "--name", "SOTA Japan", "--owner", "alice@example.test")
    server.cli("list", "add", LIST, *MEMBERS)
    server.start()
    return server, Members(sink)


def post(server: Jitaku, sender: str, subject: str, *extra: str, to: str = LIST) -> str:
    result = swaks(
        "--server",
        f"127.0.0.1:{server.smtp_port}",
        "--from",
        sender,
        "--to",
        to,
        *(["--header", f"Subject: {subject}"] if subject else []),
        *extra,
    )
    assert "250 2.0.0" in result.stdout, result.stdout
    return result.stdout


def header(message: bytes, name: str) -> str:
    """A header field decoded as a mail program shows it."""
    value = message_from_bytes(message, policy=default_policy)[name]
    return str(value) if value is not None else ""


def raw_header(message: bytes, name: str) -> str:
    found = message_from_bytes(message)[name]
    return str(found) if found is not None else ""


def archive(server: Jitaku) -> list[dict[str, Any]]:
    return json.loads(server.cli("list", "archive", LIST, "--json").stdout)


def publish_key(zone: Any, domain: str, directory: Path) -> Path:
    """A new RSA key for DOMAIN, selector "sel", published in ZONE; returns the private key file."""
    key = directory / f"{domain}.key"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    chunks = " ".join(f'"{record[i : i + 200]}"' for i in range(0, len(record), 200))
    zone.add(f"sel._domainkey.{domain}. 300 IN TXT {chunks}")
    return key


def assert_aligned_dkim_pass(message: bytes, dns_port: int) -> None:
    """DMARC at a member's receiver: a DKIM pass whose d= is the From domain (checked by Mail::DKIM)."""
    from_domain = header(message, "From").rpartition("@")[2].rstrip(">").lower()
    results = dkim_results(message, dns_port)
    assert f"{from_domain} rsa-sha256 pass" in results, results


@pytest.mark.both_databases
def test_a_post_reaches_every_member_numbered_signed_and_sealed(list_server, dns_zone) -> None:
    server, members = list_server
    post(server, "carol@members.test", "Hello", "--header", "From: Carol <carol@members.test>")
    wait_until(lambda: len(members.copies()) == 3 and server.mailbox("bob@example.org"), timeout=20)
    copies = members.copies()
    assert sorted(r for _s, recipients, _m in copies for r in recipients) == sorted(MEMBERS[:3])
    local = server.message("bob@example.org", 1)
    tokens = set()
    for sender, recipients, message in copies + [("", ["bob@example.org"], local)]:
        (member,) = recipients
        if sender:  # VERP: the bounce address names the member, signed (eight base32 letters)
            assert re.fullmatch(
                rf"sota-bounces\+[a-z2-7]{{8}}={re.escape(member.replace('@', '='))}@example.test", sender
            )
        else:
            assert re.fullmatch(
                r"<sota-bounces\+[a-z2-7]{8}=bob=example.org@example.test>", raw_header(local, "Return-Path")
            )
        assert header(message, "Subject") == "[sota:00001] Hello"
        assert header(message, "List-Id") == "SOTA Japan <sota.example.test>"
        assert header(message, "List-Post") == "<mailto:sota@example.test>"
        assert header(message, "Precedence") == "list"
        assert header(message, "X-Mail-Count") == "1"
        assert header(message, "X-ML-Name") == "SOTA Japan"
        assert header(message, "Reply-To") == "sota@example.test"
        assert header(message, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
        unsubscribe = header(message, "List-Unsubscribe")
        assert "<mailto:sota-request@example.test?subject=unsubscribe>" in unsubscribe
        url = unsubscribe.split("<https://", 1)[1].split(">", 1)[0]
        tokens.add(url.rsplit("/", 1)[1])
        # independent checks: the list's DKIM signature covers List-Unsubscribe and the archive's fields; the ARC
        # chain validates
        results = dkim_results(message, dns_zone[1])
        assert "example.test rsa-sha256 pass" in results, results
        signed = re.sub(r"\s", "", raw_header(message, "DKIM-Signature")).lower().split("h=")[1].split(";")[0]
        assert {"list-unsubscribe", "list-archive", "archived-at"} <= set(signed.split(":")), signed
        arc = arc_results(message, dns_zone[1])
        assert arc["result"] == "pass" and arc["instances"] == "1", arc
    assert len(tokens) == 4  # each member's one-click link is their own
    assert "spf=pass" in raw_header(copies[0][2], "ARC-Authentication-Results")
    assert archive(server)[0]["number"] == 1 and archive(server)[0]["subject"] == "Hello"


def test_list_headers_advertise_only_pages_that_answer(list_server) -> None:
    """RFC 2369, 2919 and 8058 headers on a member's copy, and RFC 5064 Archived-At; every web page the headers
    name answers 200."""
    server, members = list_server
    post(server, "carol@members.test", "Hello")
    (copy,) = wait_until(lambda: members.copies_for("dave@members.test"), timeout=20)
    named = {name for name in message_from_bytes(copy).keys() if name.lower().startswith("list-")}
    assert named == {
        "List-Id",
        "List-Post",
        "List-Help",
        "List-Subscribe",
        "List-Owner",
        "List-Archive",
        "List-Unsubscribe",
        "List-Unsubscribe-Post",
    }
    text = " ".join(header(copy, name) for name in named | {"Archived-At"})
    urls = re.findall(r"<https://mail\.example\.test(/[^>]*)>", text)
    assert len(urls) == 4  # subscribe, the archive, this post's page, and this member's one-click unsubscribe
    for path in urls:
        assert httpx.get(f"http://127.0.0.1:{server.web_port}{path}").status_code == 200, path


def test_from_is_rewritten_when_the_authors_dmarc_needs_it(list_server, dns_zone, tmp_path) -> None:
    """p=reject and p=quarantine always; p=none when the author's DKIM signature will not survive the
    subject tag; no DMARC record: From stays. Either way DMARC passes where the author's domain asks it to."""
    server, members = list_server
    cases = {"reject.test": True, "quarantine.test": True, "none.test": True, "other.test": False}
    for domain in cases:
        server.cli("list", "add", LIST, f"ken@{domain}")
        message = (
            f"From: Kenji Sato <ken@{domain}>\r\nTo: {LIST}\r\nSubject: DMARC {domain}\r\n"
            f"Date: Wed, 25 Nov 2026 10:00:00 +0900\r\nMessage-ID: <dmarc-{domain}@{domain}>\r\n\r\nHello.\r\n"
        ).encode()
        # the author's own domain signs, as Gmail would (Mail::DKIM as the signer)
        key = publish_key(dns_zone[0], domain, tmp_path)
        signed = subprocess.run(
            ["perl", str(SIGNER), domain, "sel", str(key)], input=message, check=True, capture_output=True
        ).stdout
        email_file = tmp_path / f"{domain}.eml"
        email_file.write_bytes(signed)
        post(server, f"ken@{domain}", "", "--data", str(email_file))
    wait_until(lambda: len(members.copies_for("carol@members.test")) == len(cases), timeout=30)
    for copy in members.copies_for("carol@members.test"):
        domain = header(copy, "Subject").rpartition(" ")[2]
        if cases[domain]:
            assert parseaddr(header(copy, "From")) == ("Kenji Sato via SOTA Japan", LIST)
            assert f"ken@{domain}" in header(copy, "Cc")  # the author stays reachable
            assert header(copy, "Reply-To") == "sota@example.test"
            # what the member's receiver checks: DKIM aligned with the rewritten From
            assert_aligned_dkim_pass(copy, dns_zone[1])
        else:
            assert header(copy, "From") == f"Kenji Sato <ken@{domain}>"
        assert arc_results(copy, dns_zone[1])["result"] == "pass"
        # the list recorded the author's own verdict in its ARC set
        assert "dkim=pass" in raw_header(copy, "ARC-Authentication-Results")


def test_wrap_sends_the_original_untouched_as_an_attachment(list_server, dns_zone) -> None:
    server, members = list_server
    server.cli("list", "set", LIST, "dmarc", "wrap")
    post(server, "carol@members.test", "Wrapped", "--header", "From: Carol <carol@members.test>", "--body", "inside")
    wait_until(lambda: members.copies_for("dave@members.test"), timeout=20)
    copy = members.copies_for("dave@members.test")[0]
    parsed = message_from_bytes(copy, policy=default_policy)
    assert parsed.get_content_type() == "multipart/mixed"
    assert parseaddr(header(copy, "From")) == ("Carol via SOTA Japan", LIST)
    assert header(copy, "Subject") == "[sota:00001] Wrapped"
    (inner,) = [part for part in parsed.iter_parts() if part.get_content_type() == "message/rfc822"]
    original = inner.get_content()
    assert str(original["From"]) == "Carol <carol@members.test>" and str(original["Subject"]) == "Wrapped"
    assert "inside" in original.get_body().get_content()
    assert_aligned_dkim_pass(copy, dns_zone[1])


def encoded(text: str, charset: str, prefix: str = "") -> str:
    """TEXT as a Japanese mail program writes it in a Subject: encoded-words, folded when long."""
    return prefix + Header(text, charset, header_name="Subject").encode(linesep="\r\n", maxlinelen=60)


JAPANESE = [
    # (Subject as sent, what people read after the tag)
    (encoded("会議のお知らせ", "iso-2022-jp"), "会議のお知らせ"),
    (encoded("日本語の件名", "shift_jis"), "日本語の件名"),
    ("=?UTF-8?Q?" + "".join(f"={b:02X}" for b in "山頂で会いましょう".encode()) + "?=", "山頂で会いましょう"),
    (
        encoded("これはとても長い日本語の件名です。折り返されても正しく読めますように", "utf-8"),
        "これはとても長い日本語の件名です。折り返されても正しく読めますように",
    ),
    (encoded("会議のお知らせ", "iso-2022-jp", "Re: [sota:00001] "), "Re: 会議のお知らせ"),
    (encoded("日本語の件名", "shift_jis", "Re: Re^2: [sota:00002] "), "Re: 日本語の件名"),
]


def test_japanese_subjects_are_tagged_and_stay_readable(list_server, tmp_path) -> None:
    server, members = list_server
    for index, (subject, _text) in enumerate(JAPANESE, start=1):
        assert "\r\n " in subject or index != 4  # the long one arrives folded over lines
        data = tmp_path / f"post{index}.eml"
        data.write_bytes(
            f"From: carol@members.test\r\nTo: {LIST}\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\n\r\nbody\r\n".encode()
        )
        post(server, "carol@members.test", "", "--data", str(data))
        wait_until(lambda index=index: len(archive(server)) == index, timeout=20)
    wait_until(lambda: len(members.copies_for("erin@other.test")) == len(JAPANESE), timeout=20)
    received = sorted(members.copies_for("erin@other.test"), key=lambda m: int(header(m, "X-Mail-Count")))
    for number, ((_encoded, text), message) in enumerate(zip(JAPANESE, received, strict=True), start=1):
        subject = raw_header(message, "Subject")
        assert subject.isascii() and subject.startswith(f"[sota:{number:05d}] ")
        assert str(make_header(decode_header(subject))) == f"[sota:{number:05d}] {text}"
    assert [entry["subject"] for entry in archive(server)] == [text for _e, text in JAPANESE]
    # the ISO-2022-JP subjects stay ISO-2022-JP, which older Japanese mail programs need
    assert "ISO-2022-JP" in raw_header(received[0], "Subject").upper()


@pytest.mark.both_databases
def test_a_non_members_post_is_held_until_the_owner_decides(list_server) -> None:
    server, members = list_server
    post(server, "frank@other.test", "Please approve", "--header", "From: Frank <frank@other.test>")
    held = wait_until(lambda: json.loads(server.cli("list", "held", LIST, "--json").stdout))
    assert [(h["sender"], h["subject"], h["reason"]) for h in held] == [
        ("frank@other.test", "Please approve", "the sender is not a member")
    ]
    notice = wait_until(lambda: server.mailbox("alice@example.test"))  # alice owns the list
    assert "held for approval" in notice[0]["subject"]
    assert members.copies() == []
    server.cli("list", "approve", LIST, str(held[0]["id"]))
    wait_until(lambda: len(members.copies()) == 3, timeout=20)
    assert header(members.copies_for("carol@members.test")[0], "Subject") == "[sota:00001] Please approve"
    assert json.loads(server.cli("list", "held", LIST, "--json").stdout) == []

    post(server, "frank@other.test", "Spam", "--header", "From: Frank <frank@other.test>")
    held = wait_until(lambda: json.loads(server.cli("list", "held", LIST, "--json").stdout))
    server.cli("list", "reject", LIST, str(held[0]["id"]), "--reason", "off topic")
    refusal = wait_until(lambda: members.copies_for("frank@other.test"), timeout=20)[0]
    assert "rejected" in header(refusal, "Subject")
    assert b"off topic" in refusal
    assert [entry["number"] for entry in archive(server)] == [1]
    # spam is dropped without a word to anyone
    post(server, "frank@other.test", "Buy now", "--header", "From: Frank <frank@other.test>")
    held = wait_until(lambda: json.loads(server.cli("list", "held", LIST, "--json").stdout))
    server.cli("list", "reject", LIST, str(held[0]["id"]), "--discard")
    assert json.loads(server.cli("list", "held", LIST, "--json").stdout) == []
    time.sleep(2)
    assert len(members.copies_for("frank@other.test")) == 1  # only the earlier refusal
    result = server.cli("list", "approve", LIST, "999", check=False)
    assert result.returncode == 1 and "no held post 999" in result.stderr


def test_loops_auto_replies_and_bounces_never_reach_members(list_server) -> None:
    server, members = list_server
    post(server, "carol@members.test", "Looping", "--header", f"X-Loop: {LIST}")
    post(server, "carol@members.test", "Out of office", "--header", "Auto-Submitted: auto-replied")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:  # the null sender, as a bounce has it
        client.sendmail("", [LIST], b"From: MAILER-DAEMON@members.test\r\nSubject: Undelivered Mail\r\n\r\nx\r\n")
    wait_until(lambda: server.log().count("event=list_dropped") == 3)
    post(server, "carol@members.test", "Real post")
    wait_until(lambda: len(members.copies()) == 3, timeout=20)
    assert {header(m, "Subject") for _s, _r, m in members.copies()} == {"[sota:00001] Real post"}


def test_one_click_unsubscribe_by_post_with_the_members_token(list_server) -> None:
    server, members = list_server
    post(server, "carol@members.test", "Hello")
    wait_until(lambda: members.copies_for("dave@members.test"), timeout=20)
    unsubscribe = header(members.copies_for("dave@members.test")[0], "List-Unsubscribe")
    url = unsubscribe.split("<https://mail.example.test", 1)[1].split(">", 1)[0]
    local = f"http://127.0.0.1:{server.web_port}{url}"

    def curl(*args: str) -> tuple[int, str]:
        result = subprocess.run(
            ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=30
        )
        body, _, code = result.stdout.rpartition("\n")
        return int(code), body

    def is_member(address: str) -> bool:
        return address in [m["address"] for m in json.loads(server.cli("list", "members", LIST, "--json").stdout)]

    assert curl(local)[0] == 200 and is_member("dave@members.test")  # a GET (a link scanner) changes nothing
    assert curl("-X", "POST", "--data", "List-Unsubscribe=Nope", local)[0] == 400
    assert curl("-X", "POST", "--data", "List-Unsubscribe=One-Click", local[:-4] + "0000")[0] == 404
    assert is_member("dave@members.test")
    # RFC 8058 §3.2: what Gmail sends, with no cookie and no login
    code, body = curl("-X", "POST", "--data", "List-Unsubscribe=One-Click", local)
    assert code == 200 and "dave@members.test has left" in body
    assert not is_member("dave@members.test") and is_member("carol@members.test")
    assert curl("-X", "POST", "--data", "List-Unsubscribe=One-Click", local)[0] == 404


@pytest.mark.both_databases
def test_subscribe_by_mail_needs_the_confirmation_token(list_server) -> None:
    server, members = list_server
    post(server, "gina@other.test", "", "--to", "sota-request@example.test", "--body", "# help\nsubscribe\n")
    confirmation = wait_until(lambda: members.copies_for("gina@other.test"), timeout=20)[0]
    subject = header(confirmation, "Subject")
    assert subject.startswith("confirm ")
    body = message_from_bytes(confirmation, policy=default_policy).get_body().get_content()
    assert "get N" in body  # the help text
    assert "gina@other.test" not in json.loads(server.cli("list", "members", LIST, "--json").stdout).__repr__()
    post(server, "gina@other.test", f"Re: {subject}", to="sota-request@example.test")
    wait_until(lambda: "gina@other.test" in server.cli("list", "members", LIST).stdout)
    # unsubscribing is confirmed the same way, here through the web page the mail links to
    post(server, "gina@other.test", "unsubscribe", to="sota-request@example.test")

    def text(message: bytes) -> str:
        return str(message_from_bytes(message, policy=default_policy).get_body().get_content())

    second = wait_until(
        lambda: [text(m) for m in members.copies_for("gina@other.test") if "wants to unsubscribe" in text(m)],
        timeout=20,
    )[0]
    path = second.split("https://mail.example.test")[1].split()[0]
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}") as browser:
        assert "Yes, leave" in browser.get(path).text
        assert "has left" in submit(browser, path, {}).text
    assert "gina@other.test" not in server.cli("list", "members", LIST).stdout


def test_subscribe_on_the_web_page_mails_the_confirmation_a_mailed_request_gets(list_server) -> None:
    server, members = list_server
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}") as browser:
        asked = submit(browser, f"/lists/{LIST}/subscribe", {"address": "Hana@Other.test"})
    assert "A confirmation has been mailed to hana@other.test." in asked.text
    confirmation = wait_until(lambda: members.copies_for("hana@other.test"), timeout=20)[0]
    token = header(confirmation, "Subject").removeprefix("confirm ")
    assert header(confirmation, "From") == "sota-request@example.test"
    text = message_from_bytes(confirmation, policy=default_policy).get_body().get_content()
    # the words a mailed request gets (tests/test_list_requests.py compares the two mails in full)
    asked_by_mail = (
        "subscribe: to confirm that hana@other.test wants to subscribe, reply to this mail keeping its subject,"
        f" or open https://mail.example.test/lists/confirm/{token}"
    )
    assert text.split() == asked_by_mail.split()
    with httpx.Client(base_url=f"http://127.0.0.1:{server.web_port}") as browser:
        joined = submit(browser, f"/lists/confirm/{token}", {}).text
    assert "hana@other.test has joined sota@example.test" in joined
    assert "hana@other.test" in members_by_address(server)


def members_by_address(server: Jitaku) -> dict[str, dict[str, Any]]:
    return {m["address"]: m for m in json.loads(server.cli("list", "members", LIST, "--json").stdout)}


def test_a_member_whose_mail_bounces_is_disabled_and_the_owner_told(list_server, dns_zone, sink_factory) -> None:
    """Our own DSN to the signed VERP address counts, once a day; past the threshold delivery stops."""
    server, members = list_server
    # bad.test's MX is another smtp-sink, on 127.0.0.2 and the same port, refusing every recipient
    sink_factory("-f", "rcpt", host="127.0.0.2", port=members.sink.port)
    dns_zone[0].add("bad.test. 300 IN MX 10 mx.bad.test.")
    dns_zone[0].add("mx.bad.test. 300 IN A 127.0.0.2")
    server.cli("list", "add", LIST, "gone@bad.test")
    server.cli("list", "set", LIST, "bounce_threshold", "2")
    post(server, "carol@members.test", "First")
    wait_until(lambda: "event=list_bounce " in server.log(), timeout=30)
    gone = members_by_address(server)["gone@bad.test"]
    assert gone["enabled"] and gone["bounce_score"] == 1.0
    post(server, "carol@members.test", "Second")  # the same day: it does not count again
    wait_until(lambda: 'counted="no (one a day)"' in server.log(), timeout=30)
    gone = members_by_address(server)["gone@bad.test"]
    assert gone["enabled"] and gone["bounce_score"] == 1.0
    server.cli("list", "set", LIST, "bounce_threshold", "1")  # the owner is stricter: the next bounce disables
    post(server, "carol@members.test", "Third")
    wait_until(lambda: "event=list_member_disabled" in server.log(), timeout=30)
    gone = members_by_address(server)["gone@bad.test"]
    assert not gone["enabled"] and "bounce score 1 reached 1" in gone["disabled_reason"]
    notices = wait_until(
        lambda: [m for m in server.mailbox("alice@example.test") if "delivery disabled" in m["subject"]]
    )
    assert "gone@bad.test" in notices[0]["subject"]
    post(server, "carol@members.test", "Fourth")
    wait_until(lambda: len(members.copies_for("carol@members.test")) == 4, timeout=20)
    assert "to=gone@bad.test" not in server.log().split("number=4")[1]


def forged_dsn(to: str, member: str) -> bytes:
    """What anyone can send to a bounces address: a well-formed RFC 3464 DSN naming MEMBER as gone."""
    return (
        f"From: MAILER-DAEMON@other.test\r\nTo: <{to}>\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        f"--b\r\nContent-Type: text/plain\r\n\r\n<{member}>: host mx.other.test said: 550 5.1.1 User unknown\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.other.test\r\n\r\n"
        f"Final-Recipient: rfc822; {member}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n--b--\r\n"
    ).encode()


def test_forged_bounces_to_an_unsigned_or_guessed_verp_address_disable_no_one(list_server) -> None:
    """Five forged DSNs to each guessable bounces address count for nobody; one to the signed address
    a member's copy came from counts."""
    server, members = list_server
    server.cli("list", "set", LIST, "bounce_threshold", "1")  # one bounce that counted would disable erin
    addresses = [
        "sota-bounces+erin=other.test@example.test",  # as every copy was addressed before signing
        "sota-bounces+abcdefgh=erin=other.test@example.test",  # a guessed tag
        "sota-bounces+abcdefghijklmnop@example.test",  # a guessed code
        "sota-bounces@example.test",  # no VERP: only the DSN names her
    ]
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        for _ in range(5):
            for to in addresses:
                client.sendmail("", [to], forged_dsn(to, "erin@other.test"))
    post(server, "carol@members.test", "After the forgeries")  # the engine takes it after them
    wait_until(lambda: members.copies_for("carol@members.test"), timeout=30)
    erin = members_by_address(server)["erin@other.test"]
    assert erin["enabled"] and erin["bounce_score"] == 0
    assert members.copies_for("erin@other.test")
    log = server.log()
    assert log.count("event=list_bounce_unverified") == 20 and "names=erin@other.test" in log
    assert "event=list_member_disabled" not in log
    # the same DSN from her server, to the address her copy really came from, counts
    ((signed, _recipients, _message),) = [c for c in members.copies() if "erin@other.test" in c[1]]
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        client.sendmail("", [signed], forged_dsn(signed, "erin@other.test"))
    wait_until(lambda: "event=list_member_disabled" in server.log(), timeout=30)
    erin = members_by_address(server)["erin@other.test"]
    assert not erin["enabled"] and erin["bounce_score"] == 1.0


def test_a_refusal_of_the_whole_session_counts_once_for_the_domain(list_server, dns_zone, sink_factory) -> None:
    """A provider that refuses our server (at its greeting, or every recipient alike) is not each member's
    failure: many members at one domain, one count for the domain, the owners told, nobody disabled."""
    server, members = list_server
    refusing = {"blocked.test": ("connect", "127.0.0.3"), "strict.test": ("rcpt", "127.0.0.4")}
    for domain, (command, host) in refusing.items():
        sink_factory("-f", command, host=host, port=members.sink.port)
        dns_zone[0].add(f"{domain}. 300 IN MX 10 mx.{domain}.")
        dns_zone[0].add(f"mx.{domain}. 300 IN A {host}")
    many = [f"member{i}@{domain}" for domain in refusing for i in range(6)]
    server.cli("list", "add", LIST, *many)
    server.cli("list", "set", LIST, "bounce_threshold", "1")  # one count against a member would disable them
    post(server, "carol@members.test", "To everyone")
    wait_until(lambda: server.log().count("event=bounced ") == len(many), timeout=30)  # their DSNs are in
    post(server, "carol@members.test", "Again")  # the engine takes it after the DSNs
    wait_until(lambda: len(members.copies_for("carol@members.test")) == 2, timeout=30)
    found = members_by_address(server)
    assert all(found[address]["enabled"] and found[address]["bounce_score"] == 0 for address in many)
    log = server.log()
    assert log.count("event=list_refused list=sota@example.test domain=blocked.test member=") >= 6
    assert log.count("event=list_refused list=sota@example.test domain=strict.test member=") >= 6
    assert log.count("counted=yes") == 2  # once per domain
    assert "event=list_bounce " not in log and "event=list_member_disabled" not in log
    shown = json.loads(server.cli("list", "show", LIST, "--json").stdout)[0]
    assert shown["refused_by"] == {"blocked.test": 1.0, "strict.test": 1.0}
    notices = wait_until(
        lambda: sorted(m["subject"] for m in server.mailbox("alice@example.test") if "refuses" in m["subject"])
    )
    assert notices == [f"{LIST}: blocked.test refuses the list's mail", f"{LIST}: strict.test refuses the list's mail"]


class Whole(Members):
    """Only copies that arrived whole: one cut off by the crash mid-DATA was never accepted."""

    def copies(self) -> list[tuple[str, list[str], bytes]]:
        return [copy for copy in super().copies() if b"This is a test mailing" in copy[2]]


@pytest.mark.both_databases
def test_kill_9_in_the_middle_of_a_fan_out(server: Jitaku, dns_zone, sink_factory) -> None:
    """Every member gets the post at least once (a copy in flight at the kill may come twice); no number
    is skipped or used twice."""
    zone = dns_zone[0]
    # a slow sink (1 s before each DATA answer), so the kill lands while copies are going out
    sink = sink_factory("-w", "1")
    addresses = [f"m{i}@d{i % 10}.test" for i in range(60)]
    for domain in {a.rpartition("@")[2] for a in addresses}:
        zone.add(f"{domain}. 300 IN MX 10 mx.{domain}.")
        zone.add(f"mx.{domain}. 300 IN A 127.0.0.1")
    deliver_to_port(server, sink.port)
    members = Whole(sink)
    server.cli("list", "create", LIST)
    server.cli("list", "add", LIST, *addresses)
    post(server, "m0@d0.test", "Before the crash")
    wait_until(lambda: len(members.copies()) >= 10, timeout=30)
    server.kill9()
    time.sleep(0.5)  # what was on the wire at the kill lands (or not) now
    before = {r for _s, rs, _m in members.copies() for r in rs}
    assert len(before) < len(addresses)
    server.start()
    wait_until(lambda: {r for _s, rs, _m in members.copies() for r in rs} >= set(addresses), timeout=60)
    per_member = {a: len(members.copies_for(a)) for a in addresses}
    # at least once: a copy may come twice only if it had gone out before the crash was recorded
    assert {a for a, count in per_member.items() if count > 1} <= before
    assert max(per_member.values()) <= 2
    post(server, "m0@d0.test", "After the crash")
    wait_until(lambda: len(members.copies_for("m59@d9.test")) == per_member["m59@d9.test"] + 1, timeout=60)
    assert [entry["number"] for entry in archive(server)] == [1, 2]
    numbers = {header(m, "X-Mail-Count") for _s, _r, m in members.copies()}
    assert numbers == {"1", "2"}


def test_a_digest_member_gets_the_days_posts_in_one_mime_digest(list_server, dns_zone) -> None:
    server, members = list_server
    server.cli("list", "member", LIST, "dave@members.test", "--digest")
    for subject in ("One", "Two"):
        post(server, "carol@members.test", subject)
    wait_until(lambda: len(members.copies_for("erin@other.test")) == 2, timeout=20)
    assert members.copies_for("dave@members.test") == []  # no single posts for a digest reader
    server.cli("list", "digest", LIST)
    (digest,) = wait_until(lambda: members.copies_for("dave@members.test"), timeout=20)
    parsed = message_from_bytes(digest, policy=default_policy)
    assert header(digest, "Subject") == "SOTA Japan digest, posts 1-2"
    assert header(digest, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click"
    table, posts = parsed.iter_parts()
    assert "One" in table.get_content() and "Two" in table.get_content()
    assert posts.get_content_type() == "multipart/digest"
    subjects = [str(part.get_content()["Subject"]) for part in posts.iter_parts()]
    assert subjects == ["[sota:00001] One", "[sota:00002] Two"]
    assert "example.test rsa-sha256 pass" in dkim_results(digest, dns_zone[1])
    server.cli("list", "digest", LIST)  # nothing new since: no second digest
    post(server, "carol@members.test", "Three")
    wait_until(lambda: len(members.copies_for("erin@other.test")) == 3, timeout=20)
    assert len(members.copies_for("dave@members.test")) == 1  # post 3 waits for tomorrow's digest


def test_a_post_that_was_already_sealed_gets_the_next_arc_instance(list_server, dns_zone, tmp_path) -> None:
    """A forwarder (Mail::DKIM's ARC signer) sealed the post before it reached us: our set is i=2, cv=pass."""
    server, members = list_server
    key = publish_key(dns_zone[0], "forwarder.test", tmp_path)
    post_bytes = (
        b"Authentication-Results: mx.forwarder.test; spf=pass smtp.mailfrom=carol@members.test\r\n"
        b"From: Carol <carol@members.test>\r\nTo: sota@example.test\r\nSubject: Forwarded\r\n"
        b"Date: Wed, 25 Nov 2026 10:00:00 +0900\r\nMessage-ID: <fwd-1@members.test>\r\n\r\nvia a forwarder\r\n"
    )
    sealer = Path(__file__).with_name("arc_seal.pl")
    sealed = subprocess.run(
        ["perl", str(sealer), "forwarder.test", "sel", str(key), "mx.forwarder.test"],
        input=post_bytes,
        check=True,
        capture_output=True,
    ).stdout
    assert arc_results(sealed, dns_zone[1])["result"] == "pass"
    data = tmp_path / "sealed.eml"
    data.write_bytes(sealed)
    post(server, "carol@members.test", "", "--data", str(data))
    copy = wait_until(lambda: members.copies_for("erin@other.test"), timeout=20)[0]
    assert "arc=pass" in raw_header(copy, "ARC-Authentication-Results")
    assert "i=2; cv=pass" in raw_header(copy, "ARC-Seal")
    arc = arc_results(copy, dns_zone[1])
    assert arc["result"] == "pass" and arc["instances"] == "2", arc


def test_raw_8bit_headers_neither_jam_nor_break_the_list(list_server) -> None:
    """Raw Shift_JIS bytes in a Subject (old Japanese mail programs send them): a stranger's post is held,
    a member's goes out, and neither stops the posts behind them."""
    server, members = list_server
    subject = "日本語".encode("shift_jis")
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        for sender in ("stranger@other.test", "carol@members.test"):
            client.sendmail(
                sender, [LIST], b"From: " + sender.encode() + b"\r\nSubject: " + subject + b"\r\n\r\nraw\r\n"
            )
    post(server, "carol@members.test", "Behind them")
    wait_until(lambda: len(members.copies_for("erin@other.test")) == 2, timeout=20)
    held = json.loads(server.cli("list", "held", LIST, "--json").stdout)
    assert [h["sender"] for h in held] == ["stranger@other.test"]
    assert [entry["number"] for entry in archive(server)] == [1, 2]


def test_list_addresses_are_protected_from_loops_forgery_and_takeover(list_server, dns_zone) -> None:
    server, members = list_server
    # an owner address that is the list's own -owner address must not loop
    server.cli("list", "set", LIST, "owners", "sota-owner@example.test,alice@example.test")
    post(server, "erin@other.test", "To the owners", to="sota-owner@example.test")
    wait_until(lambda: server.mailbox("alice@example.test"))
    time.sleep(2)
    assert len(server.mailbox("alice@example.test")) == 1
    assert server.log().count("relay=list") == 1
    # mail with a sender to a member's bounce address is not a bounce and costs the member nothing
    for _ in range(3):
        post(server, "spoof@other.test", "not a bounce", to="sota-bounces+erin=other.test@example.test")
    wait_until(lambda: server.log().count("not a bounce") == 3)
    erin = [
        m for m in json.loads(server.cli("list", "members", LIST, "--json").stdout) if m["address"] == "erin@other.test"
    ]
    assert erin[0]["bounce_score"] == 0 and erin[0]["enabled"]
    # a member's address forged by someone SPF and DMARC say is not them: held, and no reply to requests
    dns_zone[0].add('forged.test. 300 IN TXT "v=spf1 -all"')
    dns_zone[0].add('_dmarc.forged.test. 300 IN TXT "v=DMARC1; p=reject"')
    server.cli("list", "add", LIST, "kenji@forged.test")
    post(server, "kenji@forged.test", "Forged", "--header", "From: kenji@forged.test")
    held = wait_until(lambda: json.loads(server.cli("list", "held", LIST, "--json").stdout))
    assert held[0]["reason"] == "the post fails dmarc and spf for its sender"
    post(server, "kenji@forged.test", "unsubscribe", to="sota-request@example.test")
    wait_until(lambda: "fails SPF or DMARC: no reply" in server.log())
    # a mail loop elsewhere ends here: too many Received headers
    hops = "".join(
        f"Received: from hop{i}.test by hop{i + 1}.test; Wed, 25 Nov 2026 10:00:00 +0000\r\n" for i in range(51)
    )
    with smtplib.SMTP("127.0.0.1", server.smtp_port) as client:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            client.sendmail("carol@members.test", [LIST], (hops + "Subject: loop\r\n\r\nx\r\n").encode())
    assert refused.value.smtp_code == 554 and b"5.4.6" in refused.value.smtp_error
    # the list's role addresses cannot be taken by a user; an alias of the list reaches it
    taken = server.cli(
        "user", "add", "sota-request@example.test", "--password-stdin", input="password-1\n", check=False
    )
    assert taken.returncode == 1 and "belongs to the mailing list sota@example.test" in taken.stderr
    server.cli("alias", "add", "club@example.test", LIST)
    post(server, "carol@members.test", "Through the alias", to="club@example.test")
    wait_until(lambda: members.copies_for("erin@other.test"), timeout=20)
    assert header(members.copies_for("erin@other.test")[0], "Subject") == "[sota:00001] Through the alias"
