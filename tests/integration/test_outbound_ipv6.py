"""Leaving mail over IPv6, in a network namespace of the test's own: an MX with A and AAAA records (a local
DNS server) and Postfix's smtp-sink on each address, or on the IPv6 one a mock of Gmail refusing an IPv6
sender without a PTR record. Which sink took the message, and the peer address it saw, say the family."""

from __future__ import annotations

import socket
import socketserver
from collections.abc import Iterator
from typing import Any

import pytest

from jitaku import interfaces
from tests.integration.harness import Jitaku
from tests.integration.test_outbound import submit
from tests.peers import NetworkNamespace, Sink, Zone, serve, stop_serving, wait_until

MX_V4 = "192.0.2.25"
MX_V6 = "2001:db8::25"
OURS_V6 = "2001:db8::7"
# Gmail's words to an IPv6 sender whose address has no PTR record
IPV6_REFUSAL = (
    f"550-5.7.1 [{MX_V6}] This message does not meet IPv6 sending guidelines regarding\r\n"
    "550-5.7.1 PTR records and authentication. To learn more, go to\r\n"
    "550 5.7.1  https://support.google.com/mail/?p=IPv6AuthError x1-20020a.12 - gsmtp\r\n"
)


def remote_mx(namespace: NetworkNamespace, zone: Zone, a: bool = True) -> None:
    """mx.remote.test at 2001:db8::25 and, with A, at 192.0.2.25 too, on our namespace's interface, beside our
    global address 2001:db8::7 (added last, so listed first: the one DDNS publishes)."""
    namespace.ip("addr", "add", f"{MX_V4}/24", "dev", "home0")
    namespace.ip("addr", "add", f"{MX_V6}/64", "dev", "home0", "nodad")
    namespace.ip("addr", "add", f"{OURS_V6}/64", "dev", "home0", "nodad")
    # the kernel would send from the MX's own address (RFC 6724 rule 1); jitaku sends from the published one
    assert str(interfaces.global_ipv6()) == OURS_V6
    zone.add("remote.test. 300 IN MX 10 mx.remote.test.")
    zone.add(f"mx.remote.test. 300 IN AAAA {MX_V6}")
    if a:
        zone.add(f"mx.remote.test. 300 IN A {MX_V4}")


def sender(jitaku_factory: Any, dns_port: int, ipv6: bool) -> Jitaku:
    """A running jitaku delivering straight to MX hosts on port 25, retrying only after an hour: whatever
    reaches a sink within seconds went in the first attempt."""
    server: Jitaku = jitaku_factory(dns_port)
    server.settings["delivery"] = {"ipv6": ipv6}
    server.settings["queue"] = {"retry_min": 3600, "retry_max": 7200}
    server.write_config()
    server.init("alice@example.test", "bob@example.org")
    server.start()
    return server


def client_address(stored: bytes) -> str:
    """The peer smtp-sink saw: "ipv6:2001:db8::25" or "192.0.2.25"."""
    head = stored.split(b"\n\n", 1)[0].decode()
    return next(line.split(": ", 1)[1].strip() for line in head.splitlines() if line.startswith("X-Client-Addr:"))


def queue_id(line: str) -> str:
    """A log line's "queue_id=..." field."""
    return next(field for field in line.split() if field.startswith("queue_id="))


@pytest.mark.parametrize(("ipv6", "family"), [(False, "IPv4"), (True, "IPv6")])
def test_an_mx_with_a_and_aaaa_gets_mail_over_ipv6_only_when_delivery_ipv6_is_on(
    network_namespace, jitaku_factory, dns_zone, sink_factory, ipv6: bool, family: str
) -> None:
    zone, dns_port = dns_zone
    remote_mx(network_namespace, zone)
    sinks = {"IPv4": sink_factory(host=MX_V4, port=25), "IPv6": sink_factory(host=MX_V6, port=25)}
    server = sender(jitaku_factory, dns_port, ipv6)
    submit(server, "dave@remote.test")
    (stored,) = wait_until(sinks[family].messages)
    assert client_address(stored) == (f"ipv6:{OURS_V6}" if ipv6 else MX_V4)
    assert [sink.messages() for name, sink in sinks.items() if name != family] == [[]]
    wait_until(lambda: server.queue() == [])
    attempts = [line for line in server.log().splitlines() if "event=delivery_attempt" in line]
    assert len(attempts) == 1 and f"family={family} " in attempts[0] and "delivered=1 recipients=1" in attempts[0]
    assert f"event=delivered {queue_id(attempts[0])}" in server.log()


class GmailLike(socketserver.ThreadingTCPServer):
    """Gmail toward an IPv6 sender without a PTR record: IPV6_REFUSAL at one step of the session (at RCPT, for
    dave only). What it takes, it keeps: the recipients of each message."""

    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, refuse_at: str) -> None:
        self.refuse_at = refuse_at
        self.taken: list[list[str]] = []
        super().__init__((MX_V6, 25), GmailSession)


class GmailSession(socketserver.StreamRequestHandler):
    server: GmailLike

    def say(self, reply: str, refuse_here: bool = False) -> None:
        self.wfile.write((IPV6_REFUSAL if refuse_here else reply + "\r\n").encode())

    def handle(self) -> None:
        refuse_at = self.server.refuse_at
        self.say("220 mx.google.test ESMTP - gsmtp", refuse_at == "greeting")
        recipients: list[str] = []
        for line in self.rfile:
            verb = line[:4].decode().upper()
            if verb in ("EHLO", "HELO"):
                self.say("250 mx.google.test at your service", refuse_at == "EHLO")
            elif verb == "MAIL":
                recipients = []
                self.say("250 2.1.0 OK", refuse_at == "MAIL")
            elif verb == "RCPT":
                refused = refuse_at == "RCPT" and b"<dave@" in line
                if not refused:
                    recipients.append(line.decode().split("<", 1)[1].split(">", 1)[0])
                self.say("250 2.1.5 OK", refused)
            elif verb == "DATA":
                self.say("354 Go ahead")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                if refuse_at != "DATA":
                    self.server.taken.append(recipients)
                self.say("250 2.0.0 OK - gsmtp", refuse_at == "DATA")
            elif verb == "RSET":
                self.say("250 2.0.0 OK")
            elif verb == "QUIT":
                self.say("221 2.0.0 closing connection")
                return
            else:
                self.say("502 5.5.1 Unrecognized command")


@pytest.fixture
def gmail_like() -> Iterator[Any]:
    made: list[GmailLike] = []

    def make(refuse_at: str) -> GmailLike:
        made.append(GmailLike(refuse_at))
        serve(made[-1])
        return made[-1]

    yield make
    for server in made:
        stop_serving(server)


@pytest.mark.parametrize("refuse_at", ["greeting", "MAIL", "RCPT", "DATA"])
def test_a_5_7_1_refusal_over_ipv6_goes_again_over_ipv4_in_the_same_attempt(
    network_namespace, jitaku_factory, dns_zone, sink_factory, gmail_like, refuse_at: str
) -> None:
    """Gmail refuses IPv6 senders without a PTR record, which most home lines cannot set, and takes the same
    message over IPv4: no bounce, and no waiting an hour for the retry."""
    zone, dns_port = dns_zone
    remote_mx(network_namespace, zone)
    gmail = gmail_like(refuse_at)
    over_ipv4: Sink = sink_factory(host=MX_V4, port=25)
    server = sender(jitaku_factory, dns_port, ipv6=True)
    submit(server, "dave@remote.test,erin@remote.test")
    (stored,) = wait_until(over_ipv4.messages)
    wait_until(lambda: server.queue() == [])
    if refuse_at == "RCPT":  # only dave was refused: erin's copy went over IPv6
        assert gmail.taken == [["erin@remote.test"]]
        assert b"X-Rcpt-Args: <dave@remote.test>" in stored and b"<erin@remote.test>" not in stored
    else:
        assert gmail.taken == []
        assert b"X-Rcpt-Args: <dave@remote.test>" in stored and b"X-Rcpt-Args: <erin@remote.test>" in stored
    assert client_address(stored) == MX_V4
    log = server.log()
    assert server.mailbox("alice@example.test") == [] and "event=bounced" not in log and "event=deferred" not in log
    attempts = [line for line in log.splitlines() if "event=delivery_attempt" in line]
    assert len(attempts) == 2, attempts
    assert f"address={MX_V6} family=IPv6" in attempts[0] and "5.7.1" in attempts[0] and "then=IPv4" in attempts[0]
    assert f"address={MX_V4} family=IPv4" in attempts[1]
    assert queue_id(attempts[0]) == queue_id(attempts[1])


def test_an_ipv6_only_mx_waits_for_delivery_ipv6_and_says_so(
    network_namespace, jitaku_factory, dns_zone, sink_factory
) -> None:
    zone, dns_port = dns_zone
    remote_mx(network_namespace, zone, a=False)
    sink: Sink = sink_factory(host=MX_V6, port=25)
    server = sender(jitaku_factory, dns_port, ipv6=False)
    submit(server, "dave@remote.test")
    (entry,) = wait_until(lambda: [e for e in server.queue() if e["attempts"] == 1])
    assert entry["last_error"] == (
        "4.4.4 the MX host of remote.test, mx.remote.test, has IPv6 addresses only, and [delivery] ipv6 is off"
    )
    assert sink.messages() == [] and server.mailbox("alice@example.test") == []  # kept for a retry, not bounced
    server.settings["delivery"] = {"ipv6": True}  # what the reason says to do
    server.write_config()
    server.restart()
    server.cli("queue", "flush")
    (stored,) = wait_until(sink.messages)
    assert client_address(stored) == f"ipv6:{OURS_V6}"
