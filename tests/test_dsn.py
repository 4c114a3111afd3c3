"""mail/dsn.py: RFC 3464 reports that mail programs parse."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

from jitaku.config import QueueSettings
from jitaku.mail.dsn import bounce, status_of
from jitaku.mail.queue import retry_delay
from jitaku.mail.transport import Outcome


def test_status_comes_from_the_reply_or_its_class() -> None:
    assert status_of(Outcome("a@x.test", False, True, "550 5.1.1 <a@x.test>: User unknown", "mx.x.test")) == "5.1.1"
    assert status_of(Outcome("a@x.test", False, True, "554 no such thing", "mx.x.test")) == "5.0.0"
    assert status_of(Outcome("a@x.test", False, False, "421 busy", "mx.x.test")) == "4.0.0"


def test_bounce_is_a_multipart_report_naming_recipient_reply_and_host() -> None:
    original = b"From: alice@example.test\r\nSubject: =?UTF-8?B?5pel5pys?=\r\n\r\nbody that is not copied\r\n"
    raw = bounce(
        reporting_host="mail.example.test",
        from_address="MAILER-DAEMON@example.test",
        to="alice@example.test",
        queue_id="ABC123",
        arrival_date=0,
        failed=[
            Outcome("dave@remote.test", False, True, "550 5.1.1 <dave@remote.test>: User unknown", "mx.remote.test")
        ],
        original=original,
    )
    report = message_from_bytes(raw, policy=default)
    assert report.get_content_type() == "multipart/report"
    parts = [part.get_content_type() for part in report.iter_parts()]
    assert parts == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    status = report.get_payload()[1]
    blocks = status.get_payload()
    assert blocks[0]["Reporting-MTA"] == "dns; mail.example.test"
    assert blocks[1]["Final-Recipient"] == "rfc822; dave@remote.test"
    assert blocks[1]["Status"] == "5.1.1"
    assert blocks[1]["Remote-MTA"] == "dns; mx.remote.test"
    assert blocks[1]["Diagnostic-Code"] == "smtp; 550 5.1.1 <dave@remote.test>: User unknown"
    assert b"Subject: =?UTF-8?B?5pel5pys?=" in raw and b"body that is not copied" not in raw
    assert report["Auto-Submitted"] == "auto-replied"


def test_retry_backoff_doubles_between_min_and_max() -> None:
    settings = QueueSettings(retry_min=300, retry_max=3600, max_age=432000)
    assert [retry_delay(n, settings) for n in range(6)] == [300, 600, 1200, 2400, 3600, 3600]


def test_a_refusal_of_the_whole_session_is_told_apart_from_each_recipients() -> None:
    from jitaku.lists.bounces import failures
    from jitaku.mail.transport import _whole_session

    def refused(*replies: str) -> list[Outcome]:
        return [Outcome(f"m{i}@x.test", False, True, reply, "mx.x.test") for i, reply in enumerate(replies)]

    def wide(outcomes: list[Outcome]) -> list[bool]:
        return [outcome.session_wide for outcome in _whole_session(outcomes)]

    def refused_whole_session(failed: list[Outcome]) -> set[str]:
        """Whom the list runner reads as refused with the session, in our DSN to m0's VERP address."""
        report = bounce(
            reporting_host="mail.example.test",
            from_address="MAILER-DAEMON@example.test",
            to="sota-bounces+abcdefgh=m0=x.test@example.test",
            queue_id="Q",
            arrival_date=0,
            failed=failed,
            original=b"Subject: x\r\n\r\n",
        )
        return failures(report).whole_session

    block = "550-5.7.1 [192.0.2.1] Our system has detected unsolicited mail from your IP"
    assert wide(refused(block, block, block)) == [True, True, True]
    assert wide(refused("554 5.7.1 blocked id=a1", "554 5.7.1 blocked id=b2")) == [True, True]  # ids differ
    assert wide(refused("500 Error: command failed", "500 Error: command failed")) == [True, True]
    assert wide(refused("550 5.1.1 User unknown", "550 5.1.1 User unknown")) == [False, False]  # the mailboxes
    assert wide(refused("552 5.2.2 Mailbox full", "552 5.2.2 Mailbox full")) == [False, False]
    assert wide(refused("554 5.7.1 no", "550 5.7.1 no")) == [False, False]  # not alike
    assert wide(refused(block)) == [False]  # one recipient cannot tell
    delivered = Outcome("ok@x.test", True, False, "250 ok", "mx.x.test")
    assert wide([*refused(block, block), delivered]) == [False, False, False]
    assert refused_whole_session(_whole_session(refused(block, block))[:1]) == {"m0@x.test"}
    assert refused_whole_session(refused("550 5.1.1 User unknown")) == set()
    assert failures(b"\xff junk").whole_session == set()
