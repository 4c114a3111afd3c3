"""The status page, fetched with curl: who has mail and what waits in the queue."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import Jitaku, swaks


def curl(url: str) -> tuple[int, str]:
    result = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", url], capture_output=True, text=True, timeout=30)
    body, _, code = result.stdout.rpartition("\n")
    return int(code), body


def test_status_page_shows_mailboxes_and_queue(server: Jitaku) -> None:
    swaks("--server", f"127.0.0.1:{server.smtp_port}", "--to", "alice@example.test", "--from", "carol@remote.test")
    code, page = curl(f"http://127.0.0.1:{server.web_port}/")
    assert code == 200
    assert "mail.example.test" in page and "alice@example.test" in page and "direct to MX" in page
    code, body = curl(f"http://127.0.0.1:{server.web_port}/status.json")
    status = json.loads(body)
    assert code == 200
    assert {"address": "alice@example.test", "messages": 1} in status["mailboxes"]
    assert {"address": "bob@example.org", "messages": 0} in status["mailboxes"]
    assert status["queue"] == []
    code, _ = curl(f"http://127.0.0.1:{server.web_port}/nothing-here")
    assert code == 404
