"""Does each of our listeners answer as it should? SMTP greets with 220 (implicit TLS after the
handshake); the web listener takes a connection."""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
from typing import NamedTuple

from jitaku.config import Listen, Settings
from jitaku.health.result import Result, State

TIMEOUT = 10.0
WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
NO_IPV6 = (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL)


class Silence(NamedTuple):
    """Why a listener did not answer: in English (also what a buddy is told), and in Japanese."""

    en: str
    ja: str


SMTP, IMAP, POP3 = b"220", b"* OK", b"+OK"  # how each protocol's greeting starts


def reading_context() -> ssl.SSLContext:
    """A TLS client context that reads our own listeners' certificates, whoever signed them (self-signed
    until ACME): we look at them, we do not trust them."""
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    return context


def local(where: Listen) -> str:
    """The address to reach a listener at: a wildcard bind is reached on loopback."""
    return WILDCARDS.get(where.host, where.host)


async def answers(host: str, port: int, greeting: bytes | None, tls: bool = False) -> Silence | None:
    """None when HOST:PORT answers (with a line starting GREETING, if given); else what went wrong, in a few
    words."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=reading_context() if tls else None), TIMEOUT
        )
    except (OSError, TimeoutError) as error:
        cause = error.__class__.__name__
        return Silence(f"no connection ({cause})", f"接続できません（{cause}）")
    try:
        if greeting:
            line = await asyncio.wait_for(reader.readline(), TIMEOUT)
            if not line.startswith(greeting):
                expected = greeting.decode()
                return Silence(f"greets with {line[:40]!r}", f"最初の応答が {expected} ではなく {line[:40]!r} です")
        return None
    except (OSError, TimeoutError) as error:
        cause = error.__class__.__name__
        return Silence(f"no greeting ({cause})", f"最初の応答がありません（{cause}）")
    finally:
        writer.close()


def ipv6_here() -> bool:
    """Whether this host speaks IPv6 at all: with net.ipv6.conf.*.disable_ipv6 = 1 the daemon still binds "[::]"
    but nobody, ourselves included, can reach it, so it is not a listener that fails."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as error:
        return error.errno not in NO_IPV6
    return True


async def check(settings: Settings) -> Result:
    listeners = [
        *(("smtp", item, SMTP, False) for item in settings.smtp.listen),
        *(("submission", item, SMTP, False) for item in settings.submission.listen),
        *(("submissions", item, SMTP, True) for item in settings.submissions.listen),
        *(("imap", item, IMAP, False) for item in settings.imap.listen),
        *(("imaps", item, IMAP, True) for item in settings.imaps.listen),
        *(("pop3", item, POP3, False) for item in settings.pop3.listen),
        *(("pop3s", item, POP3, True) for item in settings.pop3s.listen),
        *(("web", item, None, False) for item in settings.web.listen),
    ]
    unreachable = [] if ipv6_here() else [item for _name, item, _g, _t in listeners if local(item) == "::1"]
    listeners = [listener for listener in listeners if listener[1] not in unreachable]
    problems = await asyncio.gather(
        *(answers(local(item), item.port, greeting, tls) for _name, item, greeting, tls in listeners)
    )
    silent = [
        (name, item, problem) for (name, item, _g, _t), problem in zip(listeners, problems, strict=True) if problem
    ]
    broken = [f"{name} on {item}: {problem.en}" for name, item, problem in silent]
    broken_ja = [f"{item} の {name}: {problem.ja}" for name, item, problem in silent]
    metrics = {"listeners": float(len(listeners)), "broken": float(len(broken))}
    if broken:
        return Result(
            "services",
            State.CRITICAL,
            f"not answering: {'; '.join(broken)}.",
            metrics,
            ja=f"応答しない待ち受けがあります: {'、'.join(broken_ja)}。",
        )
    if unreachable:
        shown = ", ".join(sorted({str(item) for item in unreachable}))
        return Result(
            "services",
            State.OK,
            f"all {len(listeners)} listeners answer; IPv6 is off on this host, so {shown} cannot be reached.",
            metrics,
            ja=f"待ち受け {len(listeners)} 個すべてが応答しています。このホストでは IPv6 が無効なので、"
            f"{shown.replace(', ', '、')} には届きません。",
        )
    return Result(
        "services",
        State.OK,
        f"all {len(listeners)} listeners answer.",
        metrics,
        ja=f"待ち受け {len(listeners)} 個すべてが応答しています。",
    )
