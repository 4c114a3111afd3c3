"""The daemon runs on uvloop where it is installed (a tenth less CPU per message and command, issue 20), and on
asyncio's own loop when `JITAKU_EVENT_LOOP=asyncio` asks for it or uvloop is missing: mail arrives over SMTP
and is read over IMAP and POP3 on either, and the log says which loop ran."""

from __future__ import annotations

import imaplib
import importlib.util
import poplib
from typing import Any

import pytest

from tests.integration.harness import READER, Jitaku
from tests.peers import swaks, wait_for_port, wait_until

PASSWORD = "secret-password"


@pytest.mark.parametrize(
    ("asked", "expected"),
    [(None, "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"), ("asyncio", "asyncio")],
)
def test_mail_flows_on_the_event_loop_the_log_names(
    asked: str | None, expected: str, jitaku_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    if asked is None:
        monkeypatch.delenv("JITAKU_EVENT_LOOP", raising=False)
    else:
        monkeypatch.setenv("JITAKU_EVENT_LOOP", asked)
    server: Jitaku = jitaku_factory()
    server.init(READER)
    server.start()
    wait_for_port(server.imap_port)
    wait_for_port(server.pop3_port)
    wait_until(lambda: "event=started" in server.log())  # the ports listen from before the loop runs
    assert f"event_loop={expected}" in server.log()

    sent = swaks("--server", f"127.0.0.1:{server.smtp_port}", "--to", READER, "--header", "Subject: on the loop")
    assert "250 2.0.0 Ok: queued as" in sent.stdout

    imap = imaplib.IMAP4("127.0.0.1", server.imap_port, timeout=10)
    imap.login(READER, PASSWORD)
    imap.select("INBOX")
    _status, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: on the loop" in data[0][1]  # type: ignore[index]
    imap.logout()

    pop = poplib.POP3("127.0.0.1", server.pop3_port, timeout=10)
    pop.user(READER)
    pop.pass_(PASSWORD)
    assert pop.stat()[0] == 1
    pop.quit()
