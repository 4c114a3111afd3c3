"""The rspamd client against a real rspamd (tests/integration/engines/rspamd.py) and against fake ones on loopback
that hang, fail or talk nonsense: a verdict or one EngineError line, never a hang."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import pytest

from jitaku.mail.filters.rspamd import Rspamd, controller_url_for
from jitaku.mail.filters.verdict import EngineError, Envelope
from tests.integration.engines.rspamd import Rspamd as RspamdEngine
from tests.integration.engines.rspamd import rspamd_engine  # noqa: F401 (the fixture)
from tests.peers import free_port

T = TypeVar("T")
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


def message(subject: str, body: str, *, charset: str = "us-ascii", extra: str = "") -> bytes:
    head = (
        "From: Alice <alice@example.com>\r\nTo: Bob <bob@example.jp>\r\n"
        f"Subject: {subject}\r\nDate: Mon, 07 Dec 2026 03:00:00 +0000\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.com>\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 7bit\r\n{extra}\r\n"
    )
    return head.encode() + body.encode(charset if charset != "iso-2022-jp" else "iso2022_jp")


def envelope(queue_id: str = "", **changes: str) -> Envelope:
    fields = {
        "client": "192.0.2.7",
        "helo": "mail.example.com",
        "sender": "alice@example.com",
        "recipients": ("bob@example.jp", "carol@example.jp"),
        "queue_id": queue_id or uuid.uuid4().hex[:12].upper(),
        "hostname": "mail.example.com",
    }
    return Envelope(**{**fields, **changes})  # type: ignore[arg-type]


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


async def scan_with(client: Rspamd, data: bytes, env: Envelope):  # type: ignore[no-untyped-def]
    try:
        return await client.scan(data, env)
    finally:
        await client.close()


def client_for(engine: RspamdEngine, timeout: float = 20.0) -> Rspamd:
    return Rspamd(engine.url, timeout=timeout, password=engine.password, controller_url=engine.controller_url)


def test_start_time(rspamd_engine: RspamdEngine) -> None:  # noqa: F811
    print(f"rspamd and redis answered after {rspamd_engine.started_in:.1f} s")
    assert rspamd_engine.started_in < 30


def test_gtube_is_rejected(rspamd_engine: RspamdEngine) -> None:  # noqa: F811
    verdict = run(lambda: scan_with(client_for(rspamd_engine), message("offer", f"Buy now\r\n{GTUBE}\r\n"), envelope()))
    assert verdict.engine == "rspamd"
    assert verdict.action == "reject"
    assert "GTUBE" in verdict.symbols
    assert verdict.reason == "Gtube pattern"
    assert verdict.score is not None and verdict.score >= 15


@pytest.mark.parametrize(
    ("charset", "subject", "body"),
    [
        ("us-ascii", "Lunch on Friday", "Hi Bob,\r\n\r\nShall we have lunch on Friday at noon?\r\n\r\nAlice\r\n"),
        (
            "iso-2022-jp",
            "=?ISO-2022-JP?B?GyRCJCo0aiQkGyhC?=",
            "ボブさん\r\n\r\n金曜日の昼食はいかがですか。\r\n\r\nアリス\r\n",
        ),
    ],
)
def test_plain_and_japanese_mail_pass(rspamd_engine: RspamdEngine, charset: str, subject: str, body: str) -> None:  # noqa: F811
    verdict = run(lambda: scan_with(client_for(rspamd_engine), message(subject, body, charset=charset), envelope()))
    assert verdict.action not in ("reject", "add header", "rewrite subject", "soft reject"), verdict
    assert verdict.score is not None and verdict.score < 6, verdict
    assert verdict.symbols  # rspamd ran its rules


def log_line(engine: RspamdEngine, queue_id: str) -> str:
    """rspamd's one log line for the task with QUEUE_ID: its IP, envelope, user and symbols with their options."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for text in engine.log.read_text().splitlines():
            if f"qid: <{queue_id}>" in text and "rspamd_task_write_log" in text:
                return text.replace(", ", ",")
        time.sleep(0.05)
    raise AssertionError(f"no log line for {queue_id}")


def test_envelope_reaches_rspamd(rspamd_engine: RspamdEngine) -> None:  # noqa: F811
    queue_id = "JQ" + uuid.uuid4().hex[:10].upper()
    env = envelope(queue_id, client="198.51.100.23", helo="helo-name.example.net", hostname="")
    verdict = run(lambda: scan_with(client_for(rspamd_engine), message("Hello", "Hello Bob\r\n"), env))
    assert "FROM_EQ_ENVFROM" in verdict.symbols  # the envelope sender seen
    assert "HFILTER_HOSTNAME_UNKNOWN" in verdict.symbols  # no Hostname: rspamd's own lookup failed
    line = log_line(rspamd_engine, queue_id)
    assert "ip: 198.51.100.23" in line
    assert "from: <alice@example.com>" in line
    assert "rcpts: <bob@example.jp,carol@example.jp>" in line
    # The HELO shows only in the options of HFILTER's HELO symbols, which depend on how far rspamd's DNS lookups
    # got before their timeout (here they go nowhere): on a loaded machine none may fire, so it is not asserted

    # Authenticated: the User header, and the Hostname header (no HFILTER_HOSTNAME_UNKNOWN then).
    queue_id = "JQ" + uuid.uuid4().hex[:10].upper()
    env = envelope(queue_id, user="alice@example.com")
    verdict = run(lambda: scan_with(client_for(rspamd_engine), message("Hello", "Hello Bob\r\n"), env))
    assert "HFILTER_HOSTNAME_UNKNOWN" not in verdict.symbols
    assert "user: alice@example.com" in log_line(rspamd_engine, queue_id)


def test_learning_counts_and_knows_repeats(rspamd_engine: RspamdEngine) -> None:  # noqa: F811
    spam = message(
        "Cheap watches and pills",
        "Dear friend, cheap replica watches, discount pills, casino bonus, click here to claim your prize now. "
        "Limited offer for winners only, act today and receive free money transfer instructions.\r\n",
    )
    before = rspamd_engine.stat()["learned"]

    async def twice() -> tuple[bool, bool]:
        client = client_for(rspamd_engine)
        try:
            return await client.learn(spam, spam=True), await client.learn(spam, spam=True)
        finally:
            await client.close()

    first, second = run(twice)
    assert first is True
    assert rspamd_engine.stat()["learned"] == before + 1  # type: ignore[operator]
    assert second is False  # rspamd: already learned
    assert rspamd_engine.stat()["learned"] == before + 1  # type: ignore[operator]

    ham = message(
        "Minutes of Tuesday's meeting", "Hi all, attached are the minutes; the next meeting is on the 14th.\r\n"
    )
    assert run(lambda: _learn_and_close(client_for(rspamd_engine), ham)) is True
    assert rspamd_engine.stat()["learned"] == before + 2  # type: ignore[operator]


def test_learning_needs_the_password(rspamd_engine: RspamdEngine) -> None:  # noqa: F811
    client = Rspamd(rspamd_engine.url, timeout=10, controller_url=rspamd_engine.controller_url)
    with pytest.raises(EngineError, match=r"^rspamd: HTTP 401 from /learnham: Unauthorized$"):
        run(lambda: _learn_and_close(client, message("Hi", "ham, and long enough to learn from it\r\n")))


def test_learning_at_the_normal_worker_says_so(rspamd_engine: RspamdEngine) -> None:  # noqa: F811
    client = Rspamd(rspamd_engine.url, timeout=10, password=rspamd_engine.password, controller_url=rspamd_engine.url)
    with pytest.raises(EngineError, match="controller"):
        run(lambda: _learn_and_close(client, message("Hi", "ham\r\n")))


async def _learn_and_close(client: Rspamd, data: bytes) -> bool:
    try:
        return await client.learn(data, spam=False)
    finally:
        await client.close()


def test_controller_url_by_default() -> None:
    assert controller_url_for("http://127.0.0.1:11333") == "http://127.0.0.1:11334"
    assert controller_url_for("http://[::1]:11332/") == "http://[::1]:11334/"
    assert controller_url_for("http://spam.lan:8080") == "http://spam.lan:8080"


# A fake rspamd: reads a request, then answers as told; what it read is kept for a test that asks.


@dataclass(frozen=True)
class Request:
    """One request as the fake read it: its request line, its header fields in order, and its body."""

    line: str
    fields: tuple[tuple[str, str], ...]
    body: bytes

    def values(self, name: str) -> list[str]:
        return [value for field, value in self.fields if field.lower() == name.lower()]


Fake = Callable[..., str]  # (answer, seen=None): the fake's URL; SEEN, a list, gets each request it read


@pytest.fixture
def fake() -> Iterator[Fake]:
    servers: list[socket.socket] = []
    stop = threading.Event()

    def start(answer: bytes | None, seen: list[Request] | None = None) -> str:
        listener = socket.create_server(("127.0.0.1", 0))
        servers.append(listener)

        def serve() -> None:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except OSError:
                    return
                request = read_request(connection)
                if seen is not None:
                    seen.append(request)
                if answer is None:  # hang
                    stop.wait(30)
                else:
                    connection.sendall(answer)
                connection.close()

        threading.Thread(target=serve, daemon=True).start()
        return f"http://127.0.0.1:{listener.getsockname()[1]}"

    yield start
    stop.set()
    for listener in servers:
        listener.close()


def read_request(connection: socket.socket) -> Request:
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    line, *lines = head.decode("utf-8", "replace").split("\r\n")
    fields = tuple((name.strip(), value.strip()) for name, _, value in (f.partition(":") for f in lines))
    length = next((int(value) for name, value in fields if name.lower() == "content-length"), 0)
    while len(body) < length:
        body += connection.recv(65536)
    return Request(line, fields, body)


def http(status: str, body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {size}\r\n\r\n".encode() + body


def scan_fake(url: str, timeout: float = 5.0) -> EngineError:
    client = Rspamd(url, timeout=timeout, controller_url=url)
    with pytest.raises(EngineError) as caught:
        run(lambda: scan_with(client, message("Hi", "Hi\r\n"), envelope()))
    assert caught.value.engine == "rspamd"
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300
    return caught.value


def test_hung_engine_times_out(fake: Fake) -> None:
    started = time.monotonic()
    error = scan_fake(fake(None), timeout=0.5)
    assert time.monotonic() - started < 3
    assert "no answer within 0.5 s" in error.what


def test_http_500(fake: Fake) -> None:
    error = scan_fake(fake(http("500 Internal Server Error", b'{"error":"boom"}')))
    assert error.what == "HTTP 500 from /checkv2: boom"


def test_invalid_json(fake: Fake) -> None:
    assert "not JSON" in scan_fake(fake(http("200 OK", b"<html>nope</html>"))).what


def test_json_without_the_fields(fake: Fake) -> None:
    assert "no score" in scan_fake(fake(http("200 OK", b'{"action":"reject"}'))).what
    assert "no known action" in scan_fake(fake(http("200 OK", b'{"score":1.0,"action":"maybe"}'))).what


def test_closed_mid_answer(fake: Fake) -> None:
    scan_fake(fake(http("200 OK", b'{"score":1', length=500)))


def test_oversized_answer(fake: Fake) -> None:
    body = b'{"score":1.0,"action":"no action","x":"' + b"a" * (2 * 1024 * 1024) + b'"}'
    assert "longer than" in scan_fake(fake(http("200 OK", body))).what


def test_learn_errors(fake: Fake) -> None:
    url = fake(http("500 Internal Server Error", b"oops"))
    client = Rspamd(url, timeout=5, controller_url=url)
    with pytest.raises(EngineError, match=r"^rspamd: HTTP 500 from /learnham$"):
        run(lambda: _learn_and_close(client, b"Subject: x\r\n\r\nx\r\n"))


def test_connection_refused() -> None:
    error = scan_fake(f"http://127.0.0.1:{free_port()}")
    assert "cannot connect to 127.0.0.1:" in error.what and "refused" in error.what


async def _ping_and_close(client: Rspamd) -> None:
    try:
        await client.ping()
    finally:
        await client.close()


def test_ping_answers_pong_and_a_dead_or_strange_rspamd_is_an_engine_error(
    rspamd_engine: RspamdEngine,  # noqa: F811
    fake: Fake,
) -> None:
    run(lambda: _ping_and_close(client_for(rspamd_engine)))  # the health check's question: GET /ping, "pong"
    for url, what in (
        (fake(http("500 Internal Server Error", b'{"error":"boom"}')), "HTTP 500 from /ping: boom"),
        (fake(http("200 OK", b"<html>" + b"x" * 5000)), "answer longer than 1024 bytes"),
        (fake(http("200 OK", b"<html>")), "HTTP 200 from /ping"),
        (fake(None), "no answer within 0.5 s"),
        (f"http://127.0.0.1:{free_port()}", "cannot connect"),
    ):
        with pytest.raises(EngineError) as caught:
            run(lambda url=url: _ping_and_close(Rspamd(url, timeout=0.5)))
        assert caught.value.engine == "rspamd" and what in caught.value.what, caught.value.what
