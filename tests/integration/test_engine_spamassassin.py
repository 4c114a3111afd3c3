"""The SpamAssassin client against a real spamd (tests/integration/engines/spamd.py) and against fake ones on
loopback that hang, close mid-answer, talk nonsense or answer an EX_ error: each failure is one EngineError."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from email.header import Header

import pytest

from jitaku.config import EngineAddress
from jitaku.mail.filters.spamassassin import SpamAssassin
from jitaku.mail.filters.verdict import EngineError, Envelope
from tests.integration.engines import spamd as engine
from tests.integration.engines.spamd import Spamd
from tests.peers import free_port

spamd = engine.spamd  # the session's daemon

ENVELOPE = Envelope(
    client="192.0.2.1", helo="mail.example.org", sender="a@example.org", recipients=("b@example.net",), queue_id="Q1"
)
GTUBE = b"XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(subject: str, body: bytes, extra: bytes = b"") -> bytes:
    return (
        b"Received: from mail.example.org (mail.example.org [192.0.2.1])\r\n\tby mx.example.net with ESMTP id Q1; Mon, 7 Dec 2026 03:00:00 +0000\r\n"
        b"From: Alice <alice@example.org>\r\nTo: Bob <bob@example.net>\r\n"
        + f"Subject: {subject}\r\nDate: Mon, 7 Dec 2026 03:00:00 +0000\r\nMessage-ID: <{uuid.uuid4()}@example.org>\r\n".encode()
        + b"MIME-Version: 1.0\r\n"
        + extra
        + b"\r\n"
        + body
    )


PLAIN = message(
    "Lunch on Thursday",
    b"Hi Bob,\r\n\r\nAre we still on for lunch on Thursday? The new place near the station opens at noon.\r\n"
    b"Let me know if another day suits you better.\r\n\r\nAlice\r\n",
    b"Content-Type: text/plain; charset=us-ascii\r\n",
)
JAPANESE_TEXT = "ボブさん\r\n\r\n木曜日のお昼はまだ大丈夫ですか。駅の近くの新しいお店が正午に開きます。\r\n他の日がよければ教えてください。\r\n\r\nアリス\r\n"
JAPANESE = message(
    Header("木曜日のお昼", "iso-2022-jp").encode(),
    JAPANESE_TEXT.encode("iso-2022-jp"),
    b"Content-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n",
)


def client(spamd: Spamd, timeout: float = 30.0, unix: bool = False, user: str = "") -> SpamAssassin:
    address = EngineAddress(path=str(spamd.socket_path)) if unix else EngineAddress(spamd.host, spamd.port)
    return SpamAssassin(address, user=user, timeout=timeout)


def test_gtube_scores_as_spam(spamd: Spamd) -> None:
    print(f"spamd started in {spamd.started_in:.1f} s")
    verdict = asyncio.run(
        client(spamd, user="nobody").scan(message("Test spam mail (GTUBE)", GTUBE + b"\r\n"), ENVELOPE)
    )
    assert verdict.engine == "spamassassin"
    assert verdict.score is not None and verdict.score >= 1000
    assert "GTUBE" in verdict.symbols
    assert verdict.reason.startswith("SpamAssassin score 10") and "GTUBE" in verdict.reason
    assert verdict.action == ""  # SpamAssassin's required_score is not ours: the score alone is reported


@pytest.mark.parametrize("sample", [PLAIN, JAPANESE], ids=["plain", "iso-2022-jp"])
def test_ham_scores_low(spamd: Spamd, sample: bytes) -> None:
    verdict = asyncio.run(client(spamd).scan(sample, ENVELOPE))
    assert verdict.score is not None and verdict.score < 5, verdict
    assert "GTUBE" not in verdict.symbols


def test_unix_socket(spamd: Spamd) -> None:
    verdict = asyncio.run(client(spamd, unix=True).scan(message("GTUBE", GTUBE + b"\r\n"), ENVELOPE))
    assert verdict.score is not None and verdict.score >= 1000


def test_learning_counts_once(spamd: Spamd) -> None:
    spam = message("Cheap watches", b"Buy cheap replica watches now at http://watches.example.com/ best prices\r\n")
    nspam, nham = spamd.learned()
    sa = client(spamd)
    assert asyncio.run(sa.learn(spam, spam=True)) is True
    assert spamd.learned() == (nspam + 1, nham)
    assert asyncio.run(sa.learn(spam, spam=True)) is False  # known already: nothing new
    assert spamd.learned() == (nspam + 1, nham)
    assert asyncio.run(sa.learn(PLAIN, spam=False)) is True
    assert spamd.learned() == (nspam + 1, nham + 1)


def test_big_message_is_cut(spamd: Spamd) -> None:
    big = message(
        "Photos", b"".join(b"line %d of a long and boring letter\r\n" % n for n in range(40000)) + GTUBE + b"\r\n"
    )
    sa = SpamAssassin(EngineAddress(spamd.host, spamd.port), max_size=64 * 1024)
    verdict = asyncio.run(sa.scan(big, ENVELOPE))
    assert "GTUBE" not in verdict.symbols  # past the cut: spamd never saw it


def test_connection_refused() -> None:
    sa = SpamAssassin(EngineAddress("127.0.0.1", free_port()), timeout=5)
    with pytest.raises(EngineError) as caught:
        asyncio.run(sa.scan(PLAIN, ENVELOPE))
    assert str(caught.value) == "spamassassin: connection refused"


def test_no_socket() -> None:
    with pytest.raises(EngineError, match="^spamassassin: no socket at that path$"):
        asyncio.run(SpamAssassin(EngineAddress(path="/nonexistent/spamd.sock")).scan(PLAIN, ENVELOPE))


@pytest.fixture
def fake_spamd() -> Iterator[Callable[[Callable[[socket.socket], None]], EngineAddress]]:
    """A one-thread server on loopback that reads the request's headers and does what ANSWER does with it."""
    servers: list[socket.socket] = []

    def start(answer: Callable[[socket.socket], None]) -> EngineAddress:
        listener = socket.create_server(("127.0.0.1", 0))
        servers.append(listener)

        def serve() -> None:
            while True:
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                with connection:
                    data = b""
                    while b"\r\n\r\n" not in data and (chunk := connection.recv(65536)):
                        data += chunk
                    try:
                        answer(connection)
                    except OSError:
                        pass

        threading.Thread(target=serve, daemon=True).start()
        return EngineAddress("127.0.0.1", listener.getsockname()[1])

    yield start
    for listener in servers:
        listener.close()


def hang(connection: socket.socket) -> None:
    time.sleep(3)


def closes_mid_answer(connection: socket.socket) -> None:
    connection.sendall(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 40\r\nSpam: True ; 1002.7 / 5.0\r\n\r\nGTUBE,MIS")


def closes_mid_headers(connection: socket.socket) -> None:
    connection.sendall(b"SPAMD/1.1 0 EX_OK\r\nContent-le")


def garbage(connection: socket.socket) -> None:
    connection.sendall(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")


def ex_error(connection: socket.socket) -> None:
    connection.sendall(b"SPAMD/1.0 76 Bad header line: Content-length: x\r\n")


def bad_score(connection: socket.socket) -> None:
    connection.sendall(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: Maybe ; lots\r\n\r\n")


def endless_header(connection: socket.socket) -> None:
    connection.sendall(b"SPAMD/1.1 0 EX_OK\r\nX: " + b"a" * 100_000)


def huge_body(connection: socket.socket) -> None:
    connection.sendall(b"SPAMD/1.1 0 EX_OK\r\nContent-length: 99999999\r\nSpam: True ; 9.0 / 5.0\r\n\r\n")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (hang, "spamassassin: no answer within 0.5 s"),
        (closes_mid_answer, "spamassassin: connection closed mid-answer"),
        (closes_mid_headers, "spamassassin: connection closed mid-answer"),
        (garbage, "spamassassin: not a spamd answer: 'HTTP/1.1 500 Internal Server Error'"),
        (ex_error, "spamassassin: spamd error 76 Bad header line: Content-length: x"),
        (bad_score, "spamassassin: unreadable Spam header 'Maybe ; lots'"),
        (endless_header, "spamassassin: answer line too long"),
        (huge_body, "spamassassin: bad Content-length '99999999'"),
    ],
)
def test_failures(
    fake_spamd: Callable[[Callable[[socket.socket], None]], EngineAddress],
    answer: Callable[[socket.socket], None],
    error: str,
) -> None:
    sa = SpamAssassin(fake_spamd(answer), timeout=0.5)
    started = time.monotonic()
    with pytest.raises(EngineError) as caught:
        asyncio.run(sa.scan(PLAIN, ENVELOPE))
    assert str(caught.value) == error
    assert time.monotonic() - started < 2
    if answer is ex_error:
        with pytest.raises(EngineError, match="spamd error 76"):
            asyncio.run(sa.learn(PLAIN, spam=True))


def test_ping_answers_pong_and_a_dead_or_strange_spamd_is_an_engine_error(
    spamd: Spamd, fake_spamd: Callable[[Callable[[socket.socket], None]], EngineAddress]
) -> None:
    asyncio.run(client(spamd).ping())  # the health check's question: PING, PONG
    for answer, error in (
        (garbage, "spamassassin: not PONG: 'HTTP/1.1 500 Internal Server Error'"),
        (hang, "spamassassin: no answer within 0.5 s"),
    ):
        with pytest.raises(EngineError) as caught:
            asyncio.run(SpamAssassin(fake_spamd(answer), timeout=0.5).ping())
        assert str(caught.value) == error
    with pytest.raises(EngineError, match="connection refused"):
        asyncio.run(SpamAssassin(EngineAddress("127.0.0.1", free_port()), timeout=0.5).ping())
