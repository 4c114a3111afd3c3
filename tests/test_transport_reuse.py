"""Outbound sessions against a real SMTP server (Postfix's smtp-sink, which offers PIPELINING): messages to
the same server share one connection, each transaction's commands go in one write, and a refusal of one
message's recipients leaves the next message on that connection unharmed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from jitaku.config import RelaySettings
from jitaku.mail import reuse
from jitaku.mail.smtp.pipelined import ReplyReader
from jitaku.mail.transport import Outcome, RelayTransport
from jitaku.store.queue import Personal
from tests.peers import Sink, Tap
from tests.test_queue import HOSTNAME, MESSAGE, _settled, envelope

SENDER = "alice@example.test"


@pytest.fixture
def tap_factory() -> Iterator[Any]:
    taps: list[Tap] = []

    def make(sink: Sink) -> Tap:
        taps.append(Tap(sink.port))
        return taps[-1]

    yield make
    for tap in taps:
        tap.close()


def through(tap: Tap) -> RelayTransport:
    return RelayTransport(RelaySettings(host="127.0.0.1", port=tap.port), HOSTNAME, timeout=10)


def deliver_in_turn(transport: RelayTransport, messages: list[list[str]], pause: float = 0.0) -> list[list[Outcome]]:
    """Each message's outcomes, delivered one after the other in one event loop, as the queue does."""

    async def main() -> list[list[Outcome]]:
        results = []
        for recipients in messages:
            results.append(await transport.deliver(SENDER, recipients, MESSAGE))
            await asyncio.sleep(pause)
        return results

    return asyncio.run(main())


def test_messages_to_one_server_share_one_connection(sink_factory: Any, tap_factory: Any) -> None:
    sink: Sink = sink_factory()
    tap: Tap = tap_factory(sink)
    results = deliver_in_turn(through(tap), [["dave@remote.test"], ["erin@remote.test"], ["carol@other.test"]])
    assert [[o.delivered for o in outcomes] for outcomes in results] == [[True], [True], [True]]
    stored = sorted(envelope(message, "X-Rcpt-Args")[0] for message in _settled(sink, 3))
    assert stored == ["<carol@other.test>", "<dave@remote.test>", "<erin@remote.test>"]
    assert tap.connections == 1


def test_a_connection_idle_too_long_is_closed_and_a_new_one_opened(
    sink_factory: Any, tap_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reuse, "IDLE_SECONDS", 0.05)
    sink: Sink = sink_factory()
    tap: Tap = tap_factory(sink)
    results = deliver_in_turn(through(tap), [["dave@remote.test"], ["erin@remote.test"]], pause=0.3)
    assert [[o.delivered for o in outcomes] for outcomes in results] == [[True], [True]]
    assert len(_settled(sink, 2)) == 2
    assert tap.connections == 2
    assert any(chunk.startswith(b"QUIT") for chunk in tap.chunks)


def test_mail_rcpt_and_data_go_in_one_write_and_the_next_copys_with_the_text_before(
    sink_factory: Any, tap_factory: Any
) -> None:
    sink: Sink = sink_factory()
    tap: Tap = tap_factory(sink)
    copies = {
        r: Personal(f"sota-bounces+{r.replace('@', '=')}@example.test", b"")
        for r in ("dave@remote.test", "erin@remote.test")
    }

    async def main() -> list[Outcome]:
        return await through(tap).deliver(SENDER, ["carol@other.test", *copies], MESSAGE, copies)

    assert [o.delivered for o in asyncio.run(main())] == [True, True, True]
    assert b"MAIL FROM:<alice@example.test>\r\nRCPT TO:<carol@other.test>\r\nDATA\r\n" in tap.chunks
    for recipient, own in copies.items():
        group = f"\r\n.\r\nMAIL FROM:<{own.sender}>\r\nRCPT TO:<{recipient}>\r\nDATA\r\n".encode()
        assert any(chunk.endswith(group) for chunk in tap.chunks), recipient
    assert len(_settled(sink, 3)) == 3


def test_a_refused_recipient_leaves_the_next_message_on_the_connection_unharmed(
    sink_factory: Any, tap_factory: Any
) -> None:
    refusing: Sink = sink_factory("-f", "rcpt", "-B", "550 5.1.1 No such user here")
    tap: Tap = tap_factory(refusing)
    results = deliver_in_turn(through(tap), [["dave@remote.test", "erin@remote.test"], ["carol@other.test"]])
    first, second = results
    assert [(o.recipient, o.delivered, o.permanent) for o in first] == [
        ("dave@remote.test", False, True),
        ("erin@remote.test", False, True),
    ]
    assert all(o.reply.startswith("550 5.1.1") for o in first + second)
    assert [(o.recipient, o.delivered, o.permanent) for o in second] == [("carol@other.test", False, True)]
    assert tap.connections == 1
    assert refusing.messages() == []


def test_replies_are_read_in_order_however_the_network_splits_them() -> None:
    """A multi-line reply split inside a line, and two replies in one packet, read as the server sent them."""

    async def main() -> list[str]:
        reader = ReplyReader()
        for chunk in (b"250-first line\r\n25", b"0 second line\r\n354 go", b" ahead\r\n", b"550 5.1.1 no\r\n"):
            reader.data_received(chunk)
        return [str(await reader.next()) for _ in range(3)]

    assert asyncio.run(main()) == ["250 first line\nsecond line", "354 go ahead", "550 5.1.1 no"]
