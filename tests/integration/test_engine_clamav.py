"""mail/filters/clamav.py against a real clamd (tests/integration/engines/clamav.py) and against fake servers on
loopback that hang, hang up, or answer what clamd never would."""

from __future__ import annotations

import asyncio
import base64
import io
import time
import tracemalloc
import zipfile
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from pathlib import Path

import pytest

from jitaku.config import ClamavSettings
from jitaku.mail.filters.clamav import Clamav
from jitaku.mail.filters.verdict import EngineError, Envelope, Verdict
from tests.integration.engines.clamav import (
    EICAR,
    EICAR_SIGNATURE,
    PATTERN,
    PATTERN_SIGNATURE,
    STREAM_MAX,
    Clamd,
    clamd,  # noqa: F401 (the fixture)
)
from tests.peers import free_port

ENVELOPE = Envelope(
    client="192.0.2.1", helo="mx.example.net", sender="a@example.net", recipients=("b@example.jp",), queue_id="Q1"
)
TIMEOUT = 30.0


def client(address: str | Path, max_size: int = STREAM_MAX, timeout: float = TIMEOUT) -> Clamav:
    return Clamav(ClamavSettings.model_validate({"address": str(address), "max_size": max_size}), timeout)


def scan(scanner: Clamav, message: bytes) -> Verdict:
    async def go() -> Verdict:
        try:
            return await scanner.scan(message, ENVELOPE)
        finally:
            await scanner.close()

    return asyncio.run(go())


def message(body: str = "Hello.\n", attachment: bytes | None = None, filename: str = "file.bin") -> bytes:
    mail = EmailMessage()
    mail["From"] = "a@example.net"
    mail["To"] = "b@example.jp"
    mail["Subject"] = "test"
    mail.set_content(body)
    if attachment is not None:
        mail.add_attachment(attachment, maintype="application", subtype="octet-stream", filename=filename)
    return mail.as_bytes()


def vm_hwm(pid: int) -> int:
    """clamd's peak resident memory so far, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_eicar_found_with_its_signature_name(clamd: Clamd) -> None:  # noqa: F811
    verdict = scan(client(clamd.address), EICAR)
    assert verdict == Verdict(engine="clamav", virus=EICAR_SIGNATURE, reason=f"virus {EICAR_SIGNATURE}")
    print(f"clamd started in {clamd.started_in:.2f} s")


def test_eicar_as_a_base64_attachment_found(clamd: Clamd) -> None:  # noqa: F811
    raw = message(attachment=EICAR, filename="eicar.com")
    assert base64.b64encode(EICAR) in raw.replace(b"\n", b"")  # encoded: clamd must decode the MIME part
    assert scan(client(clamd.address), raw).virus == EICAR_SIGNATURE


def test_made_up_pattern_found(clamd: Clamd) -> None:  # noqa: F811
    raw = message(f"Look at this: {PATTERN.decode()} and more.\n")
    verdict = scan(client(clamd.address), raw)
    assert verdict.virus == PATTERN_SIGNATURE
    assert verdict.reason == f"virus {PATTERN_SIGNATURE}"


def test_clean_messages_are_clean(clamd: Clamd) -> None:  # noqa: F811
    japanese = (
        b"From: a@example.net\r\nTo: b@example.jp\r\nSubject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=ISO-2022-JP\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        + "こんにちは、テストです。\r\n".encode("iso-2022-jp")
    )
    for raw in (message(), japanese):
        assert scan(client(clamd.address), raw) == Verdict(engine="clamav")


def test_unix_socket(clamd: Clamd) -> None:  # noqa: F811
    scanner = client(clamd.socket_path)
    asyncio.run(scanner.ping())
    assert scan(client(clamd.socket_path), EICAR).virus == EICAR_SIGNATURE


def test_ping(clamd: Clamd) -> None:  # noqa: F811
    asyncio.run(client(clamd.address).ping())
    with pytest.raises(EngineError, match="cannot connect"):
        asyncio.run(client(f"127.0.0.1:{free_port()}").ping())


def zip_bomb(size: int, then: bytes | None = None) -> bytes:
    """A zip whose first member is SIZE zero bytes (a few hundred kilobytes that unpack to SIZE), and THEN as a
    second member if given."""
    buffer = io.BytesIO()
    zero = bytes(1024 * 1024)
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("zeros.bin", "w", force_zip64=True) as member:
            for _ in range(size // len(zero)):
                member.write(zero)
        if then is not None:
            archive.writestr("after.com", then)
    return buffer.getvalue()


@pytest.mark.parametrize("then", [None, EICAR], ids=["bomb", "bomb-then-eicar"])
def test_zip_bomb_within_clamds_limits(clamd: Clamd, then: bytes | None) -> None:  # noqa: F811
    bomb = zip_bomb(384 * 1024 * 1024, then)  # past MaxFileSize and MaxScanSize
    assert len(bomb) < 1024 * 1024
    before = vm_hwm(clamd.pid)
    started = time.monotonic()
    verdict = scan(client(clamd.address), message(attachment=bomb, filename="bomb.zip"))
    took = time.monotonic() - started
    grew = vm_hwm(clamd.pid) - before
    print(f"zip bomb: {verdict.virus}, {took:.2f} s, clamd's peak RSS grew {grew / 2**20:.1f} MB")
    assert took < TIMEOUT
    assert grew < 64 * 1024 * 1024  # never the unpacked size
    if then is None:
        # clamd skips a member past its limits: clean, or "Heuristics.Limits.Exceeded.*" (AlertExceedsMax)
        assert verdict.virus is None or verdict.virus.startswith("Heuristics."), verdict
    else:  # the bomb does not blind the scan to what follows it
        assert verdict.virus in (EICAR_SIGNATURE, "Heuristics.Limits.Exceeded.MaxScanSize"), verdict


def test_25_mb_attachment_at_the_limit(clamd: Clamd) -> None:  # noqa: F811
    raw = message(attachment=bytes(range(256)) * (25 * 1024 * 1024 // 256), filename="big.bin")
    assert 25 * 1024 * 1024 < len(raw) < STREAM_MAX
    tracemalloc.start()
    try:
        started = time.monotonic()
        verdict = scan(client(clamd.address, max_size=len(raw)), raw)  # max_size exactly: all of it is sent
        took = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{len(raw) / 2**20:.1f} MB message: {took:.2f} s, client's peak allocation {peak / 2**20:.2f} MB")
    assert verdict == Verdict(engine="clamav")
    assert peak < 4 * 1024 * 1024  # sent in chunks from the message's own bytes, never copied whole


def test_message_past_max_size_scanned_up_to_it(clamd: Clamd) -> None:  # noqa: F811
    raw = message(attachment=bytes(range(256)) * 40000, filename="big.bin") + b"\r\n" + PATTERN
    verdict = scan(client(clamd.address, max_size=len(raw) - 1), raw)
    assert verdict.virus is None  # the pattern lies past max_size: not sent, clean as far as scanned
    assert verdict.reason == f"clean in the first {len(raw) - 1} of {len(raw)} bytes" and not verdict.whole
    assert scan(client(clamd.address, max_size=len(raw)), raw).virus == PATTERN_SIGNATURE


def test_max_size_past_clamds_stream_max_length(clamd: Clamd) -> None:  # noqa: F811
    raw = b"x" * (STREAM_MAX + 1024 * 1024)
    with pytest.raises(EngineError, match="size limit exceeded") as caught:
        scan(client(clamd.address, max_size=len(raw)), raw)
    assert str(caught.value).startswith("clamav: clamd answered ")


# A fake clamd: HANDLER gets each connection; the client talks to it with a short timeout.
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def against(handler: Handler, raw: bytes = EICAR, timeout: float = 1.0) -> tuple[EngineError, float]:
    async def go() -> tuple[EngineError, float]:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        started = time.monotonic()
        try:
            await client(f"127.0.0.1:{port}", timeout=timeout).scan(raw, ENVELOPE)
        except EngineError as error:
            return error, time.monotonic() - started
        finally:
            server.close()
        raise AssertionError("no EngineError")

    error, took = asyncio.run(go())
    assert error.engine == "clamav"
    assert "\n" not in str(error) and str(error).startswith("clamav: ")
    return error, took


async def read_command(reader: asyncio.StreamReader, first: bool = True) -> bytes:
    """Read a command as clamd does (after IDSESSION on a new connection), and every chunk if it is INSTREAM."""
    command = await reader.readuntil(b"\0")
    if first:
        assert command == b"zIDSESSION\0"
        command = await reader.readuntil(b"\0")
    if command == b"zINSTREAM\0":
        while length := int.from_bytes(await reader.readexactly(4), "big"):
            await reader.readexactly(length)
    return command


async def read_stream(reader: asyncio.StreamReader) -> None:
    assert await read_command(reader) == b"zINSTREAM\0"


def replying(answer: bytes, read: bool = True) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if read:
            await read_stream(reader)
        writer.write(answer)
        await writer.drain()
        writer.close()

    return handle


async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_stream(reader)
    await asyncio.sleep(3600)


async def hang_unread(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(3600)


@pytest.mark.parametrize("handler", [hang, hang_unread], ids=["reads-then-hangs", "never-reads"])
def test_hung_engine_times_out(handler: Handler) -> None:
    error, took = against(handler, raw=b"x" * (8 * 1024 * 1024), timeout=1.0)
    assert "no answer" in error.what and "within 1 s" in error.what
    assert 0.9 < took < 1.5


@pytest.mark.parametrize(
    ("answer", "read", "expected"),
    [
        (b"1: stream: Jitaku.Te", True, "connection closed mid-answer: '1: stream: Jitaku.Te'"),
        (b"", True, "connection closed before an answer"),
        (b"", False, "connection "),  # closed before an answer, or reset: the client's bytes were left unread
        (b"HTTP/1.1 200 OK\r\n\r\n<html>\0", True, "not clamd's answer: 'HTTP/1.1 200 OK??"),
        (b"stream: OK\0", True, "not clamd's answer: 'stream: OK'"),  # no number: not in a session
        (b"2: stream: OK\0", True, "not clamd's answer: '2: stream: OK'"),  # another command's
        (b"1: stream: OK but more\0", True, "not clamd's answer"),
        (b"\x00", True, "not clamd's answer: ''"),
        (b"1: stream: EVIL\r\nNAME FOUND\0", True, "not clamd's answer"),  # never a line break into a 554
        (b"x" * 5000, True, "answer longer than 1024 bytes"),
        (b"1: INSTREAM size limit exceeded. ERROR\0", True, "clamd answered 'INSTREAM size limit exceeded. ERROR'"),
        (b"1: stream: lstat() failed: No such file. ERROR\0", True, "clamd answered"),
    ],
    ids=[
        "mid-answer",
        "closed",
        "closed-unread",
        "http",
        "unnumbered",
        "number",
        "trailing",
        "empty",
        "newline",
        "long",
        "size",
        "error",
    ],
)
def test_bad_answers(answer: bytes, read: bool, expected: str) -> None:
    error, took = against(replying(answer, read))
    assert error.what.startswith(expected), error.what
    assert took < 1.0


def test_connection_refused_and_missing_socket(tmp_path: Path) -> None:
    for address in (f"127.0.0.1:{free_port()}", str(tmp_path / "no.sock")):
        with pytest.raises(EngineError, match=f"cannot connect to {address}"):
            scan(client(address), EICAR)


def test_connections_reused(clamd: Clamd) -> None:  # noqa: F811
    """One IDSESSION connection serves scans one after another; a FOUND ends it (a clamd with AllMatchScan sends a
    reply for each signature, which the next scan would read) and so does an ERROR, as clamd ends the session."""
    scanner = client(clamd.address)

    async def go() -> list[str | None]:
        viruses = [(await scanner.scan(raw, ENVELOPE)).virus for raw in (message(), message(), EICAR)]
        assert scanner.connections_opened == 1
        await scanner.ping()
        assert scanner.connections_opened == 2
        scanner.max_size = STREAM_MAX + 1024 * 1024
        with pytest.raises(EngineError, match="size limit exceeded"):
            await scanner.scan(b"x" * scanner.max_size, ENVELOPE)
        viruses.append((await scanner.scan(EICAR, ENVELOPE)).virus)
        assert scanner.connections_opened == 3
        await asyncio.gather(*(scanner.scan(message(), ENVELOPE) for _ in range(20)))
        assert scanner.connections_opened <= 3 + scanner.concurrency
        await scanner.close()
        return viruses

    assert asyncio.run(go()) == [None, None, EICAR_SIGNATURE, EICAR_SIGNATURE]


def test_connection_closed_while_idle_replaced() -> None:
    """A pooled connection that the engine closed (clamd's IdleTimeout, a restart) is replaced once, unseen."""
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await read_stream(reader)
        writer.write(b"1: stream: OK\0")
        await writer.drain()
        await reader.readuntil(b"\0")  # the next command: hang up without an answer, as a dying clamd would
        writer.transport.abort()

    async def go() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        scanner = client(f"127.0.0.1:{server.sockets[0].getsockname()[1]}", timeout=2.0)
        try:
            for _ in range(3):
                assert await scanner.scan(message(), ENVELOPE) == Verdict(engine="clamav")
        finally:
            await scanner.close()
            server.close()

    asyncio.run(go())
    assert connections == 3
