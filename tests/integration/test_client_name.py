"""The client's confirmed name for the spam engines (issue 23): with rspamd on, a real `jitaku serve` looks up the
sending server's reverse DNS in the tests' DNS server (dnslib) and writes the confirmed name into the Received
header as Postfix does, where SpamAssassin reads it. (rspamd's hfilter, which scores a nameless client, skips
loopback clients; what rspamd is told is checked against a stand-in in test_engine_rspamd.py.)"""

from __future__ import annotations

from typing import Any

from jitaku.store import mailstore
from tests.integration.engines.rspamd import Rspamd, rspamd_engine  # noqa: F401 (a fixture)
from tests.integration.harness import Jitaku
from tests.peers import Zone, swaks

ALICE = "alice@example.test"


def test_the_confirmed_name_is_in_received(
    jitaku_factory: Any,
    dns_zone: tuple[Zone, int],
    rspamd_engine: Rspamd,  # noqa: F811
) -> None:
    zone, port = dns_zone
    zone.add("in-addr.arpa. 60 IN SOA ns.example. admin.example. 1 60 60 60 60")
    server: Jitaku = jitaku_factory(port)
    server.settings["filters"] = {"timeout": 10, "rspamd": {"url": rspamd_engine.url}}
    server.write_config()
    server.init(ALICE)
    server.start()

    def send(subject: str, source: str = "127.0.0.1") -> bytes:
        sent = swaks(
            "--server", f"127.0.0.1:{server.smtp_port}", "--local-interface", source, "--helo", "mx.remote.example",
            "--from", "someone@remote.example", "--to", ALICE, "--header", f"Subject: {subject}",
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout
        (found,) = [
            m.body
            for m in server.read(lambda s: mailstore.list_messages(s, ALICE, "INBOX"))
            if subject.encode() in m.body
        ]
        return found

    nameless = send("before any PTR")
    assert b"Received: from mx.remote.example ([127.0.0.1])" in nameless

    zone.add("1.0.0.127.in-addr.arpa. 60 IN PTR mx.remote.example.")
    zone.add("mx.remote.example. 60 IN A 127.0.0.1")
    zone.add("2.0.0.127.in-addr.arpa. 60 IN PTR mx.remote.example.")  # not confirmed: the name leads to .1
    server.restart()  # the daemon remembers the "no PTR" answer for the SOA's minimum; a new one asks again
    named = send("with a confirmed name")
    assert b"Received: from mx.remote.example (mx.remote.example [127.0.0.1])" in named
    claimed = send("from a name that leads elsewhere", source="127.0.0.2")
    assert b"Received: from mx.remote.example ([127.0.0.2])" in claimed
