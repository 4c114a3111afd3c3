"""The status page, fetched with curl: who has mail and what waits in the queue."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from tests.integration.harness import Jitaku
from tests.peers import swaks


def curl(url: str) -> tuple[int, str]:
    result = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", url], capture_output=True, text=True, timeout=30)
    body, _, code = result.stdout.rpartition("\n")
    return int(code), body


@pytest.mark.both_databases
def test_status_page_shows_mailboxes_queue_and_lists(server: Jitaku) -> None:
    server.cli("list", "create", "sota@example.test", "--name", "SOTA Japan")
    server.cli("list", "add", "sota@example.test", "alice@example.test")
    swaks("--server", f"127.0.0.1:{server.smtp_port}", "--to", "alice@example.test", "--from", "carol@remote.test")
    code, page = curl(f"http://127.0.0.1:{server.web_port}/admin/")
    assert code == 200
    assert "mail.example.test" in page and "alice@example.test" in page and "direct to MX" in page
    code, body = curl(f"http://127.0.0.1:{server.web_port}/admin/status.json")
    status = json.loads(body)
    assert code == 200
    assert {"address": "alice@example.test", "messages": 1} in status["mailboxes"]
    assert {"address": "bob@example.org", "messages": 0} in status["mailboxes"]
    assert status["queue"] == []
    assert status["lists"] == [
        {"address": "sota@example.test", "name": "SOTA Japan", "members": 1, "posts": 0, "held": 0}
    ]
    assert "SOTA Japan" in page
    code, _ = curl(f"http://127.0.0.1:{server.web_port}/nothing-here")
    assert code == 404


def test_port_443_speaks_https_with_our_certificate(server: Jitaku) -> None:
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 443))
    except OSError:
        pytest.skip("127.0.0.1:443 is taken or not ours to bind here")
    finally:
        probe.close()
    server.settings["web"]["listen"].append("127.0.0.1:443")
    server.write_config()
    server.restart()
    result = subprocess.run(
        [
            "curl",
            "-sS",
            "--cacert",
            str(server.dir / "tls" / "cert.pem"),
            "--resolve",
            "mail.example.test:443:127.0.0.1",
            "https://mail.example.test/admin/status.json",  # by its public name: an admin's login is needed
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"error": "log in as an admin first"}
    code, _ = curl(f"http://127.0.0.1:{server.web_port}/admin/status.json")  # on this machine, by a local name
    assert code == 200
