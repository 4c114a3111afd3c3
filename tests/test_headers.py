"""mail/headers.py, authcheck.strip_forged and the Received header: Japanese encoded-words survive, forged results
go, an IPv6 client is named as RFC 5321 writes it."""

from __future__ import annotations

from jitaku.mail import headers, trace
from jitaku.mail.authcheck import strip_forged
from jitaku.mail.headers import decoded, from_addresses


def test_encoded_words_in_japanese_charsets() -> None:
    assert decoded("=?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=") == "こんにちは"
    assert decoded("=?Shift_JIS?B?g2WDWINn?=") == "テスト"
    assert decoded("=?UTF-8?Q?=E6=97=A5=E6=9C=AC?=") == "日本"
    folded = "=?ISO-2022-JP?B?GyRCJDMkcxsoQg==?=\r\n =?ISO-2022-JP?B?GyRCJEskQSRPGyhC?= world"
    assert decoded(folded) == "こんにちは world"
    assert decoded("plain") == "plain"
    assert decoded("=?unknown-charset?B?YWJj?=") in {"=?unknown-charset?B?YWJj?=", "abc"}


def test_from_addresses() -> None:
    message = b"From: =?UTF-8?B?5bGx55Sw?= <Yamada@Example.TEST>, b@x.test\r\nTo: c@x.test\r\n\r\nhi"
    assert from_addresses(message) == ["yamada@example.test", "b@x.test"]
    assert from_addresses(b"Subject: none\r\n\r\n") == []


def test_strip_forged_keeps_other_servers_results() -> None:
    message = (
        b"Authentication-Results: mail.example.test; dkim=pass\r\n\theader.d=bank.test\r\n"
        b"Authentication-Results: mx.google.com; spf=pass\r\n"
        b"Subject: hi\r\n\r\nAuthentication-Results: mail.example.test; in the body stays\r\n"
    )
    assert strip_forged(message, "mail.example.test") == (
        b"Authentication-Results: mx.google.com; spf=pass\r\n"
        b"Subject: hi\r\n\r\nAuthentication-Results: mail.example.test; in the body stays\r\n"
    )


def test_strip_forged_knows_our_results_by_authserv_id_with_a_version_or_folded() -> None:
    message = (
        b"Authentication-Results: mail.example.test 1; spf=pass\r\n"  # RFC 8601 §2.2: a version may follow
        b"Authentication-Results:\r\n mail.example.test; dkim=pass\r\n"
        b"Subject: hi\r\n\r\nbody\r\n"
    )
    assert strip_forged(message, "mail.example.test") == b"Subject: hi\r\n\r\nbody\r\n"


def test_organizational_domain_from_the_public_suffix_list() -> None:
    from jitaku.domains import organizational_domain

    assert organizational_domain("mail.Example.co.jp") == "example.co.jp"
    assert organizational_domain("a.b.example.org.") == "example.org"
    assert organizational_domain("co.jp") == "co.jp"


def test_split_fields_keeps_folded_lines_with_their_field() -> None:
    from jitaku.mail.headers import split_fields

    message = b" stray\r\nA: 1\r\n\t2\r\n 3\r\nB:\r\n\r\nbody\r\n"
    assert split_fields(message) == ([b" stray\r\n", b"A: 1\r\n\t2\r\n 3\r\n", b"B:\r\n"], b"\r\nbody\r\n")
    assert split_fields(b"A: 1\r\n x") == ([b"A: 1\r\n x\r\n"], b"")


def test_split_fields_is_linear_in_the_folded_lines() -> None:
    # One field folded over 20,000 lines of 1,000 bytes held the MX for 28 s when unfolding was quadratic.
    import time

    from jitaku.mail.headers import split_fields

    message = b"X-Folded: a\r\n" + (b" " + b"b" * 997 + b"\r\n") * 20_000 + b"Subject: s\r\n\r\nbody"
    started = time.monotonic()
    fields, body = split_fields(message)
    assert time.monotonic() - started < 2.0
    assert len(fields) == 2 and len(fields[0]) == 13 + 20_000 * 1000 and body == b"\r\nbody"


def test_received_names_the_client_by_an_rfc_5321_address_literal() -> None:
    assert trace.address_literal("192.0.2.1") == "[192.0.2.1]"
    assert trace.address_literal("2001:DB8:0:0::1") == "[IPv6:2001:db8::1]"
    assert trace.address_literal("fe80::1%home0") == "[IPv6:fe80::1]"  # the zone is this host's business
    session = trace.Session("2001:db8::1", "client.test", tls=False, authenticated_as=None)
    assert trace.received(session, "mail.example.test", "Q1", ["a@example.test"]).startswith(
        b"Received: from client.test ([IPv6:2001:db8::1])\r\n"
    )


def test_hops_counts_received_fields_of_the_header_in_any_case() -> None:
    message = (
        b"Received: from a\r\n\tby b; date\r\nX-Received: by c\r\nRECEIVED: from d\r\nSubject: received: no\r\n"
        b"received:from e\r\n\r\nReceived: in the body\r\n"
    )
    assert headers.hops(message) == 3
    assert headers.hops(b"Subject: x\r\n\r\nReceived: a\r\n") == 0
