"""The submission port, driven by swaks: AUTH, STARTTLS, sender ownership, failure limits."""

from __future__ import annotations

import pytest

from tests.integration.harness import Jitaku
from tests.peers import rejection, swaks, wait_until

ALICE = ("--auth-user", "alice@example.test", "--auth-password", "secret-password")


def submit(server: Jitaku, *args: str) -> str:
    result = swaks("--server", f"127.0.0.1:{server.submission_port}", *args)
    return result.stdout + result.stderr


def test_mail_without_auth_is_refused(server: Jitaku) -> None:
    out = submit(server, "--to", "bob@example.org", "--from", "alice@example.test")
    assert rejection(out).startswith("530 5.7.0")
    assert server.mailbox("bob@example.org") == []


@pytest.mark.both_databases
def test_auth_plain_on_loopback_delivers_locally_at_once(server: Jitaku) -> None:
    out = submit(server, "--auth", "PLAIN", *ALICE, "--to", "bob@example.org", "--from", "alice@example.test")
    assert "235 2.7.0" in out and "250 2.0.0" in out, out
    (entry,) = server.mailbox("bob@example.org")
    stored = server.message("bob@example.org", entry["uid"])
    assert b"with ESMTPA id" in stored
    assert b"Authentication-Results" not in stored.split(b"\r\n\r\n")[0]
    assert server.queue() == []


def test_starttls_then_auth_login(server: Jitaku) -> None:
    out = submit(server, "-tls", "--auth", "LOGIN", *ALICE, "--to", "bob@example.org", "--from", "alice@example.test")
    assert "220 Ready to start TLS" in out or "220 2.0.0" in out, out
    assert "235 2.7.0" in out and "250 2.0.0" in out, out
    (entry,) = server.mailbox("bob@example.org")
    assert b"with ESMTPSA id" in server.message("bob@example.org", entry["uid"])


def test_sender_must_belong_to_the_user(server: Jitaku) -> None:
    out = submit(server, "--auth", "PLAIN", *ALICE, "--to", "bob@example.org", "--from", "bob@example.org")
    assert rejection(out).startswith("553 5.7.1"), out
    out = submit(
        server,
        "--auth",
        "PLAIN",
        *ALICE,
        "--to",
        "bob@example.org",
        "--from",
        "alice@example.test",
        "--header",
        "From: Bob <bob@example.org>",
    )
    assert rejection(out).startswith("553 5.7.1"), out
    assert server.mailbox("bob@example.org") == []


def test_an_alias_of_the_user_may_be_the_sender(server: Jitaku) -> None:
    server.cli("alias", "add", "sales@example.test", "alice@example.test")
    out = submit(
        server,
        "--auth",
        "PLAIN",
        *ALICE,
        "--to",
        "bob@example.org",
        "--from",
        "sales@example.test",
        "--header",
        "From: Sales <sales@example.test>",
    )
    assert "250 2.0.0" in out, out


@pytest.mark.both_databases
def test_failed_logins_are_rate_limited(server: Jitaku) -> None:
    for _ in range(5):
        out = submit(
            server,
            "--auth",
            "PLAIN",
            "--auth-user",
            "alice@example.test",
            "--auth-password",
            "wrong",
            "--to",
            "bob@example.org",
            "--from",
            "alice@example.test",
        )
        assert rejection(out).startswith("535 5.7.8"), out
    out = submit(server, "--auth", "PLAIN", *ALICE, "--to", "bob@example.org", "--from", "alice@example.test")
    assert rejection(out).startswith("454 4.7.0"), out
    assert "event=auth_failed" in server.log()


def test_mail_to_a_domain_that_does_not_exist_bounces_at_once(server: Jitaku) -> None:
    out = submit(
        server,
        "--auth",
        "PLAIN",
        *ALICE,
        "--to",
        "dave@nowhere.test",
        "--from",
        "alice@example.test",
        "--header",
        "From: Alice <alice@example.test>",
    )
    assert "250 2.0.0" in out, out
    bounce = wait_until(lambda: server.mailbox("alice@example.test"))
    text = server.message("alice@example.test", bounce[0]["uid"]).decode()
    assert "Final-Recipient: rfc822; dave@nowhere.test" in text and "Status: 5.1.2" in text
    assert server.queue() == []
