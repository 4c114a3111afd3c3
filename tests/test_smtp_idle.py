"""The SMTP idle timeout (RFC 5321 §4.5.3.2.7) waits on the client, never on us: a commit that takes longer than
the timeout is answered 250, and the client's own silence still ends the session with 421."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

from jitaku.config import SmtpSettings
from jitaku.connections import ConnectionLimit, OpenSessions
from jitaku.mail.smtp.protocol import SmtpProtocol
from jitaku.mail.smtp_server import Listener
from jitaku.mail.spool import Spooler

TIMEOUT = 0.5  # seconds of client silence before 421
SLOW_COMMIT = 1.5  # seconds the store takes to commit, three timeouts


class SlowStore:
    """A handler whose DATA commit takes SLOW_COMMIT seconds, as on a disk that is busy."""

    listener = Listener("mx", authenticated=False)
    authenticator: Any = None

    def greeted(self) -> None:
        pass

    async def mail(self, _session: object, _sender: str) -> str:
        return "250 2.1.0 Ok"

    async def rcpt(self, _session: object, _transaction: object, recipient: str) -> tuple[str, str]:
        return "250 2.1.5 Ok", recipient

    def mail_now(self, _session: object, _sender: str) -> None:
        return None  # every decision awaited, as the submission's are

    def rcpt_now(self, _session: object, _transaction: object, _recipient: str) -> None:
        return None

    async def data(self, _session: object, _transaction: object, _spool: object) -> str:
        await asyncio.sleep(SLOW_COMMIT)
        return "250 2.0.0 Ok: queued as SLOW"


async def _serve(directory: Path) -> asyncio.Server:
    def made() -> SmtpProtocol:
        return SmtpProtocol(
            SlowStore(),  # type: ignore[arg-type]  # the calls the protocol makes
            "mx.test",
            None,
            SmtpSettings(timeout=TIMEOUT),
            Spooler(directory),
            ConnectionLimit("mx", 10, 10),
            OpenSessions(),
        )

    return await asyncio.get_running_loop().create_server(made, "127.0.0.1", 0)


async def _dialog(port: int, lines: list[bytes], wait: float) -> bytes:
    """Send LINES, then read everything the server says for WAIT seconds or until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, family=socket.AF_INET)
    writer.write(b"".join(lines))
    heard = b""
    try:
        async with asyncio.timeout(wait):
            while chunk := await reader.read(4096):
                heard += chunk
    except TimeoutError:
        pass
    writer.close()
    return heard


def test_a_commit_slower_than_the_timeout_is_answered_250(tmp_path: Path) -> None:
    asyncio.run(_slow_commit(tmp_path))


async def _slow_commit(tmp_path: Path) -> None:
    server = await _serve(tmp_path)
    port = server.sockets[0].getsockname()[1]
    message = [
        b"EHLO client.test\r\n",
        b"MAIL FROM:<a@client.test>\r\n",
        b"RCPT TO:<b@mx.test>\r\n",
        b"DATA\r\n",
        b"Subject: slow\r\n\r\nbody\r\n.\r\n",
    ]
    heard = await _dialog(port, message, SLOW_COMMIT + 3 * TIMEOUT)
    server.close()
    assert b"250 2.0.0 Ok: queued as SLOW" in heard
    assert b"421" not in heard.split(b"queued as SLOW")[0]


def test_a_silent_client_is_still_cut_off(tmp_path: Path) -> None:
    asyncio.run(_silent_client(tmp_path))


async def _silent_client(tmp_path: Path) -> None:
    server = await _serve(tmp_path)
    port = server.sockets[0].getsockname()[1]
    heard = await _dialog(port, [b"EHLO client.test\r\n"], 10 * TIMEOUT)
    server.close()
    assert b"421 4.4.2 mx.test Error: timeout exceeded" in heard
