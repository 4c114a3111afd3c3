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
